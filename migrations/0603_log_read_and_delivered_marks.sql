-- The change feed (migrations 0601, 0602) logs read and delivered marks too (POST /v1/conversations/{id}/read): a
-- mark that moved a message's status or the reader's read cursor logs a 'read' or 'delivered' change whose
-- message_id is the message the mark went up to and whose user_id is the reader. Its id is drawn as an edit's is,
-- under the conversation row's FOR NO KEY UPDATE lock, and its changed_at is the now() the mark stamped the
-- statuses with (one transaction), so a client replays it on the messages it holds and gets the server's statuses
-- and status times. moved_statuses says whether the mark moved any message's status: an entry that did stays (a
-- later one could not say when those messages were stamped); one that only moved the reader's cursor is replaced by
-- the reader's next 'read' entry. NULL for the other kinds.
-- user_id is SET NULL with the account, as the account's other kept references are (docs/auth.md). Both columns are
-- NULL in every earlier row, so the foreign key and the CHECKs are added NOT VALID, as 0570 adds its list: nothing is
-- scanned while the locks are held, and new rows are checked. The reader's index (account deletion's SET NULL, the
-- replacement) is 0604's, built CONCURRENTLY.
ALTER TABLE message_changes ADD COLUMN user_id uuid;
ALTER TABLE message_changes ADD COLUMN moved_statuses boolean;
ALTER TABLE message_changes ADD CONSTRAINT message_changes_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE SET NULL NOT VALID;
ALTER TABLE message_changes DROP CONSTRAINT message_changes_kind_check;
ALTER TABLE message_changes ADD CONSTRAINT message_changes_kind_check
    CHECK (kind IN ('edited', 'deleted', 'reactions', 'read', 'delivered')) NOT VALID;
-- A mark's entry says whether it moved statuses; the other kinds name no reader.
ALTER TABLE message_changes ADD CONSTRAINT message_changes_mark_check
    CHECK (CASE WHEN kind IN ('read', 'delivered') THEN moved_statuses IS NOT NULL
                ELSE user_id IS NULL AND moved_statuses IS NULL END) NOT VALID;
