-- The change feed (migrations 0601 to 0603) logs participant changes too: someone added (or back in a direct
-- conversation), removed or leaving, or given another role, logs a 'participants' change whose user_id is the
-- participant concerned and whose message_id is NULL (it is about no message). Its id is drawn as an edit's is, under
-- the conversation row's FOR NO KEY UPDATE lock, in the write's own statement. The entry holds no participant: the
-- feed reads the participant as they are at the time of the poll (none once they left), so the user's next entry in
-- the conversation replaces it, as a second edit replaces the first. user_id is SET NULL with the account (0603's
-- foreign key), as a mark's reader is: an account's deletion logs its leaving, and the entry then names nobody.
--
-- Dropping NOT NULL only changes the catalog (no scan). The kind list grows by one, and 0603's mark check becomes
-- one check of the columns each kind fills: both NOT VALID as in 0570 (every existing row satisfies them: the old
-- kinds all have a message_id, and their other columns are as 0603 checked them), so nothing is scanned while the
-- lock is held, and new rows are checked. A participant entry is found for replacement (user_id, conversation_id) and
-- set NULL with the account through 0604's reader index (user_id IS NOT NULL): no new index.
ALTER TABLE message_changes ALTER COLUMN message_id DROP NOT NULL;
ALTER TABLE message_changes DROP CONSTRAINT message_changes_kind_check;
ALTER TABLE message_changes ADD CONSTRAINT message_changes_kind_check
    CHECK (kind IN ('edited', 'deleted', 'reactions', 'read', 'delivered', 'participants')) NOT VALID;
ALTER TABLE message_changes DROP CONSTRAINT message_changes_mark_check;
-- A mark's entry names its message and says whether it moved statuses; a participant entry names no message; the
-- message kinds name a message and no user.
ALTER TABLE message_changes ADD CONSTRAINT message_changes_columns_check
    CHECK (CASE WHEN kind IN ('read', 'delivered') THEN message_id IS NOT NULL AND moved_statuses IS NOT NULL
                WHEN kind = 'participants' THEN message_id IS NULL AND moved_statuses IS NULL
                ELSE message_id IS NOT NULL AND user_id IS NULL AND moved_statuses IS NULL END) NOT VALID;
