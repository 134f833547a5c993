-- confab:no-transaction
-- The caller's participant rows of some kinds of conversation (migrations 0624 and 0625), for the conversation list filtered
-- by kind (migration 0627): an index condition on (user_id, conversation_kind) reads only those rows, and the
-- conversation's id, included, is read from the index alone. The unfiltered list reads it too (every kind named).
-- CONCURRENTLY: every join, leave and read mark writes this table.
CREATE INDEX CONCURRENTLY participants_user_kind_idx ON participants (user_id, conversation_kind)
    INCLUDE (conversation_id);
