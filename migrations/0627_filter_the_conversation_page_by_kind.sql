-- The conversation list filtered by kind (GET /v1/conversations?kind=direct,group): confab_conversation_page takes
-- the kinds to list, p_kinds (NULL: every kind).
--
-- The function is 0623's, with the caller's participant rows read as those of the kinds asked for, through
-- participants (user_id, conversation_kind) (migrations 0624 to 0626): where it counts the caller's rows to choose
-- how to find the page, where it reads them to find it, and where it probes a conversation walked for the caller.
-- Its reasoning holds with k the caller's conversations of those kinds: a caller with at least sqrt(L * N) of them
-- walks conversations_activity_idx (at most 4 * sqrt(L * N) conversations, as before), anyone else reads their rows
-- of those kinds (k probes). So a user in 10,000 conversations asking for the kind they have 10 of reads 10 index
-- entries and probes 10 conversations, and one asking for the kind they have 9,000 of walks as an unfiltered list
-- does. The walk reads no conversation's kind (its index has none): a conversation walked is the caller's, of a kind
-- asked for, when the caller's row says so, one probe of participants (conversation_id, user_id) as before.
--
-- NULL stands for every kind, named here as the CHECK on conversations.kind names them (migration 0001): the rows
-- are read by an index condition, conversation_kind = ANY (...), which a test holds to that CHECK
-- (tests/integration/test_conversation_kinds.py). A row's kind is never NULL (migrations 0624 and 0625).
--
-- A new signature (a fifth argument) is a new function. The four-argument one answers as this one with NULL, for
-- code deployed before this migration, until a later migration drops it.
CREATE FUNCTION confab_conversation_page(
    p_user_id uuid, p_limit integer, p_after_at timestamptz, p_after_id uuid, p_kinds text[]
)
RETURNS TABLE (items text, after_at timestamptz, after_id uuid)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
    v_before_at timestamptz := coalesce(p_after_at, 'infinity');
    v_before_id uuid := CASE WHEN p_after_at IS NULL THEN 'ffffffff-ffff-ffff-ffff-ffffffffffff' ELSE p_after_id END;
    v_kinds text[] := coalesce(p_kinds, ARRAY['direct', 'group', 'room', 'assistant', 'anonymous']);
BEGIN
    RETURN QUERY
    WITH reach AS (
        SELECT greatest(100, ceil(sqrt(p_limit * greatest(reltuples, 0))))::bigint AS busy
        FROM pg_class WHERE oid = 'conversations'::regclass
    ),
    walking AS (
        SELECT count(*) = (SELECT busy FROM reach) AS yes
        FROM (SELECT FROM participants
              WHERE user_id = p_user_id AND conversation_kind = ANY (v_kinds)
              LIMIT (SELECT busy FROM reach)) mine
    ),
    walked AS (
        SELECT w.id, w.activity FROM (
            SELECT c.id, coalesce(c.last_message_at, c.created_at) AS activity, c.kind FROM conversations c
            WHERE (SELECT yes FROM walking)
              AND (coalesce(c.last_message_at, c.created_at), c.id) < (v_before_at, v_before_id)
            ORDER BY coalesce(c.last_message_at, c.created_at) DESC, c.id DESC
            LIMIT 4 * (SELECT busy FROM reach)
        ) w
        -- OFFSET 0 keeps the check a probe per conversation walked (no join that reads all of the caller's rows).
        WHERE w.kind = ANY (v_kinds)
          AND EXISTS (SELECT FROM participants p WHERE p.conversation_id = w.id AND p.user_id = p_user_id OFFSET 0)
        ORDER BY w.activity DESC, w.id DESC
        LIMIT p_limit
    ),
    page AS (
        SELECT id, activity FROM walked WHERE (SELECT count(*) FROM walked) = p_limit
        UNION ALL
        (SELECT c.id, coalesce(c.last_message_at, c.created_at) FROM participants p
         -- OFFSET 0 keeps the lookup a probe by primary key (no join that reads every conversation).
         CROSS JOIN LATERAL (SELECT c.id, c.last_message_at, c.created_at FROM conversations c
                             WHERE c.id = p.conversation_id OFFSET 0) c
         WHERE p.user_id = p_user_id AND p.conversation_kind = ANY (v_kinds) AND (SELECT count(*) FROM walked) < p_limit
           AND (coalesce(c.last_message_at, c.created_at), c.id) < (v_before_at, v_before_id)
         ORDER BY coalesce(c.last_message_at, c.created_at) DESC, c.id DESC
         LIMIT p_limit)
    ),
    kept AS (
        SELECT id, activity FROM page ORDER BY activity DESC, id DESC LIMIT p_limit - 1
    ),
    -- As in migration 0623.
    rendered AS (
        SELECT k.id, k.activity, json_build_object(
            'id', c.id, 'kind', c.kind, 'is_group', c.is_group, 'title', c.title, 'user_id', c.user_id,
            'created_by', c.created_by, 'use_case', c.use_case, 'status', c.status, 'room_type', c.room_type,
            'room_token', c.room_token, 'host', c.host, 'cmd_port', c.cmd_port, 'viz_port', c.viz_port,
            'last_message_at', confab_json_time(c.last_message_at), 'created_at', confab_json_time(c.created_at),
            'updated_at', confab_json_time(c.updated_at), 'role', p.role,
            'unread_count', least(unread.n, 999), 'unread_count_capped', unread.n > 999,
            'last_message', (SELECT json_build_object(
                                 'id', m.id, 'sender_id', m.sender_id, 'sender_kind', m.sender_kind,
                                 'content', left(m.content, 200), 'created_at', confab_json_time(m.created_at))
                             FROM messages m WHERE m.conversation_id = c.id ORDER BY m.id DESC LIMIT 1),
            'last_change_id', greatest(
                (SELECT max(ch.id) FROM message_changes ch WHERE ch.conversation_id = c.id),
                (SELECT h.purged_through FROM message_change_horizons h WHERE h.conversation_id = c.id))
        )::text AS item
        FROM kept k
        CROSS JOIN LATERAL (SELECT * FROM conversations c WHERE c.id = k.id OFFSET 0) c
        JOIN participants p ON p.conversation_id = c.id AND p.user_id = p_user_id
        CROSS JOIN LATERAL (
            SELECT count(*) AS n FROM (
                SELECT FROM messages m
                WHERE m.conversation_id = c.id AND m.id > coalesce(p.last_read_message_id, 0)
                  AND m.sender_id IS DISTINCT FROM p.user_id
                ORDER BY m.id
                LIMIT 1000
            ) counted
        ) unread
    )
    SELECT (SELECT coalesce('[' || string_agg(r.item, ',' ORDER BY r.activity DESC, r.id DESC) || ']', '[]')
            FROM rendered r),
           l.activity, l.id
    FROM (SELECT 1) one
    LEFT JOIN (SELECT k.activity, k.id FROM kept k ORDER BY k.activity, k.id LIMIT 1) l
        ON (SELECT count(*) FROM page) = p_limit;
END
$$;

CREATE OR REPLACE FUNCTION confab_conversation_page(
    p_user_id uuid, p_limit integer, p_after_at timestamptz, p_after_id uuid
)
RETURNS TABLE (items text, after_at timestamptz, after_id uuid)
LANGUAGE sql STABLE
AS $$
    SELECT * FROM confab_conversation_page(p_user_id, p_limit, p_after_at, p_after_id, NULL::text[]);
$$;
