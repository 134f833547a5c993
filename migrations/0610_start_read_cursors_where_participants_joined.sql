-- Participants: a read cursor starts at the conversation's newest message when the participant is added.
--
-- An added participant had no cursor (NULL), so every message of the conversation counted as unread for them: a
-- member added to a group or room later, and a direct conversation's user who left and came back (the leave deletes
-- the participant row, cursor and all). Additions now set the cursor (shared/repositories/conversations.py); this
-- gives the participants added before, who have not marked anything read since, the cursor they would have got: the
-- newest message sent before they joined (by created_at against joined_at, the only record of when they came; one
-- probe of messages (conversation_id, created_at DESC, id DESC) each). A participant who joined before any message
-- (a conversation's creator and first members) keeps no cursor, and no status moves.
--
-- A read mark that commits while this waits for its row has set the cursor: the row is then left alone (an UPDATE
-- that waited re-checks `last_read_message_id IS NULL` against the row's latest version).

UPDATE participants p
SET last_read_message_id = joined.newest
FROM (
    SELECT x.id,
           (SELECT m.id FROM messages m
            WHERE m.conversation_id = x.conversation_id AND m.created_at <= x.joined_at
            ORDER BY m.created_at DESC, m.id DESC LIMIT 1) AS newest
    FROM participants x
    WHERE x.last_read_message_id IS NULL
) joined
WHERE p.id = joined.id
  AND joined.newest IS NOT NULL
  AND p.last_read_message_id IS NULL;
