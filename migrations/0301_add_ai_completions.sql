-- AI: where an OpenAI-compatible model is reached and which secret holds its key; the per-user monthly
-- spend ledger that reservations lock before a provider call; the answer recorded for each completion,
-- so a retried request with the same idempotency key gets the same AI message back.

ALTER TABLE model_configurations
    ADD COLUMN base_url text,
    ADD COLUMN api_key_secret_arn text;

CREATE TABLE ai_spend_months (
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    month        date NOT NULL,
    spent_usd    numeric(16, 8) NOT NULL DEFAULT 0 CHECK (spent_usd >= 0),
    -- Upper bounds of calls in flight; moved to spent_usd (at the real cost) or released when each ends.
    reserved_usd numeric(16, 8) NOT NULL DEFAULT 0 CHECK (reserved_usd >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, month)
);

CREATE TABLE ai_completions (
    user_message_id bigint PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    ai_message_id   bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    usage           jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ai_completions_ai_message_idx ON ai_completions (ai_message_id);
