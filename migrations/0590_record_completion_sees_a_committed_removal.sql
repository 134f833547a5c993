-- AI: confab_record_completion (0508) with the same signature and results, refusing a caller whose removal from
-- the conversation committed while the record waited for the conversation's row.
--
-- 0503 checked the caller's participation against the statement's snapshot and then waited for the row. A removal
-- locks that row before it deletes the participant; a record waiting behind it still saw the participant, and once
-- the removal committed it stored the removed user's message and its answer. The record now locks the
-- participant's row after the conversation's (as a send does, shared/repositories/messages.py): a row the removal
-- deleted is not found, and the record returns no row (the caller left). Still one statement. The body is 0508's
-- with that change only.

CREATE OR REPLACE FUNCTION confab_record_completion(
    p_thread_id uuid, p_conversation_id uuid, p_user_id uuid, p_content text, p_idempotency_key text,
    p_answer text, p_model_id text, p_usage jsonb
) RETURNS TABLE (
    created boolean, user_message_id bigint, id bigint, conversation_id uuid, thread_id uuid, sender_kind text,
    content text, model_id text, created_at timestamptz, usage jsonb
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_user_message_id bigint;
    v_ai_message_id bigint;
    v_created_at timestamptz;
    v_key_thread_id uuid;
BEGIN
    -- The conversation's row first, as a send takes it: message ids are handed out in commit order within a
    -- conversation, so a client paging forward from the newest id it has seen never skips one. Then the
    -- caller's participant row: a removal that held the conversation's row has deleted it, and no row is found.
    PERFORM 1 FROM conversations c
    JOIN participants p ON p.conversation_id = c.id AND p.user_id = p_user_id
    WHERE c.id = p_conversation_id
    FOR NO KEY UPDATE OF c FOR KEY SHARE OF p;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    INSERT INTO messages (conversation_id, thread_id, sender_id, sender_kind, content, idempotency_key)
    VALUES (p_conversation_id, p_thread_id, p_user_id, 'user', p_content, p_idempotency_key)
    ON CONFLICT (conversation_id, sender_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING messages.id INTO v_user_message_id;

    IF v_user_message_id IS NULL THEN
        -- The key stored this message before. The row lock makes racing twins record one answer between them.
        SELECT m.id, m.thread_id INTO v_user_message_id, v_key_thread_id
        FROM messages m
        WHERE m.conversation_id = p_conversation_id AND m.sender_id = p_user_id
          AND m.idempotency_key = p_idempotency_key
        FOR UPDATE;
        IF v_key_thread_id IS DISTINCT FROM p_thread_id THEN
            -- A twin with the same key in another thread stored its message first: this turn is not a retry of
            -- that one, and its answer must not be tied to a message in another thread.
            RAISE EXCEPTION 'the idempotency key was used for a message in another thread'
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'messages_idempotency_key';
        END IF;
        RETURN QUERY
        SELECT false, c.user_message_id, a.id, a.conversation_id, a.thread_id, a.sender_kind, a.content,
               a.model_id, a.created_at, c.usage
        FROM ai_completions c JOIN messages a ON a.id = c.ai_message_id
        WHERE c.user_message_id = v_user_message_id;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    -- The answer, the record tying it to the user's message, and the conversation's last activity: one statement.
    WITH answer AS (
        INSERT INTO messages (conversation_id, thread_id, sender_kind, content, model_id)
        VALUES (p_conversation_id, p_thread_id, 'ai', p_answer, p_model_id)
        RETURNING messages.id, messages.created_at
    ), recorded AS (
        INSERT INTO ai_completions (user_message_id, ai_message_id, usage)
        SELECT v_user_message_id, answer.id, p_usage FROM answer
    ), touched AS (
        UPDATE conversations c SET last_message_at = answer.created_at
        FROM answer WHERE c.id = p_conversation_id
    )
    SELECT answer.id, answer.created_at INTO v_ai_message_id, v_created_at FROM answer;

    RETURN QUERY
    SELECT true, v_user_message_id, v_ai_message_id, p_conversation_id, p_thread_id, 'ai'::text, p_answer,
           p_model_id, v_created_at, p_usage;
END
$$;
