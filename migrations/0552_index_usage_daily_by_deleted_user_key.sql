-- confab:no-transaction
-- The key usage_daily takes in 0553: the old key's columns with deleted_user_key last, so the aggregator's upsert
-- (NULL key) finds the same rows it always did and each deleted user's rows (0551) stay apart. CONCURRENTLY: every
-- usage batch writes this table.
CREATE UNIQUE INDEX CONCURRENTLY usage_daily_key_by_deleted_user ON usage_daily
    (day, user_id, model_name, provider, deleted_user_key) NULLS NOT DISTINCT;
