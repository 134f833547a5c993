-- AI: a thread turn for an anonymous conversation's token (docs/ai.md, "Anonymous conversations").
--
-- confab_completion_context and confab_record_completion (0592) find the caller through its participant row; an
-- anonymous conversation has none (its token holder is no user). Rather than an anonymous branch inside them,
-- which would put a test on every user turn's path (benchmarked: bench/bench_completions.py), the anonymous turn
-- has functions of its own, called only when the caller holds an anonymous token. They are 0592's bodies with these
-- changes only:
-- - the caller is the conversation the token names, and only while it is an anonymous one (c.kind): a token for
--   another conversation, or a thread of another conversation, finds nothing (the same 404 as an unknown thread);
-- - the sender is NULL (an anonymous send's sender), matched with IS NULL; the idempotency key's unique index is
--   NULLS NOT DISTINCT (0201), so ON CONFLICT sees a NULL sender's key as it sees a user's;
-- - no user properties, and the model is the one the caller names (ANONYMOUS_AI_MODEL_ID), never the thread's;
-- - the context counts, up to the bounds it is given (an index range that stops there), the messages the
--   conversation holds and the answers it has: ANONYMOUS_MESSAGE_LIMIT and ANONYMOUS_AI_TURN_LIMIT are checked
--   before the provider is called (concurrent turns can pass them by at most their number);
-- - the record locks the conversation's row first, as a send and a user's turn do (message ids in commit order),
--   and there is no participant row to lock after it.

CREATE FUNCTION confab_anonymous_completion_context(
    p_thread_id uuid, p_conversation_id uuid, p_model_id text, p_history_limit integer, p_idempotency_key text,
    p_message_limit integer, p_turn_limit integer
) RETURNS TABLE (
    thread_id uuid, thread_conversation_id uuid, thread_model_id text, held integer, answered integer,
    id uuid, model_id text, display_name text, provider text, provider_model_id text, deployed_resource_id uuid,
    system_prompt text, per_1k_input_tokens_usd numeric, per_1k_output_tokens_usd numeric,
    per_1k_cached_input_tokens_usd numeric, context_window_tokens integer, max_output_tokens integer,
    is_active boolean, base_url text, api_key_secret_arn text, resource_endpoint_url text,
    created_at timestamptz, updated_at timestamptz, history jsonb, prior jsonb
) LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_thread_model_id text;
    v_prior jsonb;
    v_prior_id bigint;
BEGIN
    SELECT t.model_id INTO v_thread_model_id
    FROM conversation_threads t
    JOIN conversations c ON c.id = t.conversation_id AND c.kind = 'anonymous'
    WHERE t.id = p_thread_id AND t.conversation_id = p_conversation_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    IF p_idempotency_key IS NOT NULL THEN
        SELECT m.id, jsonb_build_object(
                   'id', m.id, 'thread_id', m.thread_id, 'content', m.content,
                   'sent_content', (SELECT e.previous_content FROM message_edits e WHERE e.message_id = m.id
                                    ORDER BY e.edited_at, e.id LIMIT 1),
                   'has_attachments', m.attachments <> '[]'::jsonb,
                   'answer', (SELECT jsonb_build_object(
                                  'id', a.id, 'conversation_id', a.conversation_id, 'thread_id', a.thread_id,
                                  'sender_kind', a.sender_kind, 'content', a.content, 'model_id', a.model_id,
                                  'created_at', a.created_at, 'usage', c.usage)
                              FROM ai_completions c JOIN messages a ON a.id = c.ai_message_id
                              WHERE c.user_message_id = m.id))
        INTO v_prior_id, v_prior
        FROM messages m
        WHERE m.conversation_id = p_conversation_id AND m.sender_id IS NULL
          AND m.idempotency_key = p_idempotency_key;
    END IF;

    RETURN QUERY
    SELECT p_thread_id, p_conversation_id, v_thread_model_id,
           (SELECT count(*)::integer FROM (SELECT 1 FROM messages x WHERE x.conversation_id = p_conversation_id
                                           LIMIT p_message_limit) held),
           (SELECT count(*)::integer FROM (SELECT 1 FROM messages x WHERE x.conversation_id = p_conversation_id
                                             AND x.sender_kind = 'ai' LIMIT p_turn_limit) answered),
           m.id, m.model_id, m.display_name, m.provider, m.provider_model_id, m.deployed_resource_id,
           m.system_prompt, m.per_1k_input_tokens_usd, m.per_1k_output_tokens_usd,
           m.per_1k_cached_input_tokens_usd, m.context_window_tokens, m.max_output_tokens, m.is_active,
           m.base_url, m.api_key_secret_arn, r.endpoint_url, m.created_at, m.updated_at,
           (SELECT coalesce(jsonb_agg(jsonb_build_array(h.sender_kind, h.content) ORDER BY h.id DESC), '[]')
            FROM (SELECT x.id, x.sender_kind, x.content FROM messages x
                  WHERE x.thread_id = p_thread_id AND x.id <= coalesce(v_prior_id, 9223372036854775807)
                  ORDER BY x.id DESC LIMIT p_history_limit) h),
           v_prior
    FROM (SELECT 1) one
    LEFT JOIN model_configurations m ON m.model_id = p_model_id
    LEFT JOIN deployed_resources r ON r.id = m.deployed_resource_id;
END
$$;

CREATE FUNCTION confab_record_anonymous_completion(
    p_thread_id uuid, p_conversation_id uuid, p_content text, p_idempotency_key text,
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
    v_same_message boolean;
BEGIN
    -- The conversation's row first, as a send takes it: message ids in commit order within the conversation. A
    -- conversation purged (or never anonymous) meanwhile finds nothing.
    PERFORM 1 FROM conversations c
    WHERE c.id = p_conversation_id AND c.kind = 'anonymous'
    FOR NO KEY UPDATE OF c;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    INSERT INTO messages (conversation_id, thread_id, sender_id, sender_kind, content, idempotency_key)
    VALUES (p_conversation_id, p_thread_id, NULL, 'user', p_content, p_idempotency_key)
    ON CONFLICT (conversation_id, sender_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING messages.id INTO v_user_message_id;

    IF v_user_message_id IS NULL THEN
        SELECT m.id, m.thread_id,
               coalesce(m.attachments = '[]'::jsonb
                        AND (p_content = m.content OR p_content = (
                             SELECT e.previous_content FROM message_edits e WHERE e.message_id = m.id
                             ORDER BY e.edited_at, e.id LIMIT 1)), false)
        INTO v_user_message_id, v_key_thread_id, v_same_message
        FROM messages m
        WHERE m.conversation_id = p_conversation_id AND m.sender_id IS NULL
          AND m.idempotency_key = p_idempotency_key
        FOR UPDATE OF m;
        IF v_key_thread_id IS DISTINCT FROM p_thread_id THEN
            RAISE EXCEPTION 'the idempotency key was used for a message in another thread'
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'messages_idempotency_key';
        END IF;
        IF NOT v_same_message THEN
            RAISE EXCEPTION 'the idempotency key was used for another message'
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
