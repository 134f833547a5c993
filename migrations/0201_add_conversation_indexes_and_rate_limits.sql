-- Conversations and messaging (issue 4): what the routes need beyond the schema of 0001.

-- Anonymous senders have no sender_id, and a plain unique index treats NULLs as distinct, so a retried
-- anonymous send could insert twice. NULLS NOT DISTINCT makes the idempotency key unique for them too.
DROP INDEX messages_idempotency_key;
CREATE UNIQUE INDEX messages_idempotency_key ON messages (conversation_id, sender_id, idempotency_key)
    NULLS NOT DISTINCT WHERE idempotency_key IS NOT NULL;

-- The conversation list is ordered by last activity; keyset pages walk this key.
CREATE INDEX conversations_activity_idx ON conversations ((coalesce(last_message_at, created_at)) DESC, id DESC);

-- Participants of a conversation in join order (participant lists are keyset pages).
CREATE INDEX participants_conversation_joined_idx ON participants (conversation_id, joined_at, id);

-- Per-address limit on creating anonymous conversations: one row per address, a fixed window.
CREATE TABLE anonymous_rate_limits (
    address      text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL CHECK (hits >= 0)
);
CREATE INDEX anonymous_rate_limits_window_idx ON anonymous_rate_limits (window_start);
