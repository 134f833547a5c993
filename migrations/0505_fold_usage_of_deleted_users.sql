-- Usage outlives the account: a deleted user's daily rollups join the rows of users already deleted.
--
-- usage_daily.user_id is ON DELETE SET NULL under UNIQUE NULLS NOT DISTINCT (day, user_id, model_name,
-- provider), so deleting a second user with usage on a day, model and provider a deleted user already had
-- collided with the NULL-user row and failed the whole DELETE. Before each user row goes, its rollups are
-- added to the NULL-user rows (every total, exactly) and removed, so per-day and per-model totals do not
-- change and SET NULL has nothing left to do. The user row is already locked when a BEFORE ROW trigger
-- fires, so the aggregator cannot add rollups for this user in between. The NULL-user rows are taken in
-- key order, as the aggregator takes them. The other usage tables have no such key: model_usage and
-- conversation_threads have no unique column with user_id, ai_spend_months cascades.
CREATE FUNCTION confab_fold_usage_of_deleted_user() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH gone AS (
        DELETE FROM usage_daily WHERE user_id = OLD.id
        RETURNING day, model_name, provider, requests_count, cache_hits, prompt_tokens, completion_tokens,
                  cached_tokens, total_tokens, cost_usd, cost_avoided_usd
    )
    INSERT INTO usage_daily AS d (
        day, user_id, model_name, provider, requests_count, cache_hits, prompt_tokens, completion_tokens,
        cached_tokens, total_tokens, cost_usd, cost_avoided_usd
    )
    SELECT day, NULL, model_name, provider, requests_count, cache_hits, prompt_tokens, completion_tokens,
           cached_tokens, total_tokens, cost_usd, cost_avoided_usd
    FROM gone
    ORDER BY day, model_name, provider
    ON CONFLICT ON CONSTRAINT usage_daily_key DO UPDATE
    SET requests_count    = d.requests_count + EXCLUDED.requests_count,
        cache_hits        = d.cache_hits + EXCLUDED.cache_hits,
        prompt_tokens     = d.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = d.completion_tokens + EXCLUDED.completion_tokens,
        cached_tokens     = d.cached_tokens + EXCLUDED.cached_tokens,
        total_tokens      = d.total_tokens + EXCLUDED.total_tokens,
        cost_usd          = d.cost_usd + EXCLUDED.cost_usd,
        cost_avoided_usd  = d.cost_avoided_usd + EXCLUDED.cost_avoided_usd;
    RETURN OLD;
END;
$$;

CREATE TRIGGER users_fold_usage_before_delete BEFORE DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION confab_fold_usage_of_deleted_user();
