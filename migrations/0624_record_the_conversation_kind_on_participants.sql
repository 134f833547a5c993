-- Each participant row carries its conversation's kind (participants.conversation_kind), so that the conversation
-- list filtered by kind (GET /v1/conversations?kind=..., migration 0627) reads only the caller's rows of those kinds.
--
-- Why a copy: the kind is on conversations, the membership on participants, and the list's page is found from
-- either side (confab_conversation_page, migration 0622). Without the kind on the caller's rows, a user in 10,000
-- conversations asking for the kind they have 10 of read all 10,000 rows and probed each conversation for its kind
-- (46 ms in EXPLAIN ANALYZE, 200,000 conversations), or walked every conversation of that kind by activity probing
-- each for the caller (154 ms). With it, an index of participants (user_id, conversation_kind) (migration 0626)
-- finds those 10 rows.
--
-- The copy is kept by triggers, so no writer of participants has to know about it (nor code deployed before it):
-- a participant row takes its conversation's kind when written, and a change of a conversation's kind (no route
-- makes one: ConversationUpdate has no kind) is copied to its rows. The column stays nullable: the trigger finds no
-- conversation only for a row that names none, and that row is then refused by the foreign key, as before, with its
-- error (a NOT NULL constraint would be checked first and answer another). Every row written is filled.

-- Rows already there are filled by migration 0625, in batches each committed on its own: filled here, in this
-- file's transaction, the ACCESS EXCLUSIVE lock the ADD COLUMN takes would keep every read and write of
-- participants waiting until the whole table was rewritten. The ADD COLUMN alone (nullable, no default) and the
-- triggers take that lock for a moment; from their commit on, every row written is filled.
ALTER TABLE participants ADD COLUMN conversation_kind text;

CREATE FUNCTION confab_participant_takes_conversation_kind() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.conversation_kind := (SELECT c.kind FROM conversations c WHERE c.id = NEW.conversation_id);
    RETURN NEW;
END;
$$;

CREATE TRIGGER participants_take_conversation_kind BEFORE INSERT OR UPDATE OF conversation_id, conversation_kind
    ON participants
    FOR EACH ROW EXECUTE FUNCTION confab_participant_takes_conversation_kind();

CREATE FUNCTION confab_copy_conversation_kind() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE participants SET conversation_kind = NEW.kind WHERE conversation_id = NEW.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER conversations_copy_kind_to_participants AFTER UPDATE OF kind ON conversations
    FOR EACH ROW WHEN (OLD.kind IS DISTINCT FROM NEW.kind)
    EXECUTE FUNCTION confab_copy_conversation_kind();
