-- Conversations: last_message_at is the time of the newest message still there, the one the list's preview shows.
--
-- Deleting a conversation's newest message left last_message_at at the deleted message's time: the list sorted
-- the conversation by a message nobody could see any more, above conversations with newer visible messages, while
-- its preview showed the message before. A delete now moves last_message_at back (shared/repositories/messages.py);
-- this repairs the conversations whose newest messages were deleted before: last_message_at becomes the time of
-- the newest message left (by id, as the preview picks it), or NULL when none is left (the list then uses
-- created_at). One probe of messages (conversation_id, id) per conversation; only rows that differ are written.

--
-- A send that commits while this waits for its conversation's row has moved last_message_at on: the row is then
-- written only if last_message_at is still what was read with the newest message (`seen`; an UPDATE that waited
-- re-checks the row's latest version against it), so the send's time is never overwritten with an older one.

UPDATE conversations c
SET last_message_at = newest.created_at
FROM (
    SELECT x.id,
           x.last_message_at AS seen,
           (SELECT m.created_at FROM messages m WHERE m.conversation_id = x.id ORDER BY m.id DESC LIMIT 1) AS created_at
    FROM conversations x
) newest
WHERE c.id = newest.id
  AND c.last_message_at IS DISTINCT FROM newest.created_at
  AND c.last_message_at IS NOT DISTINCT FROM newest.seen;
