-- Messages: a log of edits and deletions, so a polling client catches up on messages it already holds
-- (GET /v1/conversations/{id}/changes?after=). A change's id is drawn from the messages' own id sequence, under
-- the conversation row's FOR NO KEY UPDATE lock that sends take too: within a conversation, message ids and change
-- ids together follow commit order, so a client polls changes after the newest message id (or change id) it holds.
-- The row holds no text: an edit is read as its message reads now, and a deleted message's earlier 'edited' rows
-- are deleted with it. message_id has no foreign key: a deletion outlives its message.
CREATE TABLE message_changes (
    id              bigint PRIMARY KEY DEFAULT nextval('messages_id_seq'::regclass),
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_id      bigint NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('edited', 'deleted')),
    changed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_changes_conversation_idx ON message_changes (conversation_id, id);
CREATE INDEX message_changes_message_idx ON message_changes (message_id);
CREATE INDEX message_changes_changed_at_idx ON message_changes (changed_at, id);

-- Where maintenance purged a conversation's changes up to (the largest id it deleted there): a client whose
-- position is below it may have missed one and must resync (410). Deleted with the conversation.
CREATE TABLE message_change_horizons (
    conversation_id uuid PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    purged_through  bigint NOT NULL
);
