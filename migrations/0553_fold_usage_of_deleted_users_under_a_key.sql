-- Usage: the key of usage_daily becomes (day, user_id, model_name, provider, deleted_user_key) (the index 0552 built;
-- same name, so the aggregator's ON CONFLICT ON CONSTRAINT usage_daily_key is unchanged), and a deleted user's
-- rollups move under a key of their own (0551 says why) instead of into the NULL-user rows.
--
-- The trigger still fires BEFORE the user row goes, with the row locked (the aggregator, which names the user in
-- model_usage before it touches the rollups, waits for the deletion or the deletion for it). It writes only rows of
-- its own, the deleted user's, moved out and back in one statement with a key per model and provider: nothing is
-- added to rows another transaction may hold, so no lock order is needed. updated_at is carried over rather than
-- set to the deletion's time, which account_deletions records beside the account's id.
ALTER TABLE usage_daily DROP CONSTRAINT usage_daily_key;
ALTER TABLE usage_daily ADD CONSTRAINT usage_daily_key UNIQUE USING INDEX usage_daily_key_by_deleted_user;

CREATE OR REPLACE FUNCTION confab_fold_usage_of_deleted_user() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH gone AS (
        DELETE FROM usage_daily WHERE user_id = OLD.id
        RETURNING day, model_name, provider, requests_count, cache_hits, prompt_tokens, completion_tokens,
                  cached_tokens, total_tokens, cost_usd, cost_avoided_usd, updated_at
    ),
    keys AS (
        SELECT model_name, provider, gen_random_uuid() AS deleted_user_key FROM gone GROUP BY model_name, provider
    )
    INSERT INTO usage_daily (
        day, user_id, deleted_user_key, model_name, provider, requests_count, cache_hits, prompt_tokens,
        completion_tokens, cached_tokens, total_tokens, cost_usd, cost_avoided_usd, updated_at
    )
    SELECT g.day, NULL, k.deleted_user_key, g.model_name, g.provider, g.requests_count, g.cache_hits,
           g.prompt_tokens, g.completion_tokens, g.cached_tokens, g.total_tokens, g.cost_usd, g.cost_avoided_usd,
           g.updated_at
    FROM gone g JOIN keys k ON k.model_name = g.model_name AND k.provider = g.provider;
    RETURN OLD;
END;
$$;
