-- The change feed (migration 0601) logs reactions too: a reaction added or taken back logs a 'reactions' change of
-- its message (one per message: a newer one replaces the message's earlier one, as a second edit replaces the
-- first; a message's deletion deletes them). Its id is drawn as an edit's is, under the conversation row's
-- FOR NO KEY UPDATE lock. The kind list grows by one. NOT VALID as in 0570: every existing row satisfies the new
-- list (the old one is part of it), so the ALTER scans nothing while it holds its lock, and new rows are checked
-- as before.
ALTER TABLE message_changes DROP CONSTRAINT message_changes_kind_check;
ALTER TABLE message_changes ADD CONSTRAINT message_changes_kind_check
    CHECK (kind IN ('edited', 'deleted', 'reactions')) NOT VALID;
