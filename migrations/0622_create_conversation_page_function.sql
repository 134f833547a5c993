-- The conversation list (GET /v1/conversations) as a PL/pgSQL function, its page rendered as JSON.
--
-- Why a function: PL/pgSQL keeps the plan of the statement inside it for the life of the server connection, while
-- the same statement sent by the client is parsed and planned on every call (migration 0302 says why Confab sends
-- no server-side prepared statements). Planning it took as long as running it for a user in few conversations
-- (1.3 to 2.3 ms each way in EXPLAIN ANALYZE, on 100,000 conversations). The plan kept is the generic one, always
-- (plan_cache_mode): its shape does not depend on the caller (the page's ids are chosen while it runs, below), and
-- left to the plan cache a connection could keep planning every call, or keep a plan chosen for whoever called
-- first. It is planned again when ANALYZE renews the tables' statistics, as any cached plan is.
--
-- Why JSON: the page's rows as Python objects (a row per conversation, its last message parsed, then validated
-- into response models and serialized again) cost more than the statement itself; the route answers this text
-- as it comes, as message pages do. Timestamps as pydantic writes them (confab_json_time, migration 0304).
--
-- The caller's conversations by last activity, newest first; keyset on (activity, id), after (p_after_at,
-- p_after_id) when given. p_limit rows are read: p_limit - 1 are the page, an extra one only says there is more.
-- Answers the page's items (a JSON array of conversations as the API shows them: role, unread count, a preview
-- of the last message, the change feed's head) and, when there is more, the key of the last one (the next page
-- starts after it).
--
-- The page's ids are chosen first, from the key alone, and only they are rendered. Two ways to choose them, each
-- cheap for one kind of caller, picked while the statement runs (a branch whose gate is false is never started).
-- With N conversations in all (the planner's count, pg_class.reltuples) and a page of L, a caller in k of them:
-- - when k >= sqrt(L * N) (counted up to that bound), walk conversations_activity_idx from the cursor and probe each
--   conversation for the caller's participant row, 4 * sqrt(L * N) conversations at most. A page is expected within
--   L * N / k <= sqrt(L * N) of them (fewer for a busy user's recent conversations). When the walk finds a whole
--   page, it is the page (every conversation past the walk is older).
-- - otherwise (or when the walk found less) read the caller's participant rows, look each conversation's activity
--   up by primary key, and sort out the newest (top-N): k probes, fewer than sqrt(L * N) when chosen first.
-- Left to the planner, one query walked the whole index or hashed every conversation for a user in few of many
-- (12 to 20 ms for one in 20 or 400 of 200,000): it guesses a user's share from statistics that know only the
-- busiest users ("Benchmarks" in docs/conversations.md).
--
-- Without a cursor the key is compared with ('infinity', the largest uuid), above every conversation's: one
-- comparison the generic plan uses as the index walk's start (an "IS NULL OR" would be a filter on every entry
-- walked, up to the cursor).
CREATE FUNCTION confab_conversation_page(p_user_id uuid, p_limit integer, p_after_at timestamptz, p_after_id uuid)
RETURNS TABLE (items text, after_at timestamptz, after_id uuid)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
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
    -- cursor from others), a preview of the last message and the change feed's head (its newest change kept, or
    -- where its changes were purged up to if newer).
    rendered AS (
        SELECT k.id, k.activity, json_build_object(
            'id', c.id, 'kind', c.kind, 'is_group', c.is_group, 'title', c.title, 'user_id', c.user_id,
            'created_by', c.created_by, 'use_case', c.use_case, 'status', c.status, 'room_type', c.room_type,
            'room_token', c.room_token, 'host', c.host, 'cmd_port', c.cmd_port, 'viz_port', c.viz_port,
            'last_message_at', confab_json_time(c.last_message_at), 'created_at', confab_json_time(c.created_at),
            'updated_at', confab_json_time(c.updated_at), 'role', p.role,
            'unread_count', (SELECT count(*) FROM messages m
                             WHERE m.conversation_id = c.id AND m.id > coalesce(p.last_read_message_id, 0)
                               AND m.sender_id IS DISTINCT FROM p.user_id),
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
    )
    SELECT (SELECT coalesce('[' || string_agg(r.item, ',' ORDER BY r.activity DESC, r.id DESC) || ']', '[]')
            FROM rendered r),
           l.activity, l.id
    FROM (SELECT 1) one
    LEFT JOIN (SELECT k.activity, k.id FROM kept k ORDER BY k.activity, k.id LIMIT 1) l
        ON (SELECT count(*) FROM page) = p_limit;
END
$$;
