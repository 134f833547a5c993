-- Conversation rules the schema of 0001 and 0201 broke.

-- A read cursor is a high-water mark: every message up to this id has been read, whether or not that message
-- still exists. Its foreign key (ON DELETE SET NULL) reset the cursor when the message it named was deleted,
-- so the reader's whole history counted as unread again and the cursor moved backwards. Nothing joins the
-- cursor to its message: unread counts compare ids (ids only grow, and are never reused), and the read route
-- checks the message it moves the cursor to. The index only served the foreign key's SET NULL.
ALTER TABLE participants DROP CONSTRAINT participants_last_read_message_fk;
DROP INDEX participants_last_read_message_idx;

-- messages.sender_id is ON DELETE SET NULL, and 0201 made (conversation_id, sender_id, idempotency_key) unique
-- with NULLS NOT DISTINCT (for anonymous senders). Two users who sent with the same key in one conversation (a
-- client counter "1") collided once both were deleted, and the second deletion failed. A retry window that
-- outlived its sender means nothing: the key is cleared when the sender goes. The WHEN clause keeps ordinary
-- updates (statuses, edits) from calling the function at all.
CREATE FUNCTION confab_clear_idempotency_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.idempotency_key := NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER messages_clear_idempotency_key_without_sender BEFORE UPDATE OF sender_id ON messages
    FOR EACH ROW WHEN (OLD.sender_id IS NOT NULL AND NEW.sender_id IS NULL)
    EXECUTE FUNCTION confab_clear_idempotency_key();

-- Both users of a direct conversation are its admins, and their roles no longer change. Before that rule one
-- could demote the other and leave, and the one left could neither delete nor rename the conversation: such a
-- user is its admin again.
UPDATE participants p SET role = 'admin'
FROM conversations c
WHERE c.id = p.conversation_id AND c.kind = 'direct' AND p.role = 'member';
