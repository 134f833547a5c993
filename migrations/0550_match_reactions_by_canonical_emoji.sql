-- Reactions: one per message, user and emoji, however the client spelled the emoji.
--
-- The unique key compared the emoji's code points, so two spellings of one emoji were two reactions by the same
-- person, counted twice: a heart with and without its emoji presentation selector (U+2764 vs U+2764 U+FE0F, as
-- different keyboards send it) and canonically equivalent forms (NFD vs NFC). The API now stores NFC (Python's
-- unicodedata, at the edge), and this index keys a reaction on its emoji without variation selectors
-- (U+FE0E/U+FE0F): the same text an add, a count and a removal compare. The old unique constraint stays (this
-- index implies it).

-- Reactions written meanwhile by code still running during the deploy would be neither folded nor normalized
-- and could fail the unique index's build (rolling the migration back): they wait until this commits. The index
-- build below blocks writes to the table anyway; reads go on.
LOCK TABLE message_reactions IN SHARE ROW EXCLUSIVE MODE;

-- Existing rows in NFC, as the API now writes them (normalize() needs a UTF8 database; Confab's are).
DO $$
BEGIN
    IF current_setting('server_encoding') = 'UTF8' THEN
        -- First drop the later of two spellings of one reaction, so that normalizing breaks no constraint.
        DELETE FROM message_reactions r
        USING message_reactions earlier
        WHERE earlier.message_id = r.message_id AND earlier.user_id = r.user_id
          AND translate(normalize(earlier.emoji, NFC), U&'\FE0E\FE0F', '')
              = translate(normalize(r.emoji, NFC), U&'\FE0E\FE0F', '')
          AND (earlier.created_at, earlier.id) < (r.created_at, r.id);
        UPDATE message_reactions SET emoji = normalize(emoji, NFC) WHERE emoji IS NOT NFC NORMALIZED;
    END IF;
END
$$;

DELETE FROM message_reactions r
USING message_reactions earlier
WHERE earlier.message_id = r.message_id AND earlier.user_id = r.user_id
  AND translate(earlier.emoji, U&'\FE0E\FE0F', '') = translate(r.emoji, U&'\FE0E\FE0F', '')
  AND (earlier.created_at, earlier.id) < (r.created_at, r.id);

CREATE UNIQUE INDEX message_reactions_emoji_key
    ON message_reactions (message_id, user_id, translate(emoji, U&'\FE0E\FE0F', ''));
