-- AI: an idempotency key used again for a turn that asks something else is a conflict (409), not a retry.
--
-- A completion with a key whose message was stored before returned that turn's answer (or, when its provider
-- call had failed, asked the model about the stored message) whatever the request's content: a client whose key
-- counter restarted got the answer to an earlier question as if its new one had been answered. A send refuses
-- such a key with 409 (shared/repositories/messages.py); a turn now does the same, with the same rule: the key's
-- message is the one asked for when its content is the request's as first stored or as it reads after an edit,
-- and it carries no attachments (a turn carries none; keys are shared with sends). The context reports what the
-- service compares (the message's content before its first edit, and whether it has attachments) in the prior
-- turn it returns, and the record refuses a racing twin that stored another message under the key first, as
-- 0508 refuses one in another thread (a unique_violation on the key's index, rolled back with the statement).
-- Both functions keep their signatures and results; their bodies are 0508's context and 0590's record with these
-- changes only.

CREATE OR REPLACE FUNCTION confab_completion_context(
    p_thread_id uuid, p_user_id uuid, p_model_id text, p_default_model_id text, p_history_limit integer,
    p_idempotency_key text
) RETURNS TABLE (
    thread_id uuid, thread_conversation_id uuid, thread_model_id text, user_tone text, user_info text,
    id uuid, model_id text, display_name text, provider text, provider_model_id text, deployed_resource_id uuid,
    system_prompt text, per_1k_input_tokens_usd numeric, per_1k_output_tokens_usd numeric,
    per_1k_cached_input_tokens_usd numeric, context_window_tokens integer, max_output_tokens integer,
    is_active boolean, base_url text, api_key_secret_arn text, resource_endpoint_url text,
    created_at timestamptz, updated_at timestamptz, history jsonb, prior jsonb
) LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_conversation_id uuid;
    v_thread_model_id text;
    v_prior jsonb;
    v_prior_id bigint;
BEGIN
    SELECT t.conversation_id, t.model_id INTO v_conversation_id, v_thread_model_id
    FROM conversation_threads t
    JOIN participants p ON p.conversation_id = t.conversation_id AND p.user_id = p_user_id
    WHERE t.id = p_thread_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    IF p_idempotency_key IS NOT NULL THEN
        SELECT m.id, jsonb_build_object(
                   'id', m.id, 'thread_id', m.thread_id, 'content', m.content,
                   -- As first stored, when it was edited since (NULL otherwise): a retry may send either.
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
        WHERE m.conversation_id = v_conversation_id AND m.sender_id = p_user_id
          AND m.idempotency_key = p_idempotency_key;
    END IF;

    RETURN QUERY
    SELECT p_thread_id, v_conversation_id, v_thread_model_id, up.tone, up.additional_info,
           m.id, m.model_id, m.display_name, m.provider, m.provider_model_id, m.deployed_resource_id,
           m.system_prompt, m.per_1k_input_tokens_usd, m.per_1k_output_tokens_usd,
           m.per_1k_cached_input_tokens_usd, m.context_window_tokens, m.max_output_tokens, m.is_active,
           m.base_url, m.api_key_secret_arn, r.endpoint_url, m.created_at, m.updated_at,
           (SELECT coalesce(jsonb_agg(jsonb_build_array(h.sender_kind, h.content) ORDER BY h.id DESC), '[]')
            FROM (SELECT x.id, x.sender_kind, x.content FROM messages x
                  -- One range of the (thread_id, id) index, whatever the values (no OR): a plan worth keeping.
                  WHERE x.thread_id = p_thread_id AND x.id <= coalesce(v_prior_id, 9223372036854775807)
                  ORDER BY x.id DESC LIMIT p_history_limit) h),
           v_prior
    FROM (SELECT 1) one
    LEFT JOIN user_properties up ON up.user_id = p_user_id
    LEFT JOIN model_configurations m
           ON m.model_id = coalesce(nullif(p_model_id, ''), nullif(v_thread_model_id, ''),
                                    nullif(p_default_model_id, ''))
    LEFT JOIN deployed_resources r ON r.id = m.deployed_resource_id;
END
$$;

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
    v_same_message boolean;
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
        SELECT m.id, m.thread_id,
               coalesce(m.attachments = '[]'::jsonb
                        AND (p_content = m.content OR p_content = (
                             SELECT e.previous_content FROM message_edits e WHERE e.message_id = m.id
                             ORDER BY e.edited_at, e.id LIMIT 1)), false)
        INTO v_user_message_id, v_key_thread_id, v_same_message
        FROM messages m
        WHERE m.conversation_id = p_conversation_id AND m.sender_id = p_user_id
          AND m.idempotency_key = p_idempotency_key
        FOR UPDATE OF m;
        IF v_key_thread_id IS DISTINCT FROM p_thread_id THEN
            -- A twin with the same key in another thread stored its message first: this turn is not a retry of
            -- that one, and its answer must not be tied to a message in another thread.
            RAISE EXCEPTION 'the idempotency key was used for a message in another thread'
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'messages_idempotency_key';
        END IF;
        IF NOT v_same_message THEN
            -- A twin with the same key asking something else stored its message first: answering it would tell
            -- this turn's client that its own question was answered.
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
