-- Each conversation's unread count, capped: its unread messages (after the caller's read cursor, from others) are
-- counted up to 1,000 and no further. `unread_count` is the count up to 999 (999 when there are more), and the new
-- `unread_count_capped` says whether there are more than 999 (a client shows "999+"). Before, the count read every
-- unread message: a busy group the caller never reads, with tens of thousands of them, made every list call read
-- them all, the list growing linearly with them. GET /v1/conversations/{id} counts the same way (CONVERSATION_VIEW,
-- and UNREAD_COUNT_MAX in shared/models/conversations.py): the list and it change together.
--
-- A LIMIT on the count's rows is not enough for the walk to stop there: the planner expects a conversation's unread
-- messages to be few (a conversation's average share of messages), finds a bitmap scan of messages (conversation_id,
-- id) cheaper for so few rows, and a bitmap scan reads every index entry in the range before the LIMIT sees the first
-- row (4 to 6 ms for 50,000 unread messages, against 35 ms uncapped and 0.8 ms for a plain index scan, on 300,000
-- messages in 2,000 conversations). So bitmap scans are off where the count runs, and it walks (conversation_id, id)
-- in id order (ORDER BY m.id, no sort) from the read cursor, a plain index scan that stops at the 1,000th row.
--
-- The plan is the generic one (as the list's is): planned for the conversation at hand, a busy one that statistics
-- know, the planner walked messages' primary key in id order from the read cursor and filtered on the conversation
-- (its rows look sequential on disk), reading every other conversation's messages after the cursor (22 ms in a test
-- of 100,000 other messages). Planned for any conversation, the walk of (conversation_id, id) is the one that reads
-- only its messages.
--
-- GET /v1/conversations/{id} counts with confab_unread_count: its SET clauses hold only while it runs, and PL/pgSQL
-- keeps its plan for the connection. The list counts in its own statement, the same text inlined, and its function
-- turns bitmap scans off for the whole statement: a function call per conversation cost about 40 us, 1.4x the list
-- of a user with nothing unread. Its other parts chose the same plans with bitmap scans off, but for the caller's
-- participant rows (a plain index scan instead of a bitmap one: equal times, side by side, for users in 20 and 5,000
-- conversations). A test reads both plans back (auto_explain).
CREATE FUNCTION confab_unread_count(p_conversation_id uuid, p_user_id uuid, p_read_through bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN (SELECT count(*) FROM (
        SELECT FROM messages m
        WHERE m.conversation_id = p_conversation_id AND m.id > coalesce(p_read_through, 0)
          AND m.sender_id IS DISTINCT FROM p_user_id
        ORDER BY m.id
        LIMIT 1000
    ) counted);
END
$$;

-- confab_conversation_page (migration 0622) as it was, except for the count (above), the new field and SET
-- enable_bitmapscan. Its comments there say why the function is shaped as it is; SET plan_cache_mode stays.
-- CREATE OR REPLACE keeps the signature, so grants and callers stay; a connection holding the old plan plans the new
-- body on its next call.
CREATE OR REPLACE FUNCTION confab_conversation_page(
    p_user_id uuid, p_limit integer, p_after_at timestamptz, p_after_id uuid
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
BEGIN
    RETURN QUERY
    WITH reach AS (
        SELECT greatest(100, ceil(sqrt(p_limit * greatest(reltuples, 0))))::bigint AS busy
        FROM pg_class WHERE oid = 'conversations'::regclass
    ),
    walking AS (
        SELECT count(*) = (SELECT busy FROM reach) AS yes
        FROM (SELECT FROM participants WHERE user_id = p_user_id LIMIT (SELECT busy FROM reach)) mine
    ),
    walked AS (
        SELECT w.id, w.activity FROM (
            SELECT c.id, coalesce(c.last_message_at, c.created_at) AS activity FROM conversations c
            WHERE (SELECT yes FROM walking)
              AND (coalesce(c.last_message_at, c.created_at), c.id) < (v_before_at, v_before_id)
            ORDER BY coalesce(c.last_message_at, c.created_at) DESC, c.id DESC
            LIMIT 4 * (SELECT busy FROM reach)
        ) w
        -- OFFSET 0 keeps the check a probe per conversation walked (no join that reads all of the caller's rows).
        WHERE EXISTS (SELECT FROM participants p WHERE p.conversation_id = w.id AND p.user_id = p_user_id OFFSET 0)
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
         WHERE p.user_id = p_user_id AND (SELECT count(*) FROM walked) < p_limit
           AND (coalesce(c.last_message_at, c.created_at), c.id) < (v_before_at, v_before_id)
         ORDER BY coalesce(c.last_message_at, c.created_at) DESC, c.id DESC
         LIMIT p_limit)
    ),
    kept AS (
        SELECT id, activity FROM page ORDER BY activity DESC, id DESC LIMIT p_limit - 1
    ),
    -- Each conversation as GET /v1/conversations/{id} shows it (CONVERSATION_VIEW in
    -- shared/repositories/conversations.py), in the fields' order there: the unread count (messages after the read
    -- cursor from others, counted up to 1,000 as confab_unread_count does: at most 999 and whether there are more),
    -- a preview of the last message and the change feed's head (its newest change kept, or where its changes were
    -- purged up to if newer).
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
        -- OFFSET 0 keeps each lookup a probe by key, a page's conversations being few however many there are.
        CROSS JOIN LATERAL (SELECT * FROM conversations c WHERE c.id = k.id OFFSET 0) c
        JOIN participants p ON p.conversation_id = c.id AND p.user_id = p_user_id
        -- confab_unread_count's statement: a plain index scan of messages (conversation_id, id) that stops at 1,000.
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
