-- Usage pipeline and maintenance (issue 6).

-- Thread cost totals keep the same 8 decimals as the per-request rows and the daily rollups, so a
-- total equals the sum of its requests exactly, however the requests were batched.
ALTER TABLE conversation_threads ALTER COLUMN cost_total_usd TYPE numeric(18, 8);

-- Single-flight for background jobs: a lease row taken and released in short transactions
-- (never a session advisory lock, which would pin an RDS Proxy connection for the whole run).
CREATE TABLE maintenance_leases (
    name        text PRIMARY KEY,
    holder      uuid NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

-- Where each purge job stopped when a run ran out of time; the next run continues from there.
CREATE TABLE maintenance_cursors (
    job        text PRIMARY KEY,
    after_ts   timestamptz NOT NULL,
    after_id   text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per maintenance run: what it deleted and whether it finished every job.
CREATE TABLE maintenance_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    holder      uuid NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    complete    boolean NOT NULL DEFAULT false,
    deleted     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX maintenance_runs_started_idx ON maintenance_runs (started_at DESC);

-- Purge jobs walk these keys in order and resume after the last one they saw.
CREATE INDEX ai_cache_ttl_id_idx ON ai_cache (ttl, id);
CREATE INDEX refresh_tokens_expires_id_idx ON refresh_tokens (expires_at, id);
CREATE INDEX refresh_tokens_revoked_idx ON refresh_tokens (revoked_at, id) WHERE revoked_at IS NOT NULL;

-- Deleting a row runs ON DELETE SET NULL on the rows that point at it; without these indexes each
-- deleted message or refresh token would scan the whole referencing table.
CREATE INDEX model_usage_message_idx ON model_usage (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX participants_last_read_message_idx ON participants (last_read_message_id)
    WHERE last_read_message_id IS NOT NULL;
CREATE INDEX refresh_tokens_parent_idx ON refresh_tokens (parent_id) WHERE parent_id IS NOT NULL;
