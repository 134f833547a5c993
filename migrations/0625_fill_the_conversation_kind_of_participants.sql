-- confab:no-transaction
-- The conversation's kind on every participant row written before migration 0624 (whose triggers fill the rows
-- written since), in batches of 5,000 in primary-key order, each committed on its own: a batch holds the row locks
-- of its rows only for its moment (a read mark or a role change of one of them waits that long at most), and the
-- table is never locked as a whole. One statement outside a transaction, so that the block may COMMIT. Run again
-- after a failure, it fills what is left (only rows still NULL are written).
DO $$
DECLARE
    -- Below every id but the nil UUID itself, which no row is given (gen_random_uuid) and is filled first anyway.
    v_after uuid := '00000000-0000-0000-0000-000000000000';
    v_last uuid;
BEGIN
    UPDATE participants p SET conversation_kind = c.kind
    FROM conversations c
    WHERE c.id = p.conversation_id AND p.conversation_kind IS NULL AND p.id = v_after;
    COMMIT;
    LOOP
        -- The batch's last id (uuid has no max()); NULL when fewer than 5,000 are left: the last batch is the rest.
        v_last := (SELECT p.id FROM participants p WHERE p.id > v_after ORDER BY p.id OFFSET 4999 LIMIT 1);
        UPDATE participants p SET conversation_kind = c.kind
        FROM conversations c
        WHERE c.id = p.conversation_id AND p.conversation_kind IS NULL AND p.id > v_after
          AND (v_last IS NULL OR p.id <= v_last);
        COMMIT;
        EXIT WHEN v_last IS NULL;
        v_after := v_last;
    END LOOP;
END
$$;
