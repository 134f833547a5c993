-- AI: confab_record_completion (0303) with the same signature and results, locking the conversation's row before
-- it inserts anything.
--
-- 0303 took that row only with its last statement (the conversation's activity), after both messages had their
-- ids. A send committing meanwhile in the same conversation got a larger id and committed first, so a client
-- that had read up to the send's message and paged forward never saw the completion's user message. Sends lock
-- the row before inserting (shared/repositories/messages.py); now completions do too. The lock replaces the
-- participant check's statement: no statement more.

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
BEGIN
    -- The conversation's row first, as a send takes it: message ids are handed out in commit order within a
    -- conversation, so a client paging forward from the newest id it has seen never skips one.
    PERFORM 1 FROM conversations c
    WHERE c.id = p_conversation_id
      AND EXISTS (SELECT 1 FROM participants p WHERE p.conversation_id = c.id AND p.user_id = p_user_id)
    FOR NO KEY UPDATE OF c;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    INSERT INTO messages (conversation_id, thread_id, sender_id, sender_kind, content, idempotency_key)
    VALUES (p_conversation_id, p_thread_id, p_user_id, 'user', p_content, p_idempotency_key)
    ON CONFLICT (conversation_id, sender_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING messages.id INTO v_user_message_id;

    IF v_user_message_id IS NULL THEN
        -- The key stored this message before. The row lock makes racing twins record one answer between them.
        SELECT m.id INTO v_user_message_id
        FROM messages m
        WHERE m.conversation_id = p_conversation_id AND m.sender_id = p_user_id
          AND m.idempotency_key = p_idempotency_key
        FOR UPDATE;
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
