-- Conversation rules the schema of 0001 and 0201 broke.

-- A read cursor is a high-water mark: every message up to this id has been read, whether or not that message
-- still exists. Its foreign key (ON DELETE SET NULL) reset the cursor when the message it named was deleted,
-- so the reader's whole history counted as unread again and the cursor moved backwards. Nothing joins the
-- cursor to its message: unread counts compare ids (ids only grow, and are never reused), and the read route
-- checks the message it moves the cursor to. The index only served the foreign key's SET NULL.
ALTER TABLE participants DROP CONSTRAINT participants_last_read_message_fk;
DROP INDEX participants_last_read_message_idx;
