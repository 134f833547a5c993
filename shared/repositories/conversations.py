"""SQL for conversations, participants, threads, panels and data references."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb

from shared.errors import ConflictError
from shared.models.conversations import UNREAD_COUNT_MAX, DataRef, Panel, Participant, Thread


@dataclass(frozen=True)
class AccessRow:
    id: UUID
    kind: str
    role: str | None


# The caller's standing in a conversation: its kind and the caller's participant role (NULL: none).
ACCESS = """
SELECT c.id, c.kind, p.role
FROM conversations c
LEFT JOIN participants p ON p.conversation_id = c.id AND p.user_id = %(user_id)s
WHERE c.id = %(id)s
"""

# How a write holds the conversation's row until it commits: KEY SHARE when the write leaves the row alone (it
# only keeps the conversation from being deleted under it), NO KEY UPDATE when the write changes the row or must
# exclude sends (as they and removals take it), UPDATE when it deletes the row.
RowLock = Literal["KEY SHARE", "NO KEY UPDATE", "UPDATE"]
ROW_LOCKS: tuple[RowLock, ...] = ("KEY SHARE", "NO KEY UPDATE", "UPDATE")

# A write's access check: the conversation's row, then the caller's participant row, locked until the write commits
# (the order a removal takes them, so neither waits for the other while holding what the other needs). A removal
# that held the conversation's row has deleted the participant by the time this one gets its lock: no row, a 404.
# Checked against the snapshot only, a write waiting behind the removal saw the participant and went in after it.
# An anonymous token has no participant row; its conversation's row is locked alone.
LOCKED_ACCESS: dict[RowLock, str] = {
    mode: f"""
SELECT c.id, c.kind, p.role
FROM conversations c
JOIN participants p ON p.conversation_id = c.id AND p.user_id = %(user_id)s
WHERE c.id = %(id)s
FOR {mode} OF c FOR KEY SHARE OF p
"""  # noqa: S608 (lock modes from the fixed ROW_LOCKS)
    for mode in ROW_LOCKS
}
LOCKED_TOKEN_ACCESS: dict[RowLock, str] = {mode: f"{ACCESS}FOR {mode} OF c\n" for mode in ROW_LOCKS}

CONVERSATION_COLUMNS = """
c.id, c.kind, c.is_group, c.title, c.user_id, c.created_by, c.use_case, c.status, c.room_type, c.room_token,
c.host, c.cmd_port, c.viz_port, c.last_message_at, c.created_at, c.updated_at
"""

# One conversation as the caller sees it: role, unread count (messages after the read cursor from others, counted
# up to UNREAD_COUNT_MAX + 1 by confab_unread_count, migration 0623, whose walk of messages (conversation_id, id)
# stops there), a preview of the last message and the change feed's head (its newest change kept, or where its
# changes were purged up to if newer: a client below that must poll, and learn of the 410), two index probes a row.
# The list renders its conversations the same way, as JSON (migrations 0622, 0623): the two change together.
CONVERSATION_VIEW = (
    "SELECT"  # noqa: S608 (fixed column list)
    + CONVERSATION_COLUMNS
    + f""", p.role, coalesce(c.last_message_at, c.created_at) AS activity_at,
       least(unread.n, {UNREAD_COUNT_MAX}) AS unread_count, unread.n > {UNREAD_COUNT_MAX} AS unread_count_capped,
       CASE WHEN last.id IS NULL THEN NULL ELSE jsonb_build_object(
           'id', last.id, 'sender_id', last.sender_id, 'sender_kind', last.sender_kind,
           'content', left(last.content, 200), 'created_at', confab_json_time(last.created_at)) END AS last_message,
       greatest((SELECT max(ch.id) FROM message_changes ch WHERE ch.conversation_id = c.id),
                (SELECT h.purged_through FROM message_change_horizons h WHERE h.conversation_id = c.id))
           AS last_change_id
FROM conversations c
LEFT JOIN participants p ON p.conversation_id = c.id AND p.user_id = %(user_id)s
LEFT JOIN LATERAL (
    SELECT m.id, m.sender_id, m.sender_kind, m.content, m.created_at FROM messages m
    WHERE m.conversation_id = c.id ORDER BY m.id DESC LIMIT 1
) last ON true
CROSS JOIN LATERAL (
    SELECT CASE WHEN p.user_id IS NULL THEN 0
                ELSE confab_unread_count(c.id, p.user_id, p.last_read_message_id) END AS n
) unread
"""  # noqa: S608 (a constant)
)

GET_VIEW = CONVERSATION_VIEW + "WHERE c.id = %(id)s"

# The caller's conversations by last activity, newest first, a page rendered as JSON (its items, and the key of the
# last one when there is more): a PL/pgSQL function (migration 0622), so that the server keeps the statement's plan,
# which chooses the page's conversations one of two ways while it runs, each cheap for one kind of caller. Each
# conversation reads as CONVERSATION_VIEW has it. Only conversations of the kinds given (NULL: every kind), read
# through the caller's participant rows, which carry their conversation's kind (migrations 0624 to 0627).
LIST_FOR_MEMBER = (
    "SELECT * FROM confab_conversation_page(%(user_id)s, %(limit)s, %(after_at)s, %(after_id)s, %(kinds)s::text[])"
)

INSERT_CONVERSATION = """
INSERT INTO conversations (id, kind, title, user_id, created_by, use_case, room_type, room_token, host, cmd_port,
                           viz_port, direct_key, anonymous_token_hash)
VALUES (%(id)s, %(kind)s, %(title)s, %(user_id)s, %(created_by)s, %(use_case)s, %(room_type)s, %(room_token)s,
        %(host)s, %(cmd_port)s, %(viz_port)s, %(direct_key)s, %(anonymous_token_hash)s)
ON CONFLICT (direct_key) DO NOTHING
RETURNING id
"""

FIND_DIRECT = "SELECT id FROM conversations WHERE direct_key = %(direct_key)s"

# room_token is unique across every room (migration 0001).
ROOM_TOKEN_KEY = "conversations_room_token_key"

# Where a participant's read cursor starts: at the conversation's newest message when they are added (NULL while it has
# none), so what was sent before they came (a group's history, or a direct conversation's before its user left and
# came back) does not count as unread. No status moves: nobody read those messages. A message committed after the
# statement's snapshot has a larger id (ids follow commit order within a conversation) and counts.
_CURSOR_AT_JOIN = "(SELECT max(m.id) FROM messages m WHERE m.conversation_id = %(conversation_id)s)"


# CTEs that log a 'participants' change (migration 0611) of each participant in {changed} (a CTE of the participant
# write with conversation_id and user_id), when %(logged)s: its position drawn under the conversation's row, which the
# caller holds FOR NO KEY UPDATE (or FOR UPDATE), so in commit order as an edit's. The feed reads the participant as
# they are at the poll, so the user's earlier entry in the conversation goes (both would read the same; the statement's
# snapshot does not hold the entry it logs). A write that changed nothing has no row there and logs nothing.
PARTICIPANTS_LOGGED = """superseded AS (
    DELETE FROM message_changes ch USING {changed} x
    WHERE %(logged)s AND ch.user_id = x.user_id AND ch.conversation_id = x.conversation_id AND ch.kind = 'participants'
),
logged AS (
    INSERT INTO message_changes (conversation_id, kind, user_id)
    SELECT x.conversation_id, 'participants', x.user_id FROM {changed} x WHERE %(logged)s
)"""


def participants_logged(write: str) -> str:
    """The statement of a participant write (`write`: an INSERT, UPDATE or DELETE of participants, without its
    RETURNING) that logs each participant it wrote (PARTICIPANTS_LOGGED) and answers how many it wrote."""
    return f"""
WITH changed AS (
{write}
    RETURNING conversation_id, user_id
),
{PARTICIPANTS_LOGGED.format(changed="changed")}
SELECT count(*) FROM changed
"""  # noqa: S608 (fixed text)


# A new conversation's first participants log nothing (nobody could poll it before; its participant list says who
# they are): `logged` false. A direct conversation's user back after leaving is logged.
ADD_PARTICIPANTS = participants_logged(f"""
    INSERT INTO participants (conversation_id, user_id, role, last_read_message_id)
    SELECT %(conversation_id)s, u.id, CASE WHEN u.id = %(admin_id)s THEN 'admin' ELSE %(role)s END, {_CURSOR_AT_JOIN}
    FROM users u
    WHERE u.id = ANY(%(user_ids)s) AND u.is_active
    ON CONFLICT (conversation_id, user_id) DO NOTHING""")  # noqa: S608 (fixed text)

ACTIVE_USERS = "SELECT id, is_ai FROM users WHERE id = ANY(%(ids)s) AND is_active"

UPDATE_CONVERSATION_FIELDS = ("title", "status", "use_case", "room_type", "host", "cmd_port", "viz_port")

DELETE_CONVERSATION = "DELETE FROM conversations WHERE id = %(id)s"

# Participants

PARTICIPANT_COLUMNS = """
p.id, p.conversation_id, p.user_id, u.username, p.role, p.last_read_message_id, p.last_read_at, p.joined_at
"""

LIST_PARTICIPANTS = """
SELECT
p.id, p.conversation_id, p.user_id, u.username, p.role, p.last_read_message_id, p.last_read_at, p.joined_at

FROM participants p JOIN users u ON u.id = p.user_id
WHERE p.conversation_id = %(conversation_id)s
  AND (%(after_at)s::timestamptz IS NULL OR (p.joined_at, p.id) > (%(after_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY p.joined_at, p.id
LIMIT %(limit)s
"""

GET_PARTICIPANT = """
SELECT
p.id, p.conversation_id, p.user_id, u.username, p.role, p.last_read_message_id, p.last_read_at, p.joined_at

FROM participants p JOIN users u ON u.id = p.user_id
WHERE p.conversation_id = %(conversation_id)s AND p.user_id = %(user_id)s
"""

# An addition, a role change and a removal are each logged in the change feed, in their own statement (above).
# A participant already there (or added by a concurrent request that committed first) writes nothing and logs
# nothing: the count is 0, which the service answers with a 409 that says so.
ADD_PARTICIPANT = participants_logged(f"""
    INSERT INTO participants (conversation_id, user_id, role, last_read_message_id)
    VALUES (%(conversation_id)s, %(user_id)s, %(role)s, {_CURSOR_AT_JOIN})
    ON CONFLICT (conversation_id, user_id) DO NOTHING""")  # noqa: S608 (fixed text)

# The same role again writes no row and logs nothing.
SET_ROLE = participants_logged("""
    UPDATE participants SET role = %(role)s
    WHERE conversation_id = %(conversation_id)s AND user_id = %(user_id)s AND role <> %(role)s""")

REMOVE_PARTICIPANT = participants_logged("""
    DELETE FROM participants WHERE conversation_id = %(conversation_id)s AND user_id = %(user_id)s""")

# Locks the conversation's participant rows so two admins cannot both step down at once.
OTHER_ADMINS_AND_HUMANS = """
SELECT count(*) FILTER (WHERE role = 'admin') AS admins, count(*) FILTER (WHERE role <> 'ai') AS humans
FROM (SELECT role FROM participants
      WHERE conversation_id = %(conversation_id)s AND user_id <> %(user_id)s FOR UPDATE) others
"""

# Model accounts answer people; they do not keep a conversation alive on their own. One is a user marked is_ai,
# with role 'ai' in a group and 'admin' in a direct conversation (both sides of one are admins).
COUNT_HUMANS = """
SELECT count(*) FROM participants p JOIN users u ON u.id = p.user_id
WHERE p.conversation_id = %(conversation_id)s AND p.role <> 'ai' AND NOT u.is_ai
"""

# Whether anyone but the caller takes part (a direct conversation's other user, once left or deleted, does not).
HAS_OTHER_PARTICIPANT = """
SELECT EXISTS (SELECT 1 FROM participants WHERE conversation_id = %(conversation_id)s AND user_id <> %(user_id)s)
"""

LOCK_CONVERSATION: dict[RowLock, str] = {
    mode: f"SELECT id FROM conversations WHERE id = %(id)s FOR {mode}"  # noqa: S608 (lock modes from ROW_LOCKS)
    for mode in ROW_LOCKS
}

# Threads

THREAD_COLUMNS = """
id, conversation_id, user_id, title, thread_data, model_id, tokens_input_total, tokens_output_total,
tokens_cached_total, tokens_total, requests_count, cost_total_usd, last_usage_at, created_at, updated_at
"""

# %(thread_limit)s bounds the threads of a conversation (NULL: none; an anonymous one has a bound), counted up to
# the bound at most. Concurrent creates can pass it by at most their number.
INSERT_THREAD = """
INSERT INTO conversation_threads (conversation_id, user_id, title, model_id, thread_data)
SELECT %(conversation_id)s, %(user_id)s, %(title)s, %(model_id)s, %(thread_data)s
WHERE %(thread_limit)s::integer IS NULL OR (
    SELECT count(*) FROM (SELECT 1 FROM conversation_threads WHERE conversation_id = %(conversation_id)s
                          LIMIT %(thread_limit)s) held) < %(thread_limit)s
RETURNING
id, conversation_id, user_id, title, thread_data, model_id, tokens_input_total, tokens_output_total,
tokens_cached_total, tokens_total, requests_count, cost_total_usd, last_usage_at, created_at, updated_at

"""

LIST_THREADS = """
SELECT
id, conversation_id, user_id, title, thread_data, model_id, tokens_input_total, tokens_output_total,
tokens_cached_total, tokens_total, requests_count, cost_total_usd, last_usage_at, created_at, updated_at
 FROM conversation_threads
WHERE conversation_id = %(conversation_id)s
  AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) < (%(after_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
"""

GET_THREAD = """SELECT
id, conversation_id, user_id, title, thread_data, model_id, tokens_input_total, tokens_output_total,
tokens_cached_total, tokens_total, requests_count, cost_total_usd, last_usage_at, created_at, updated_at
 FROM conversation_threads WHERE id = %(id)s"""

# Panels and data references

PANEL_COLUMNS = "id, conversation_id, name, layout, config, created_by, created_at, updated_at"

INSERT_PANEL = """
INSERT INTO dashboard_panels (conversation_id, name, layout, config, created_by)
VALUES (%(conversation_id)s, %(name)s, %(layout)s, %(config)s, %(created_by)s)
RETURNING id, conversation_id, name, layout, config, created_by, created_at, updated_at
"""

LIST_PANELS = """
SELECT id, conversation_id, name, layout, config, created_by, created_at, updated_at FROM dashboard_panels
WHERE conversation_id = %(conversation_id)s
  AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) > (%(after_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at, id
LIMIT %(limit)s
"""

GET_PANEL = """SELECT id, conversation_id, name, layout, config, created_by, created_at,
    updated_at FROM dashboard_panels WHERE id = %(id)s"""

UPDATE_PANEL = """
UPDATE dashboard_panels SET name = coalesce(%(name)s, name), layout = coalesce(%(layout)s, layout),
       config = coalesce(%(config)s, config)
WHERE id = %(id)s
RETURNING id, conversation_id, name, layout, config, created_by, created_at, updated_at
"""

DELETE_PANEL = "DELETE FROM dashboard_panels WHERE id = %(id)s"

DATA_REF_COLUMNS = "id, conversation_id, file_id, panel_id, created_by, created_at"

# The file must belong to the caller and the panel (when given) to the same conversation.
INSERT_DATA_REF = """
INSERT INTO room_data_refs (conversation_id, file_id, panel_id, created_by)
SELECT %(conversation_id)s, f.id, %(panel_id)s, %(created_by)s
FROM user_files f
WHERE f.id = %(file_id)s AND f.owner_id = %(created_by)s
  AND (%(panel_id)s::uuid IS NULL OR EXISTS (
       SELECT 1 FROM dashboard_panels dp WHERE dp.id = %(panel_id)s AND dp.conversation_id = %(conversation_id)s))
RETURNING id, conversation_id, file_id, panel_id, created_by, created_at
"""

LIST_DATA_REFS = """
SELECT id, conversation_id, file_id, panel_id, created_by, created_at FROM room_data_refs
WHERE conversation_id = %(conversation_id)s
  AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) > (%(after_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at, id
LIMIT %(limit)s
"""

GET_DATA_REF = (
    """SELECT id, conversation_id, file_id, panel_id, created_by, created_at FROM room_data_refs WHERE id = %(id)s"""
)

DELETE_DATA_REF = "DELETE FROM room_data_refs WHERE id = %(id)s"


def _after(key: tuple[Any, ...] | None) -> dict[str, Any]:
    return {"after_at": key[0] if key else None, "after_id": key[1] if key else None}


class ConversationsRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    # Conversations

    def access(self, conversation_id: UUID, user_id: UUID | None, lock: RowLock | None = None) -> AccessRow | None:
        """The caller's standing; with `lock`, a user's row is found only while they take part, and the
        conversation's and their participant rows stay locked until commit (LOCKED_ACCESS)."""
        query = ACCESS if lock is None else (LOCKED_ACCESS if user_id is not None else LOCKED_TOKEN_ACCESS)[lock]
        with self.conn.cursor(row_factory=class_row(AccessRow)) as cur:
            return cur.execute(query, {"id": conversation_id, "user_id": user_id}).fetchone()

    def lock_access(self, conversation_id: UUID, user_id: UUID, lock: RowLock) -> Callable[[], AccessRow | None]:
        """access(..., lock) for a user, queued (a pipelined unit of work sends it with what follows, the locks taken
        first); the returned function gives its row."""
        cur = self.conn.cursor(row_factory=class_row(AccessRow))
        cur.execute(LOCKED_ACCESS[lock], {"id": conversation_id, "user_id": user_id})
        return cur.fetchone

    def get_view(self, conversation_id: UUID, user_id: UUID | None) -> dict[str, Any] | None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(GET_VIEW, {"id": conversation_id, "user_id": user_id}).fetchone()

    def list_for_member(
        self, user_id: UUID, after: tuple[Any, ...] | None, limit: int, kinds: Sequence[str] | None = None
    ) -> tuple[str, tuple[datetime, UUID] | None]:
        """(up to `limit` - 1 of the caller's conversations of `kinds` (None: all) after the key `after` as a JSON
        array, the key of the last one when there is more or None); `limit` rows are read, the last only to tell."""
        params = {"user_id": user_id, "limit": limit, "kinds": None if kinds is None else list(kinds), **_after(after)}
        row = self.conn.execute(LIST_FOR_MEMBER, params).fetchone()
        assert row is not None  # the function answers one row
        items, after_at, after_id = row
        return str(items), (after_at, after_id) if after_at is not None else None

    def insert(self, values: dict[str, Any]) -> UUID | None:
        """The new conversation's id; None when a direct conversation for the same pair already exists. A room_token
        another conversation has is a 409 that names it (left to the generic translation, the 409 said only that "a
        resource with the same unique value" exists and named the index)."""
        try:
            row = self.conn.execute(INSERT_CONVERSATION, values).fetchone()
        except pg_errors.UniqueViolation as exc:
            if exc.diag.constraint_name != ROOM_TOKEN_KEY:
                raise
            raise ConflictError(
                "room_token is already used by another conversation: choose another.", reason="room_token_taken"
            ) from exc
        return row[0] if row else None

    def find_direct(self, direct_key: str) -> UUID | None:
        row = self.conn.execute(FIND_DIRECT, {"direct_key": direct_key}).fetchone()
        return row[0] if row else None

    def active_users(self, ids: list[UUID]) -> dict[UUID, bool]:
        """Active users among `ids`, each with whether it is a model account."""
        return {row[0]: row[1] for row in self.conn.execute(ACTIVE_USERS, {"ids": ids}).fetchall()}

    def add_participants(
        self, conversation_id: UUID, user_ids: list[UUID], admin_id: UUID, role: str, *, logged: bool
    ) -> None:
        """Add those not in yet; with `logged`, each one added is a change in the feed (the caller holds the
        conversation's row FOR NO KEY UPDATE)."""
        params = {
            "conversation_id": conversation_id,
            "user_ids": user_ids,
            "admin_id": admin_id,
            "role": role,
            "logged": logged,
        }
        self.conn.execute(ADD_PARTICIPANTS, params)

    def update(self, conversation_id: UUID, changes: dict[str, Any]) -> None:
        from psycopg import sql

        fields = [name for name in UPDATE_CONVERSATION_FIELDS if name in changes]
        if not fields:
            return
        # Column names come from the fixed allow-list above, never from the request.
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in fields
        )
        statement = sql.SQL("UPDATE conversations SET {} WHERE id = {}").format(assignments, sql.Placeholder("id"))
        self.conn.execute(statement, {**{name: changes[name] for name in fields}, "id": conversation_id})

    def delete(self, conversation_id: UUID) -> None:
        self.conn.execute(DELETE_CONVERSATION, {"id": conversation_id})

    def has_other_participant(self, conversation_id: UUID, user_id: UUID) -> bool:
        row = self.conn.execute(
            HAS_OTHER_PARTICIPANT, {"conversation_id": conversation_id, "user_id": user_id}
        ).fetchone()
        return bool(row and row[0])

    def lock(self, conversation_id: UUID, mode: RowLock = "NO KEY UPDATE") -> bool:
        """Lock the conversation's row until commit; False when there is none (deleted meanwhile)."""
        return self.conn.execute(LOCK_CONVERSATION[mode], {"id": conversation_id}).fetchone() is not None

    # Participants

    def list_participants(self, conversation_id: UUID, after: tuple[Any, ...] | None, limit: int) -> list[Participant]:
        with self.conn.cursor(row_factory=class_row(Participant)) as cur:
            params = {"conversation_id": conversation_id, "limit": limit, **_after(after)}
            return cur.execute(LIST_PARTICIPANTS, params).fetchall()

    def get_participant(self, conversation_id: UUID, user_id: UUID) -> Participant | None:
        with self.conn.cursor(row_factory=class_row(Participant)) as cur:
            return cur.execute(GET_PARTICIPANT, {"conversation_id": conversation_id, "user_id": user_id}).fetchone()

    # Each participant write logs its change in the feed; the caller holds the conversation's row FOR NO KEY UPDATE.

    def add_participant(self, conversation_id: UUID, user_id: UUID, role: str) -> bool:
        """Whether the user was added (False: already a participant)."""
        params = {"conversation_id": conversation_id, "user_id": user_id, "role": role, "logged": True}
        row = self.conn.execute(ADD_PARTICIPANT, params).fetchone()
        return bool(row and row[0])

    def set_role(self, conversation_id: UUID, user_id: UUID, role: str) -> None:
        params = {"conversation_id": conversation_id, "user_id": user_id, "role": role, "logged": True}
        self.conn.execute(SET_ROLE, params)

    def remove_participant(self, conversation_id: UUID, user_id: UUID) -> None:
        params = {"conversation_id": conversation_id, "user_id": user_id, "logged": True}
        self.conn.execute(REMOVE_PARTICIPANT, params)

    def others(self, conversation_id: UUID, user_id: UUID) -> tuple[int, int]:
        """(admins, non-model participants) other than `user_id`, with their rows locked."""
        row = self.conn.execute(
            OTHER_ADMINS_AND_HUMANS, {"conversation_id": conversation_id, "user_id": user_id}
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def count_humans(self, conversation_id: UUID) -> int:
        """Participants other than model accounts."""
        row = self.conn.execute(COUNT_HUMANS, {"conversation_id": conversation_id}).fetchone()
        return int(row[0]) if row else 0

    # Threads

    def insert_thread(self, values: dict[str, Any], thread_limit: int | None) -> Thread | None:
        """The new thread; None when the conversation holds `thread_limit` threads already."""
        params = {**values, "thread_data": Jsonb(values["thread_data"]), "thread_limit": thread_limit}
        with self.conn.cursor(row_factory=class_row(Thread)) as cur:
            return cur.execute(INSERT_THREAD, params).fetchone()

    def list_threads(self, conversation_id: UUID, after: tuple[Any, ...] | None, limit: int) -> list[Thread]:
        with self.conn.cursor(row_factory=class_row(Thread)) as cur:
            params = {"conversation_id": conversation_id, "limit": limit, **_after(after)}
            return cur.execute(LIST_THREADS, params).fetchall()

    def get_thread(self, thread_id: UUID) -> Thread | None:
        with self.conn.cursor(row_factory=class_row(Thread)) as cur:
            return cur.execute(GET_THREAD, {"id": thread_id}).fetchone()

    # Panels

    def insert_panel(self, values: dict[str, Any]) -> Panel:
        params = {**values, "layout": Jsonb(values["layout"]), "config": Jsonb(values["config"])}
        with self.conn.cursor(row_factory=class_row(Panel)) as cur:
            row = cur.execute(INSERT_PANEL, params).fetchone()
            assert row is not None
            return row

    def list_panels(self, conversation_id: UUID, after: tuple[Any, ...] | None, limit: int) -> list[Panel]:
        with self.conn.cursor(row_factory=class_row(Panel)) as cur:
            params = {"conversation_id": conversation_id, "limit": limit, **_after(after)}
            return cur.execute(LIST_PANELS, params).fetchall()

    def get_panel(self, panel_id: UUID) -> Panel | None:
        with self.conn.cursor(row_factory=class_row(Panel)) as cur:
            return cur.execute(GET_PANEL, {"id": panel_id}).fetchone()

    def update_panel(self, panel_id: UUID, name: str | None, layout: Any, config: Any) -> Panel | None:
        params = {
            "id": panel_id,
            "name": name,
            "layout": Jsonb(layout) if layout is not None else None,
            "config": Jsonb(config) if config is not None else None,
        }
        with self.conn.cursor(row_factory=class_row(Panel)) as cur:
            return cur.execute(UPDATE_PANEL, params).fetchone()

    def delete_panel(self, panel_id: UUID) -> None:
        self.conn.execute(DELETE_PANEL, {"id": panel_id})

    # Data references

    def insert_data_ref(self, values: dict[str, Any]) -> DataRef | None:
        with self.conn.cursor(row_factory=class_row(DataRef)) as cur:
            return cur.execute(INSERT_DATA_REF, values).fetchone()

    def list_data_refs(self, conversation_id: UUID, after: tuple[Any, ...] | None, limit: int) -> list[DataRef]:
        with self.conn.cursor(row_factory=class_row(DataRef)) as cur:
            params = {"conversation_id": conversation_id, "limit": limit, **_after(after)}
            return cur.execute(LIST_DATA_REFS, params).fetchall()

    def get_data_ref(self, ref_id: UUID) -> DataRef | None:
        with self.conn.cursor(row_factory=class_row(DataRef)) as cur:
            return cur.execute(GET_DATA_REF, {"id": ref_id}).fetchone()

    def delete_data_ref(self, ref_id: UUID) -> None:
        self.conn.execute(DELETE_DATA_REF, {"id": ref_id})
