"""SQL for messages: send, pages, edits, read cursors, reactions, feedback and search."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from shared.models.conversations import Feedback, Message, MessageEdit, Reaction, ReactionCount, ReadCursor
from shared.repositories.conversations import ROW_LOCKS, RowLock

_MESSAGE_FIELDS = (
    "id", "conversation_id", "thread_id", "sender_id", "sender_kind", "content", "attachments", "status",
    "status_timestamps", "model_id", "idempotency_key", "created_at", "edited_at",
)  # fmt: skip


_TIME_FIELDS = ("created_at", "edited_at")


def _json_of(alias: str = "") -> str:
    """A message as the API shows it, rendered by PostgreSQL: sends and pages answer with this text as it comes,
    so their rows never become Python objects. Timestamps as pydantic writes them everywhere else
    (confab_json_time, migration 0304). Fixed names only."""

    def value(name: str) -> str:
        return f"confab_json_time({alias}{name})" if name in _TIME_FIELDS else f"{alias}{name}"

    return "json_build_object(" + ", ".join(f"'{name}', {value(name)}" for name in _MESSAGE_FIELDS) + ")"


MESSAGE_JSON = _json_of()
M_MESSAGE_JSON = _json_of("m.")


# How many messages a conversation holds, counted up to %(message_limit)s at most (an index range that stops
# there): the bound of an anonymous conversation, checked by the send and explained after a refused one.
_HELD = """(SELECT count(*) FROM (SELECT 1 FROM messages m WHERE m.conversation_id = {conversation}
                                LIMIT %(message_limit)s) held)"""


# Whether the message of a repeated idempotency key is the one this send asks for (same thread, content and
# attachments; its content as sent or as it reads now): only then is the send a retry. Fixed text only.
_SAME_REQUEST = """coalesce({m}thread_id IS NOT DISTINCT FROM %(thread_id)s::uuid
    AND (%(content)s = {m}content OR %(content)s = (
         SELECT e.previous_content FROM message_edits e WHERE e.message_id = {m}id ORDER BY e.edited_at, e.id LIMIT 1))
    AND (SELECT coalesce(array_agg((a.value ->> 'file_id')::uuid ORDER BY a.ordinality), '{{}}')
         FROM jsonb_array_elements({m}attachments) WITH ORDINALITY a) = %(file_ids)s::uuid[], false)"""

# Whether the send names a thread of conversation `c` (or none).
_IN_THREAD = """(%(thread_id)s::uuid IS NULL OR EXISTS (
           SELECT 1 FROM conversation_threads t WHERE t.id = %(thread_id)s AND t.conversation_id = c.id))"""

# A send in one statement (one round trip before the commit): check access, lock the conversation row so
# ids within a conversation are handed out in commit order (pages never skip a late commit), resolve the
# attachments (files the sender owns), insert, link attachments and move last_message_at. A retried send
# with the same idempotency key inserts nothing and the second arm returns the original message.
# A user's send locks its participant row too, after the conversation's (the order of the locking clauses):
# a removal locks the conversation before it deletes the participant, so a send that waited for that lock finds
# the row deleted and stores nothing. Checked only against the statement's snapshot, the participant was still
# there, and the removed sender's message was stored after the removal committed.
# A direct conversation takes a send only while its other participant is in it (`pair`): that row is locked the same
# way, once the conversation's and the sender's rows are (pair reads member, so member has locked them), so a send
# that waited behind the other's leave or account deletion (each locks the conversation's row before the participant
# goes) finds it deleted and stores nothing. An EXISTS on the snapshot would still see it; evaluated before the
# conversation's lock, it would lock the rows in the other order than a removal does and could deadlock with one.
# A deactivated other user is still in it (deactivation is a suspension that reactivation undoes): the message is
# stored and waits for them, as for anyone offline; only a leave or a deletion ends the pair.
# Other kinds never probe for a second participant (pair's only input row is refused on its kind), so a large group
# pays nothing for it.
SEND = f"""
WITH member AS (
    SELECT c.id, c.kind FROM conversations c
    JOIN participants p ON p.conversation_id = c.id AND p.user_id = %(user_id)s
    WHERE c.id = %(conversation_id)s AND NOT %(anonymous)s AND {_IN_THREAD}
    FOR NO KEY UPDATE OF c FOR KEY SHARE OF p
),
pair AS (
    SELECT m.id FROM member m
    JOIN participants o ON o.conversation_id = m.id AND o.user_id <> %(user_id)s
    WHERE m.kind = 'direct'
    -- One row even if the pair's conversation somehow held a third participant (one message, not one per row).
    LIMIT 1 FOR KEY SHARE OF o
),
token AS (
    SELECT c.id FROM conversations c
    WHERE c.id = %(conversation_id)s AND %(anonymous)s AND c.kind = 'anonymous' AND {_IN_THREAD}
    FOR NO KEY UPDATE OF c
),
conv AS (SELECT id FROM member WHERE kind <> 'direct' UNION ALL SELECT id FROM pair UNION ALL SELECT id FROM token),
files AS (
    SELECT f.id, f.original_name, f.content_type, f.size FROM user_files f
    WHERE f.id = ANY(%(file_ids)s::uuid[]) AND f.owner_id = %(user_id)s
),
ins AS (
    INSERT INTO messages (conversation_id, thread_id, sender_id, sender_kind, content, attachments,
                          idempotency_key, status_timestamps)
    SELECT conv.id, %(thread_id)s, %(user_id)s, 'user', %(content)s,
           (SELECT coalesce(jsonb_agg(jsonb_build_object('file_id', f.id, 'name', f.original_name,
                                                         'content_type', f.content_type, 'size', f.size)
                                      ORDER BY array_position(%(file_ids)s::uuid[], f.id)), '[]'::jsonb)
            FROM files f),
           %(idempotency_key)s, jsonb_build_object('sent', confab_json_time(now()))
    FROM conv
    WHERE (SELECT count(*) FROM files) = cardinality(%(file_ids)s::uuid[])
      -- An anonymous conversation holds a bounded number of messages.
      AND (NOT %(anonymous)s OR {_HELD.format(conversation="conv.id")} < %(message_limit)s)
    ON CONFLICT DO NOTHING
    RETURNING id, conversation_id, thread_id, sender_id, sender_kind, content, attachments, status,
    status_timestamps, model_id, idempotency_key, created_at, edited_at
),
linked AS (
    INSERT INTO message_attachments (message_id, file_id) SELECT ins.id, files.id FROM ins, files
),
touched AS (
    UPDATE conversations c SET last_message_at = ins.created_at FROM ins WHERE c.id = ins.conversation_id
)
SELECT true AS created, {MESSAGE_JSON}::text AS message, true AS same FROM ins
UNION ALL
SELECT false AS created, {M_MESSAGE_JSON}::text, {_SAME_REQUEST.format(m="m.")}
FROM messages m JOIN conv ON m.conversation_id = conv.id
WHERE %(idempotency_key)s::text IS NOT NULL
  AND m.sender_id IS NOT DISTINCT FROM %(user_id)s::uuid AND m.idempotency_key = %(idempotency_key)s
"""  # noqa: S608 (fixed column list)

# Qualified with m.: unqualified, the edits subquery's "id" would be message_edits.id (a uuid), which fails to plan.
FIND_BY_KEY = f"""
SELECT false AS created, {M_MESSAGE_JSON}::text AS message, {_SAME_REQUEST.format(m="m.")} AS same FROM messages m
WHERE m.conversation_id = %(conversation_id)s AND m.sender_id IS NOT DISTINCT FROM %(user_id)s::uuid
  AND m.idempotency_key = %(idempotency_key)s
"""  # noqa: S608 (fixed column list)

IS_FULL = f"SELECT {_HELD.format(conversation='%(conversation_id)s')} >= %(message_limit)s"

THREAD_OF_CONVERSATION = "SELECT 1 FROM conversation_threads WHERE id = %(thread_id)s AND conversation_id = %(id)s"

# Pages: keyset on the message id. The access check rides along as an InitPlan, so a page is one round trip;
# an empty answer is told apart (no access vs. nothing more) by the caller.
_VISIBLE = """EXISTS (SELECT 1 FROM conversations c WHERE c.id = %(conversation_id)s AND
CASE WHEN %(anonymous)s THEN c.kind = 'anonymous'
     ELSE EXISTS (SELECT 1 FROM participants p WHERE p.conversation_id = c.id AND p.user_id = %(user_id)s) END
)"""

_COLUMNS = ", ".join(_MESSAGE_FIELDS)
_M_COLUMNS = ", ".join(f"m.{name}" for name in _MESSAGE_FIELDS)

# The most bytes a rendered item (a JSON text from PostgreSQL: non-ASCII as UTF-8, no raw control characters)
# takes in Lambda's answer, where it is escaped again inside the body string and where the runtime may write
# non-ASCII as \u escapes: a character 1 byte, a quote or backslash 2, a non-ASCII character 6 (12 for the
# surrogate pair of a four-byte one); and 1 for the comma after it. That is never more than 3 per UTF-8 byte, the
# bound of a small item. A large one is counted closer, reading its text three times (length and two replaces,
# each far cheaper than translate): its UTF-8 bytes, one more per quote or backslash, and at most 4 more per byte
# a non-ASCII character has after its first (octet_length - length).
_ANSWER_BYTES = """CASE WHEN octet_length({0}) <= 4096 THEN 3 * octet_length({0})
     ELSE least(3 * octet_length({0}),
                octet_length({0}) + (octet_length({0}) - octet_length(replace(replace({0}, '"', ''), '\\', '')))
                + 4 * (octet_length({0}) - length({0}))) END + 1"""

# A page of messages as JSON built by PostgreSQL: the rows never become Python objects, which costs more than the
# query itself. `rows` reads up to %(limit)s messages after the cursor in page order (limit - 1 items and an extra
# row that only says there is more). The page keeps them in order while their answer stays within %(max_bytes)s
# (one at least), and answers the kept items and, when any row was left out, the id of the last one kept: the
# next page starts right after it, in either direction. Fixed text only: the order and the comparisons come from
# fixed pairs, never from input.
_RENDERED_PAGE = """
WITH page AS (
    SELECT id, item,
           row_number() OVER w < %(limit)s
           AND (row_number() OVER w = 1 OR sum({answer_bytes}) OVER w <= %(max_bytes)s) AS kept
    -- OFFSET 0 keeps the subquery from being merged into this one (merged, each use of item rendered it again), and
    -- its ORDER BY tells the window the rows come in its order already (no sort).
    FROM (SELECT m.id, {message}::text AS item FROM ({rows}) m ORDER BY m.id {order} OFFSET 0) rendered
    WINDOW w AS (ORDER BY id {order} ROWS UNBOUNDED PRECEDING)
)
SELECT coalesce('[' || string_agg(item, ',' ORDER BY id {order}) FILTER (WHERE kept) || ']', '[]') AS items,
       CASE WHEN bool_or(NOT kept) THEN {last}(id) FILTER (WHERE kept) END AS after
FROM page
"""


def _rendered_page(rows: str, *, forward: bool, item: str = MESSAGE_JSON) -> str:
    """A page of the messages `rows` reads (fixed text with `{order}` and `{beyond}`), in one direction; `item` renders
    one of its rows (a message by default)."""
    order, beyond, last = ("ASC", ">", "max") if forward else ("DESC", "<", "min")
    return _RENDERED_PAGE.format(
        order=order,
        last=last,
        message=item,
        answer_bytes=_ANSWER_BYTES.format("item"),
        rows=rows.format(order=order, beyond=beyond),
    )


_CONVERSATION_ROWS = f"""
        SELECT {_COLUMNS}
        FROM messages
        WHERE conversation_id = %(conversation_id)s AND {_VISIBLE}
          AND (%(cursor)s::bigint IS NULL OR id {{beyond}} %(cursor)s)
        ORDER BY id {{order}} LIMIT %(limit)s"""  # noqa: S608 (fixed text)
PAGE_BACKWARD = _rendered_page(_CONVERSATION_ROWS, forward=False)
PAGE_FORWARD = _rendered_page(_CONVERSATION_ROWS, forward=True)

_THREAD_ROWS = f"""
        SELECT {_COLUMNS} FROM messages
        WHERE thread_id = %(thread_id)s AND (%(cursor)s::bigint IS NULL OR id {{beyond}} %(cursor)s)
        ORDER BY id {{order}} LIMIT %(limit)s"""  # noqa: S608 (fixed text)
THREAD_PAGE_BACKWARD = _rendered_page(_THREAD_ROWS, forward=False)
THREAD_PAGE_FORWARD = _rendered_page(_THREAD_ROWS, forward=True)


# A reaction is keyed on its emoji without variation selectors (migration 0550): a heart sent with and without
# U+FE0F is one reaction. Counts show the spelling with the most selectors (the emoji-styled one sorts last).
_EMOJI_KEY = "translate({}, U&'\\FE0E\\FE0F', '')"

# A message's reaction summary (the reactions of message {message}, grouped by emoji, seen by %(user_id)s: null for
# an anonymous token, which reacts with nothing), as GET /v1/messages/{id}/reactions lists it and the change feed
# carries it: most reacted first, then by emoji.
_REACTION_GROUPS = f"""
SELECT max(emoji COLLATE "C") AS emoji, count(*)::int AS count,
       coalesce(bool_or(user_id = %(user_id)s::uuid), false) AS reacted_by_me
FROM message_reactions WHERE message_id = {{message}}
GROUP BY {_EMOJI_KEY.format("emoji")}"""  # noqa: S608 (fixed text)
_REACTION_ORDER = 'g.count DESC, g.emoji COLLATE "C"'

# A participant as GET /v1/conversations/{id}/participants lists one (shared/models/conversations.py, Participant).
_PARTICIPANT_JSON = """json_build_object('id', p.id, 'conversation_id', p.conversation_id, 'user_id', p.user_id,
    'username', u.username, 'role', p.role, 'last_read_message_id', p.last_read_message_id,
    'last_read_at', confab_json_time(p.last_read_at), 'joined_at', confab_json_time(p.joined_at))"""

# Changes (edits, deletions, reactions, read and delivered marks, participant changes; migrations 0601 to 0603 and
# 0611), oldest first after a position: a message id or a change id, both drawn in commit order within the
# conversation. An edit reads as its message does now (a deleted message's edit and reaction entries went with it); a
# deletion carries no message; a reactions change carries the message's reaction summary as it is now, for the caller
# (no message: its text did not change); a mark carries its reader (user_id) and the message it went up to, which may
# be deleted since; a participant change carries the participant concerned (user_id, no message) and the participant
# as they are now (null once they left). The access check rides along as a page's does.
_CHANGE_ROWS = f"""
        SELECT ch.id, ch.message_id, ch.kind, ch.changed_at, ch.user_id,
               (SELECT {M_MESSAGE_JSON} FROM messages m WHERE m.id = ch.message_id AND ch.kind = 'edited') AS message,
               CASE WHEN ch.kind = 'reactions' THEN (
                   SELECT coalesce(json_agg(json_build_object('emoji', g.emoji, 'count', g.count,
                                                              'reacted_by_me', g.reacted_by_me)
                                            ORDER BY {_REACTION_ORDER}), '[]'::json)
                   FROM ({_REACTION_GROUPS.format(message="ch.message_id")}) g) END AS reactions,
               (SELECT {_PARTICIPANT_JSON} FROM participants p JOIN users u ON u.id = p.user_id
                WHERE ch.kind = 'participants' AND p.conversation_id = ch.conversation_id AND p.user_id = ch.user_id)
                   AS participant
        FROM message_changes ch
        WHERE ch.conversation_id = %(conversation_id)s AND {_VISIBLE} AND ch.id {{beyond}} %(cursor)s
        ORDER BY ch.id {{order}} LIMIT %(limit)s"""  # noqa: S608 (fixed text)
_CHANGE_JSON = (
    "json_build_object('id', id, 'message_id', message_id, 'kind', kind, "
    "'changed_at', confab_json_time(changed_at), 'message', message, 'reactions', reactions, 'user_id', user_id, "
    "'participant', participant)"
)
# With the page, in its snapshot: how far maintenance purged the conversation's changes (0: never). A position below
# it may have missed a purged change (the page cannot show what is gone), however many retained ones follow it.
CHANGES_PAGE = f"""
SELECT page.items, page.after,
       coalesce((SELECT h.purged_through FROM message_change_horizons h
                 WHERE h.conversation_id = %(conversation_id)s), 0) AS purged_through
FROM ({_rendered_page(_CHANGE_ROWS, forward=True, item=_CHANGE_JSON)}) page
"""  # noqa: S608 (fixed text)

# The newest position in the conversation (its newest message id or change id, or where its changes were purged up
# to): what a client that must resync polls after once it has read the conversation again. One statement, one
# snapshot: a change or message that commits after it gets a larger id, and one committed before it is in any read
# that comes after.
NEWEST_POSITION = """
SELECT greatest(
    (SELECT max(purged_through) FROM message_change_horizons WHERE conversation_id = %(conversation_id)s),
    (SELECT max(id) FROM message_changes WHERE conversation_id = %(conversation_id)s),
    (SELECT max(id) FROM messages WHERE conversation_id = %(conversation_id)s),
    0)
"""


@dataclass(frozen=True)
class MessageAccess:
    id: int
    conversation_id: UUID
    sender_id: UUID | None
    sender_kind: str
    kind: str
    role: str | None


MESSAGE_ACCESS = """
SELECT m.id, m.conversation_id, m.sender_id, m.sender_kind, c.kind, p.role
FROM messages m
JOIN conversations c ON c.id = m.conversation_id
LEFT JOIN participants p ON p.conversation_id = m.conversation_id AND p.user_id = %(user_id)s
WHERE m.id = %(id)s
"""

# A write's access check, as the conversation's (shared/repositories/conversations.py, LOCKED_ACCESS): the message's
# conversation row, then the caller's participant row, locked until the write commits. A token's conversation row is
# locked alone.
LOCKED_MESSAGE_ACCESS: dict[RowLock, str] = {
    mode: f"""
SELECT m.id, m.conversation_id, m.sender_id, m.sender_kind, c.kind, p.role
FROM messages m
JOIN conversations c ON c.id = m.conversation_id
JOIN participants p ON p.conversation_id = m.conversation_id AND p.user_id = %(user_id)s
WHERE m.id = %(id)s
FOR {mode} OF c FOR KEY SHARE OF p
"""  # noqa: S608 (lock modes from the fixed ROW_LOCKS)
    for mode in ROW_LOCKS
}
LOCKED_TOKEN_MESSAGE_ACCESS: dict[RowLock, str] = {mode: f"{MESSAGE_ACCESS}FOR {mode} OF c\n" for mode in ROW_LOCKS}

# The earlier version is kept in message_edits; the row lock orders concurrent edits. %(edit_limit)s bounds the
# earlier versions kept in the message's conversation (NULL: none; an anonymous one has a bound), counted up to
# the bound at most.
_EDITS_HELD = """(SELECT count(*) FROM (SELECT 1 FROM message_edits e JOIN messages x ON x.id = e.message_id
                                WHERE x.conversation_id = {conversation} LIMIT %(edit_limit)s) held)"""

_EDITED_COLUMNS = """m.id, m.conversation_id, m.thread_id, m.sender_id, m.sender_kind, m.content, m.attachments,
    m.status, m.status_timestamps, m.model_id, m.idempotency_key, m.created_at, m.edited_at"""

# The edit is logged in message_changes (its id drawn under the caller's FOR NO KEY UPDATE lock on the conversation's
# row, so in commit order); the message's earlier 'edited' entry goes, since both would read as the message now does.
# An edit to the text the message already has (a retried PATCH) changes nothing: no earlier version, no edited_at, no
# change in the feed, and none of an anonymous conversation's bounded versions; it answers the message as it is.
EDIT = f"""
WITH old AS (
    SELECT {_EDITED_COLUMNS} FROM messages m WHERE m.id = %(id)s FOR UPDATE
),
changed AS (
    SELECT old.* FROM old
    WHERE old.content IS DISTINCT FROM %(content)s
      AND (%(edit_limit)s::integer IS NULL OR {_EDITS_HELD.format(conversation="old.conversation_id")} < %(edit_limit)s)
),
saved AS (
    INSERT INTO message_edits (message_id, previous_content, edited_by)
    SELECT id, content, %(user_id)s FROM changed
),
superseded AS (
    DELETE FROM message_changes ch USING changed WHERE ch.message_id = changed.id AND ch.kind = 'edited'
),
logged AS (
    INSERT INTO message_changes (conversation_id, message_id, kind) SELECT conversation_id, id, 'edited' FROM changed
),
updated AS (
    UPDATE messages m SET content = %(content)s, edited_at = now() FROM changed WHERE m.id = changed.id
    RETURNING {_EDITED_COLUMNS}
)
SELECT * FROM updated
UNION ALL
SELECT {_EDITED_COLUMNS} FROM old m WHERE m.content = %(content)s
"""  # noqa: S608 (fixed text)

EDITS_FULL = f"""SELECT {_EDITS_HELD.format(conversation="%(conversation_id)s")} >= %(edit_limit)s"""

# The conversation's last_message_at is the time of its newest message, the one its preview shows: deleting the
# newest moves it back to the one before (NULL when none is left: the list falls back to created_at). The caller
# holds the conversation's row, so no send commits in between and this statement sees every committed message.
DELETE = """
WITH gone AS (DELETE FROM messages WHERE id = %(id)s RETURNING conversation_id),
-- The deletion is logged (under the caller's lock, as an edit is) and the message's 'edited' and 'reactions' entries
-- go with it.
unlogged AS (DELETE FROM message_changes WHERE message_id = %(id)s AND kind IN ('edited', 'reactions')),
logged AS (
    INSERT INTO message_changes (conversation_id, message_id, kind) SELECT conversation_id, %(id)s, 'deleted' FROM gone
),
newest AS (
    SELECT gone.conversation_id,
           (SELECT m.created_at FROM messages m WHERE m.conversation_id = gone.conversation_id AND m.id <> %(id)s
            ORDER BY m.id DESC LIMIT 1) AS created_at
    FROM gone
)
UPDATE conversations c SET last_message_at = newest.created_at
FROM newest WHERE c.id = newest.conversation_id AND c.last_message_at IS DISTINCT FROM newest.created_at
"""

# Read and delivered marks. A status only moves forward (sent -> delivered -> read) and each step is stamped once in
# status_timestamps; the reader's read cursor never moves backwards; the caller's own messages are not "read" by the
# caller. A mark that moved something is logged in message_changes (migration 0603): one 'read' or 'delivered' entry,
# the reader and the message the mark went up to, its id drawn under the caller's FOR NO KEY UPDATE lock on the
# conversation's row %(conversation_id)s (as an edit's is) and its changed_at the now() the statuses were stamped with
# (the same transaction), so a client replays it exactly. The caller also holds its participant row: nothing else
# moves these statuses or this cursor between the statement's snapshot and its commit. An entry that moved a status
# stays (replaced, the times it stamped would be lost); a 'read' entry that moved only the cursor is replaced by the
# reader's next 'read' entry. A mark that moves nothing (a repeat, a mark below the cursor) logs nothing and writes
# no row.
# The message marked up to: one of the conversation's, or one deleted from it since the client fetched it (its
# deletion's entry in the change feed says whose it was). The mark means "up to it" either way, as the cursor is a
# high-water mark; before, marking a message deleted a moment earlier was the 404 of a conversation one is not in.
_MARK_TARGET = """target AS (
    SELECT t.id, p.conversation_id, p.last_read_message_id, p.last_read_at,
           t.id > coalesce(p.last_read_message_id, 0) AS advances
    FROM participants p
    CROSS JOIN LATERAL (
        SELECT m.id FROM messages m WHERE m.id = %(message_id)s AND m.conversation_id = %(conversation_id)s
        UNION ALL
        SELECT ch.message_id FROM message_changes ch
        WHERE ch.message_id = %(message_id)s AND ch.conversation_id = %(conversation_id)s AND ch.kind = 'deleted'
        LIMIT 1
    ) t
    WHERE p.conversation_id = %(conversation_id)s AND p.user_id = %(user_id)s
)"""

MARK_READ = f"""
WITH {_MARK_TARGET},
moved AS (
    UPDATE messages m
    SET status = 'read',
        status_timestamps = jsonb_build_object('delivered', confab_json_time(now())) || m.status_timestamps
                            || jsonb_build_object('read', confab_json_time(now()))
    FROM target
    WHERE m.conversation_id = %(conversation_id)s AND m.id <= target.id AND m.status <> 'read'
      AND m.sender_id IS DISTINCT FROM %(user_id)s
    RETURNING 1
),
-- The participant's row is written only when the cursor moves: a repeat or a mark at or below the cursor leaves it
-- alone (no new row version, no dead tuple), and the answer then says the cursor as it was.
cursor AS (
    UPDATE participants p
    SET last_read_message_id = target.id, last_read_at = now()
    FROM target
    WHERE p.conversation_id = %(conversation_id)s AND p.user_id = %(user_id)s AND target.advances
    RETURNING p.conversation_id, p.last_read_message_id, p.last_read_at
),
logged AS (
    INSERT INTO message_changes (conversation_id, message_id, kind, user_id, moved_statuses)
    SELECT %(conversation_id)s, target.id, 'read', %(user_id)s, EXISTS (SELECT 1 FROM moved)
    FROM target WHERE target.advances OR EXISTS (SELECT 1 FROM moved)
    RETURNING id
),
-- The statement's snapshot does not hold the entry just logged: only the reader's earlier cursor-only entry goes.
superseded AS (
    DELETE FROM message_changes ch
    WHERE ch.user_id = %(user_id)s AND ch.conversation_id = %(conversation_id)s AND ch.moved_statuses = false
      AND ch.kind = 'read' AND EXISTS (SELECT 1 FROM logged)
)
SELECT target.conversation_id,
       coalesce(cursor.last_read_message_id, target.last_read_message_id) AS last_read_message_id,
       coalesce(cursor.last_read_at, target.last_read_at) AS last_read_at, (SELECT count(*) FROM moved) AS updated
FROM target LEFT JOIN cursor ON true
"""  # noqa: S608 (fixed text)

# A delivered mark has no cursor: it logs only when it moved a status, so its entries always stay.
MARK_DELIVERED = f"""
WITH {_MARK_TARGET},
moved AS (
    UPDATE messages m
    SET status = 'delivered',
        status_timestamps = m.status_timestamps || jsonb_build_object('delivered', confab_json_time(now()))
    FROM target
    WHERE m.conversation_id = %(conversation_id)s AND m.id <= target.id AND m.status = 'sent'
      AND m.sender_id IS DISTINCT FROM %(user_id)s
    RETURNING 1
),
logged AS (
    INSERT INTO message_changes (conversation_id, message_id, kind, user_id, moved_statuses)
    SELECT %(conversation_id)s, target.id, 'delivered', %(user_id)s, true
    FROM target WHERE EXISTS (SELECT 1 FROM moved)
)
SELECT target.conversation_id, target.last_read_message_id, target.last_read_at,
       (SELECT count(*) FROM moved) AS updated
FROM target
"""  # noqa: S608 (fixed text)

# CTEs that log a reaction change of %(message_id)s when {changed} (a CTE of the reaction write) has a row.
_REACTIONS_LOGGED = """superseded AS (
    DELETE FROM message_changes ch
    WHERE ch.message_id = %(message_id)s AND ch.kind = 'reactions' AND EXISTS (SELECT 1 FROM {changed})
),
logged AS (
    INSERT INTO message_changes (conversation_id, message_id, kind)
    SELECT %(conversation_id)s, %(message_id)s, 'reactions' WHERE EXISTS (SELECT 1 FROM {changed})
)"""

# A message holds at most %(max_emoji)s distinct emoji (its reaction summary is one unpaged list): an emoji it
# already has may always be added, a new one only below that. Concurrent new emoji may pass it by their number.
# A reaction added is logged in message_changes (migration 0602) as an edit is: its id drawn under the caller's
# FOR NO KEY UPDATE lock on the conversation's row %(conversation_id)s, replacing the message's earlier 'reactions'
# entry (both would read as the summary now does). A repeat inserts nothing and logs nothing.
ADD_REACTION = f"""
WITH added AS (
    INSERT INTO message_reactions (message_id, user_id, emoji)
    SELECT %(message_id)s, %(user_id)s, %(emoji)s
    WHERE EXISTS (SELECT 1 FROM message_reactions WHERE message_id = %(message_id)s
                    AND {_EMOJI_KEY.format("emoji")} = {_EMOJI_KEY.format("%(emoji)s")})
       OR (SELECT count(DISTINCT {_EMOJI_KEY.format("emoji")}) FROM message_reactions
           WHERE message_id = %(message_id)s) < %(max_emoji)s
    ON CONFLICT DO NOTHING
    RETURNING message_id, user_id, emoji, created_at
),
{_REACTIONS_LOGGED.format(changed="added")}
SELECT message_id, user_id, emoji, created_at FROM added
"""  # noqa: S608 (fixed text)

GET_REACTION = f"""
SELECT message_id, user_id, emoji, created_at FROM message_reactions
WHERE message_id = %(message_id)s AND user_id = %(user_id)s
  AND {_EMOJI_KEY.format("emoji")} = {_EMOJI_KEY.format("%(emoji)s")}
"""  # noqa: S608 (fixed text)

REACTION_COUNTS = f"""
SELECT g.emoji, g.count, g.reacted_by_me FROM ({_REACTION_GROUPS.format(message="%(message_id)s")}) g
ORDER BY {_REACTION_ORDER}
"""  # noqa: S608 (fixed text)

EDITS_PAGE = """
SELECT id, message_id, previous_content, edited_by, edited_at FROM message_edits
WHERE message_id = %(message_id)s
  AND (%(after_at)s::timestamptz IS NULL OR (edited_at, id) < (%(after_at)s, %(after_id)s::uuid))
ORDER BY edited_at DESC, id DESC
LIMIT %(limit)s
"""

# Taking a reaction back is logged as adding one is; taking back one the caller does not have logs nothing.
REMOVE_REACTION = f"""
WITH gone AS (
    DELETE FROM message_reactions WHERE message_id = %(message_id)s AND user_id = %(user_id)s
      AND {_EMOJI_KEY.format("emoji")} = {_EMOJI_KEY.format("%(emoji)s")}
    RETURNING id
),
{_REACTIONS_LOGGED.format(changed="gone")}
SELECT id FROM gone
"""  # noqa: S608 (fixed text)

FEEDBACK_COLUMNS = """
id, message_id, user_id, rating, model_name, model_provider, temperature, max_tokens, created_at, updated_at
"""

PUT_FEEDBACK = """
INSERT INTO message_feedback (message_id, user_id, rating, model_name, model_provider, temperature, max_tokens)
VALUES (%(message_id)s, %(user_id)s, %(rating)s, %(model_name)s, %(model_provider)s, %(temperature)s,
        %(max_tokens)s)
ON CONFLICT (message_id, user_id) DO UPDATE
SET rating = EXCLUDED.rating, model_name = EXCLUDED.model_name, model_provider = EXCLUDED.model_provider,
    temperature = EXCLUDED.temperature, max_tokens = EXCLUDED.max_tokens
RETURNING
id, message_id, user_id, rating, model_name, model_provider, temperature, max_tokens, created_at, updated_at

"""

GET_FEEDBACK = """SELECT
id, message_id, user_id, rating, model_name, model_provider, temperature, max_tokens, created_at, updated_at
 FROM message_feedback WHERE message_id = %(message_id)s AND user_id = %(user_id)s"""

# Full-text search over the caller's conversations only (or one of them); newest first, keyset on id.
SEARCH = _rendered_page(
    f"""
        SELECT {_M_COLUMNS}
        FROM messages m
        JOIN participants p ON p.conversation_id = m.conversation_id AND p.user_id = %(user_id)s
        WHERE m.search_vector @@ plainto_tsquery('simple', %(q)s)
          AND (%(conversation_id)s::uuid IS NULL OR m.conversation_id = %(conversation_id)s)
          AND (%(cursor)s::bigint IS NULL OR m.id {{beyond}} %(cursor)s)
        ORDER BY m.id {{order}} LIMIT %(limit)s""",  # noqa: S608 (fixed text)
    forward=False,
)


@dataclass(frozen=True)
class SentRow:
    created: bool
    message_json: str  # the message as the API shows it (see _json_of)
    same: bool  # False: the idempotency key's message is another one than this send asked for


class MessagesRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def send(self, params: dict[str, Any]) -> SentRow | None:
        """The new message (created=True) or the original of a retried key; None when nothing matched."""
        return self._sent(SEND, params)

    def find_by_key(self, params: dict[str, Any]) -> SentRow | None:
        return self._sent(FIND_BY_KEY, params)

    def _sent(self, statement: str, params: dict[str, Any]) -> SentRow | None:
        row = self.conn.execute(statement, params).fetchone()
        return None if row is None else SentRow(created=bool(row[0]), message_json=str(row[1]), same=bool(row[2]))

    def is_full(self, conversation_id: UUID, message_limit: int) -> bool:
        """Whether the conversation holds `message_limit` messages or more (the send's own bound)."""
        params = {"conversation_id": conversation_id, "message_limit": message_limit}
        row = self.conn.execute(IS_FULL, params).fetchone()
        return bool(row and row[0])

    def thread_in_conversation(self, thread_id: UUID, conversation_id: UUID) -> bool:
        return (
            self.conn.execute(THREAD_OF_CONVERSATION, {"thread_id": thread_id, "id": conversation_id}).fetchone()
            is not None
        )

    def page(self, params: dict[str, Any], *, forward: bool) -> tuple[str, int | None]:
        """(the page's items as a JSON array, the id the next page starts after or None)."""
        return self._rendered(PAGE_FORWARD if forward else PAGE_BACKWARD, params)

    def changes_page(self, params: dict[str, Any]) -> tuple[str, int | None, int]:
        """A page of the conversation's changes after %(cursor)s, oldest first, as `page` answers one, and the largest
        change id purged there (0: none)."""
        row = self.conn.execute(CHANGES_PAGE, params).fetchone()
        assert row is not None  # an aggregate always answers one row
        return str(row[0]), row[1], int(row[2])

    def newest_position(self, conversation_id: UUID) -> int:
        """The largest message id, change id or purged change id of the conversation (0: none)."""
        row = self.conn.execute(NEWEST_POSITION, {"conversation_id": conversation_id}).fetchone()
        assert row is not None
        return int(row[0])

    def thread_page(self, params: dict[str, Any], *, forward: bool) -> tuple[str, int | None]:
        """A page of a thread's messages, as `page` answers one."""
        return self._rendered(THREAD_PAGE_FORWARD if forward else THREAD_PAGE_BACKWARD, params)

    def search(self, params: dict[str, Any]) -> tuple[str, int | None]:
        """A page of the caller's messages matching %(q)s, newest first, as `page` answers one."""
        return self._rendered(SEARCH, params)

    def _rendered(self, statement: str, params: dict[str, Any]) -> tuple[str, int | None]:
        row = self.conn.execute(statement, params).fetchone()
        assert row is not None  # an aggregate always answers one row
        return str(row[0]), row[1]

    def access(self, message_id: int, user_id: UUID | None, lock: RowLock | None = None) -> MessageAccess | None:
        """The message and the caller's standing in its conversation; with `lock`, as ConversationsRepository.access
        has it (LOCKED_MESSAGE_ACCESS)."""
        locked = LOCKED_MESSAGE_ACCESS if user_id is not None else LOCKED_TOKEN_MESSAGE_ACCESS
        query = MESSAGE_ACCESS if lock is None else locked[lock]
        with self.conn.cursor(row_factory=class_row(MessageAccess)) as cur:
            return cur.execute(query, {"id": message_id, "user_id": user_id}).fetchone()

    def edit(self, message_id: int, content: str, user_id: UUID | None, edit_limit: int | None) -> Message | None:
        """The edited message; None when it is gone, or its conversation keeps `edit_limit` earlier versions."""
        params = {"id": message_id, "content": content, "user_id": user_id, "edit_limit": edit_limit}
        with self.conn.cursor(row_factory=class_row(Message)) as cur:
            return cur.execute(EDIT, params).fetchone()

    def edits_full(self, conversation_id: UUID, edit_limit: int) -> bool:
        """Whether the conversation keeps `edit_limit` earlier versions of its messages or more."""
        row = self.conn.execute(EDITS_FULL, {"conversation_id": conversation_id, "edit_limit": edit_limit}).fetchone()
        return bool(row and row[0])

    def delete(self, message_id: int) -> None:
        self.conn.execute(DELETE, {"id": message_id})

    def mark(
        self, conversation_id: UUID, user_id: UUID, message_id: int, *, read: bool
    ) -> Callable[[], ReadCursor | None]:
        """Queue a read or delivered mark (sent with what follows in a pipelined unit of work); the returned function
        gives the reader's cursor and how many statuses moved (None: no such message there, or not a participant)."""
        params = {"conversation_id": conversation_id, "user_id": user_id, "message_id": message_id}
        cur = self.conn.cursor(row_factory=class_row(ReadCursor)).execute(MARK_READ if read else MARK_DELIVERED, params)
        return cur.fetchone

    def add_reaction(
        self, conversation_id: UUID, message_id: int, user_id: UUID, emoji: str, max_emoji: int
    ) -> tuple[Reaction, bool] | None:
        """The new reaction (True; logged as a change of the message in its conversation, `conversation_id`) or the
        caller's same one (False); None when the message holds `max_emoji` distinct emoji and this one is not among
        them. The caller holds the conversation's row FOR NO KEY UPDATE (the change's position)."""
        params = {
            "conversation_id": conversation_id,
            "message_id": message_id,
            "user_id": user_id,
            "emoji": emoji,
            "max_emoji": max_emoji,
        }
        with self.conn.cursor(row_factory=class_row(Reaction)) as cur:
            added = cur.execute(ADD_REACTION, params).fetchone()
            if added is not None:
                return added, True
            existing = cur.execute(GET_REACTION, params).fetchone()
            return None if existing is None else (existing, False)

    def reaction_counts(self, message_id: int, user_id: UUID | None) -> list[ReactionCount]:
        with self.conn.cursor(row_factory=class_row(ReactionCount)) as cur:
            return cur.execute(REACTION_COUNTS, {"message_id": message_id, "user_id": user_id}).fetchall()

    def edits_page(self, message_id: int, after: tuple[datetime, UUID] | None, limit: int) -> list[MessageEdit]:
        """Earlier versions of the message, the latest edit first."""
        params = {
            "message_id": message_id,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
        }
        with self.conn.cursor(row_factory=class_row(MessageEdit)) as cur:
            return cur.execute(EDITS_PAGE, params).fetchall()

    def remove_reaction(self, conversation_id: UUID, message_id: int, user_id: UUID, emoji: str) -> bool:
        """Whether the caller had the reaction (then taken back and logged, as add_reaction logs one)."""
        params = {"conversation_id": conversation_id, "message_id": message_id, "user_id": user_id, "emoji": emoji}
        return self.conn.execute(REMOVE_REACTION, params).fetchone() is not None

    def put_feedback(self, params: dict[str, Any]) -> Feedback:
        with self.conn.cursor(row_factory=class_row(Feedback)) as cur:
            row = cur.execute(PUT_FEEDBACK, params).fetchone()
            assert row is not None
            return row

    def get_feedback(self, message_id: int, user_id: UUID) -> Feedback | None:
        with self.conn.cursor(row_factory=class_row(Feedback)) as cur:
            return cur.execute(GET_FEEDBACK, {"message_id": message_id, "user_id": user_id}).fetchone()
