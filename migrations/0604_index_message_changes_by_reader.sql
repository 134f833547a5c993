-- confab:no-transaction
-- The read and delivered entries of a reader (migration 0603): an account's deletion sets their user_id NULL
-- through this index, and a read mark finds the reader's entry that moved no status (the one it replaces) by
-- (user_id, conversation_id, moved_statuses = false). Partial: the other kinds name no reader. CONCURRENTLY:
-- every edit, deletion, reaction and mark writes this table.
CREATE INDEX CONCURRENTLY message_changes_reader_idx ON message_changes (user_id, conversation_id, moved_statuses)
    WHERE user_id IS NOT NULL;
