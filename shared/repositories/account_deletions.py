"""SQL of an account's deletion: what it locks, what it hands over to the people who stay, and the row itself.

The foreign keys do the rest when the user row goes (docs/schema.md, "Delete rules"); these statements are the
part of a deletion the schema alone would get wrong for other people: a conversation they are in, a licence seat
they hold.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from shared.repositories.conversations import PARTICIPANTS_LOGGED, participants_logged
from shared.repositories.users import USER_COLUMNS, UserRow

# FOR NO KEY UPDATE: a role change or deactivation (FOR UPDATE), a password change, a sign-in and an admin acting
# with this account (FOR SHARE) wait for the deletion, and it for them; writes that only reference the account (a
# send, a seat given to it: FOR KEY SHARE) do not, so one holding a conversation's row that the deletion waits for
# is not waiting for the deletion in turn. The DELETE at the end waits for those to commit.
LOCK_USER = f"SELECT {USER_COLUMNS} FROM users WHERE id = %(id)s FOR NO KEY UPDATE"  # noqa: S608 (fixed columns)

# Once its conversations are locked: FOR UPDATE waits for every write in flight that references the account (a
# group or room it creates, a licence or a seat given to it: they hold FOR KEY SHARE on its row) and makes any later
# one wait for the deletion, then fail on the foreign key. What is handed over and counted after this is all there
# will be: a group committed between the hand-over and the DELETE kept its members without an admin, and a room
# went with its owner and the others' messages. Not taken first: a send holding a conversation's row names the
# account (FOR KEY SHARE) before it commits, and would wait for this while the deletion waited for its conversation.
SEAL_USER = "SELECT 1 FROM users WHERE id = %(id)s FOR UPDATE"

# The account's licences, in one order, as a seat assignment or a licence change locks each: none of them gets a
# seat once this has its rows.
LOCK_LICENSES = "SELECT id FROM licenses WHERE owner_id = %(user_id)s ORDER BY id FOR UPDATE"
# Read after the lock above (a new snapshot): the seats no assignment can add to any more.
LICENSES_WITH_OTHERS_SEATS = """
SELECT count(DISTINCT s.license_id) FROM license_seats s JOIN licenses l ON l.id = s.license_id
WHERE l.owner_id = %(user_id)s AND s.user_id <> %(user_id)s
"""

# Every conversation the account takes part in or owns, in one order. FOR UPDATE, as a removal that may leave
# nobody takes it: some are deleted below, and a role change, a removal or a send in any of them waits (each takes
# the conversation's row first), so what is counted next is what stays.
LOCK_CONVERSATIONS = """
SELECT id FROM conversations
WHERE id IN (SELECT conversation_id FROM participants WHERE user_id = %(user_id)s
             UNION ALL
             SELECT id FROM conversations WHERE user_id = %(user_id)s)
ORDER BY id
FOR UPDATE
"""
# Conversations nobody else could reach once the account goes (no other person; model accounts do not sign in),
# deleted as a leave deletes a conversation its last person leaves.
DELETE_LEFT_ALONE = """
DELETE FROM conversations c
WHERE c.id = ANY(%(ids)s::uuid[])
  AND NOT EXISTS (SELECT 1 FROM participants p JOIN users u ON u.id = p.user_id
                  WHERE p.conversation_id = c.id AND p.user_id <> %(user_id)s AND p.role <> 'ai' AND NOT u.is_ai)
"""
# Where the account is the only admin, the person who joined first among those left becomes admin (an active one
# before any deactivated one, who could not sign in to manage it): a leave
# refuses the last admin (409), but a deleted account cannot choose a successor afterwards, and an administrator
# deleting it may not see its conversations at all. Direct conversations have two admins and are never here.
# The new admin's role change is a change in the conversation's feed (migration 0611), as a PATCH of it would be,
# drawn under the conversation's row locked above.
PROMOTE_SUCCESSORS = participants_logged("""
    UPDATE participants p SET role = 'admin'
    FROM (
        SELECT DISTINCT ON (o.conversation_id) o.id
        FROM participants me
        JOIN participants o ON o.conversation_id = me.conversation_id AND o.user_id <> me.user_id AND o.role <> 'ai'
        JOIN users u ON u.id = o.user_id AND NOT u.is_ai
        WHERE me.user_id = %(user_id)s AND me.role = 'admin'
          AND NOT EXISTS (SELECT 1 FROM participants a
                          WHERE a.conversation_id = me.conversation_id AND a.user_id <> me.user_id AND a.role = 'admin')
        ORDER BY o.conversation_id, NOT u.is_active, o.joined_at, o.id
    ) successor
    WHERE p.id = successor.id""")
# The account leaves every conversation that stays (its participant rows go with the user row): each leaving is a
# 'participants' change in that conversation's feed, as a leave is, drawn under the conversation's row locked above,
# replacing the account's earlier entries there. The DELETE of the user row then sets its user_id NULL (migration
# 0603's foreign key): the entry says that a deleted account left, and names nobody.
LOG_LEAVING = f"""
WITH leaving AS (
    SELECT conversation_id, user_id FROM participants
    WHERE user_id = %(user_id)s AND conversation_id = ANY(%(ids)s::uuid[])
),
{PARTICIPANTS_LOGGED.format(changed="leaving")}
SELECT count(*) FROM leaving
"""  # noqa: S608 (fixed text)
# A room or assistant chat the account owns that other people are in stays theirs: it loses its owner (as a group
# has none) rather than going with the account (conversations.user_id is ON DELETE CASCADE). Those with nobody
# else were deleted above.
RELEASE_OWNED = "UPDATE conversations SET user_id = NULL WHERE user_id = %(user_id)s"

RECORD = """
INSERT INTO account_deletions (user_id, role, requested_by, actor_id)
VALUES (%(user_id)s, %(role)s, %(requested_by)s, %(actor_id)s)
"""
DELETE_USER = "DELETE FROM users WHERE id = %(id)s"


class AccountDeletionsRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def lock_user(self, user_id: UUID) -> UserRow | None:
        """The account, locked against role changes, deactivation, password changes and sign-ins until commit."""
        with self.conn.cursor(row_factory=class_row(UserRow)) as cur:
            return cur.execute(LOCK_USER, {"id": user_id}).fetchone()

    def lock_conversations(self, user_id: UUID) -> None:
        """Lock the conversations the account is in or owns, as a send in them does first."""
        self.conn.execute(LOCK_CONVERSATIONS, {"user_id": user_id})

    def seal(self, user_id: UUID) -> None:
        """Wait for the writes in flight that name the account, and keep any more from starting (after
        lock_conversations)."""
        self.conn.execute(SEAL_USER, {"id": user_id})

    def licenses_with_others_seats(self, user_id: UUID) -> int:
        """How many of the account's licences seat someone else; the licences stay locked until commit."""
        self.conn.execute(LOCK_LICENSES, {"user_id": user_id})
        row = self.conn.execute(LICENSES_WITH_OTHERS_SEATS, {"user_id": user_id}).fetchone()
        return int(row[0]) if row else 0

    def hand_over_conversations(self, user_id: UUID) -> tuple[int, int, int]:
        """Lock the account's conversations (again after seal, with any committed meanwhile); delete those left to
        nobody, give an admin to those it was the only admin of, and release those it owns to the people in them.
        (deleted, admins given, released)."""
        ids = [row[0] for row in self.conn.execute(LOCK_CONVERSATIONS, {"user_id": user_id})]
        if not ids:
            return 0, 0, 0
        params = {"user_id": user_id, "ids": ids, "logged": True}
        deleted = self.conn.execute(DELETE_LEFT_ALONE, params).rowcount
        row = self.conn.execute(PROMOTE_SUCCESSORS, params).fetchone()
        promoted = int(row[0]) if row else 0
        self.conn.execute(LOG_LEAVING, params)
        released = self.conn.execute(RELEASE_OWNED, params).rowcount
        return deleted, promoted, released

    def record(self, user_id: UUID, role: str, actor_id: UUID | None) -> None:
        """The deletion's trail: `actor_id` is the administrator who deleted the account, None for its user."""
        params = {
            "user_id": user_id,
            "role": role,
            "requested_by": "user" if actor_id is None else "admin",
            "actor_id": actor_id,
        }
        self.conn.execute(RECORD, params)

    def delete_user(self, user_id: UUID) -> None:
        self.conn.execute(DELETE_USER, {"id": user_id})
