"""Messages on a seeded 20,000-message conversation, each ratio measured side by side in one run:

- a page of 50 through the handler vs the same SQL run directly with psycopg (target <= 1.5x at p50);
- a send through the handler vs the same statements run directly (target <= 1.3x at p50), with the
  handler's commits and round trips counted from libpq's protocol trace (targets: 1 commit, <= 2 trips);
- the page at depth 10,000 vs the first page, both through the handler (target <= 1.3x);
- the conversation list's statement for a user in 20 of 100,000 conversations vs for a user in 5,000 of them,
  most of them recently active (target <= 1.0x): the first must not grow with the other users' conversations;
- the list of that user's 50 newest conversations through the handler vs its statement run directly (target <= 1.3x);
- the list's statement for a user with a group of 50,000 unread messages among 20 others vs for a user in the same
  conversations who read them all (target <= 1.5x): the unread count stops at UNREAD_COUNT_MAX + 1 messages, about
  half a millisecond's reading however many are unread (uncapped, the list grew with them: 10x and more).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from bench.harness import bench_database, report, side_by_side, trace_counts

SEEDED = 20_000
CONVERSATIONS = 100_000
UNREAD = 50_000


def _user(conn: psycopg.Connection[Any], name: str) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO users (username, email) VALUES (%s, %s) RETURNING id", (name, f"{name}@bench.test")
    ).fetchone()
    assert row is not None
    return row[0]


def _seed(url: str) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    with psycopg.connect(url, autocommit=True) as conn:
        alice, bob = (_user(conn, name) for name in ("alice", "bob"))
        cid = conn.execute("INSERT INTO conversations (kind, title) VALUES ('group', 'bench') RETURNING id").fetchone()[
            0
        ]  # type: ignore[index]
        conn.execute(
            "INSERT INTO participants (conversation_id, user_id, role) VALUES (%s, %s, 'admin'), (%s, %s, 'member')",
            (cid, alice, cid, bob),
        )
        conn.execute(
            "INSERT INTO messages (conversation_id, sender_id, content, created_at) "
            "SELECT %s, CASE WHEN g %% 2 = 0 THEN %s ELSE %s END::uuid, 'message number ' || g || ' of the bench', "
            "now() - make_interval(secs => %s - g) FROM generate_series(1, %s) g",
            (cid, alice, bob, SEEDED, SEEDED),
        )
        conn.execute("VACUUM ANALYZE messages")
    return cid, alice, bob


def _seed_conversations(url: str) -> tuple[uuid.UUID, uuid.UUID]:
    """CONVERSATIONS groups of two out of 500 users (about 400 each), active over a year (a tenth without a
    message); a sparse user in 20 of them at random, a heavy one in 5,000 of the 10,000 most recently active; three
    messages in each of theirs. Neither is in the page bench's conversation (one of the most recently active), whose
    20,000 unread messages would make the busy user's list count them, on every other run. Returns (sparse, heavy)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (username, email) SELECT 'pool' || g, 'pool' || g || '@bench.test' "
            "FROM generate_series(1, 500) g"
        )
        sparse, heavy = (
            conn.execute(
                "INSERT INTO users (username, email) VALUES (%s, %s) RETURNING id", (name, f"{name}@bench.test")
            ).fetchone()[0]  # type: ignore[index]
            for name in ("sparse", "heavy")
        )
        conn.execute(
            "INSERT INTO conversations (kind, title, created_at, last_message_at) "
            "SELECT 'group', 'c' || g, now() - make_interval(days => 400) + make_interval(secs => g * 300), "
            "CASE WHEN g %% 10 = 0 THEN NULL ELSE now() - make_interval(secs => (random() * 31536000)::int) END "
            "FROM generate_series(1, %s) g",
            (CONVERSATIONS,),
        )
        conn.execute(
            "INSERT INTO participants (conversation_id, user_id) "
            "SELECT c.id, pool.ids[1 + (c.n + k * 7) %% cardinality(pool.ids)] "
            "FROM (SELECT id, row_number() OVER () AS n FROM conversations) c CROSS JOIN generate_series(0, 1) k "
            "CROSS JOIN (SELECT array_agg(id) AS ids FROM users WHERE username LIKE %s) pool",
            ("pool%",),
        )
        conn.execute(
            "INSERT INTO participants (conversation_id, user_id) SELECT id, %s FROM conversations "
            "WHERE title <> 'bench' ORDER BY random() LIMIT 20",
            (sparse,),
        )
        conn.execute(
            "INSERT INTO participants (conversation_id, user_id) SELECT id, %s FROM "
            "(SELECT id FROM conversations WHERE title <> 'bench' "
            "ORDER BY coalesce(last_message_at, created_at) DESC LIMIT 10000) recent "
            "ORDER BY random() LIMIT 5000",
            (heavy,),
        )
        conn.execute(
            "INSERT INTO messages (conversation_id, sender_id, content, created_at) "
            "SELECT p.conversation_id, p.user_id, 'message ' || k, c.last_message_at - make_interval(secs => k) "
            "FROM participants p JOIN conversations c ON c.id = p.conversation_id CROSS JOIN generate_series(0, 2) k "
            "WHERE p.user_id IN (%s, %s) AND c.last_message_at IS NOT NULL",
            (sparse, heavy),
        )
        conn.execute("VACUUM ANALYZE conversations, participants, messages")
    return sparse, heavy


def _seed_unread(url: str, sparse: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """Two users in the sparse user's 20 conversations and in a group of UNREAD messages from a third (the most
    recently active conversation, so on the first page): one never read anything (no read cursor), the other read it
    all. Returns (behind, caught up)."""
    with psycopg.connect(url, autocommit=True) as conn:
        behind, caught_up = (_user(conn, name) for name in ("behind", "caught_up"))
        sender = conn.execute("SELECT id FROM users WHERE username = 'pool1'").fetchone()[0]  # type: ignore[index]
        busy = conn.execute(
            "INSERT INTO conversations (kind, title, last_message_at) VALUES ('group', 'unread', now()) RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO messages (conversation_id, sender_id, content, created_at) "
            "SELECT %s, %s, 'unread message ' || g, now() - make_interval(secs => %s - g) "
            "FROM generate_series(1, %s) g",
            (busy, sender, UNREAD, UNREAD),
        )
        conn.execute(
            "INSERT INTO participants (conversation_id, user_id, last_read_message_id) "
            "SELECT c.id, u.id, CASE WHEN u.id = %(caught_up)s "
            "                        THEN (SELECT max(m.id) FROM messages m WHERE m.conversation_id = c.id) END "
            "FROM (SELECT conversation_id AS id FROM participants WHERE user_id = %(sparse)s "
            "      UNION ALL SELECT %(busy)s) c CROSS JOIN unnest(ARRAY[%(behind)s, %(caught_up)s]::uuid[]) u(id)",
            {"sparse": sparse, "busy": busy, "behind": behind, "caught_up": caught_up},
        )
        conn.execute("INSERT INTO participants (conversation_id, user_id) VALUES (%s, %s)", (busy, sender))
        conn.execute("VACUUM ANALYZE conversations, participants, messages")
    return behind, caught_up


def main() -> None:
    with bench_database() as url:
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("CONFAB_STAGE", "test")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        from functions.conversations import lambda_handler as list_conversations
        from functions.messages import lambda_handler
        from shared.bootstrap import container
        from shared.pagination import ANSWER_MAX_BYTES, encode_cursor
        from shared.repositories.conversations import LIST_FOR_MEMBER
        from shared.repositories.messages import PAGE_BACKWARD, SEND
        from tests.conversations_helpers import event_for, jwt_principal
        from tests.helpers import FakeLambdaContext

        cid, alice, bob = _seed(url)
        context = FakeLambdaContext()
        reader = jwt_principal(bob)
        with (
            psycopg.connect(url, prepare_threshold=None) as conn,
            psycopg.connect(url, prepare_threshold=None, autocommit=True) as auto,
        ):
            ids = [r[0] for r in conn.execute("SELECT id FROM messages ORDER BY id DESC").fetchall()]
            conn.rollback()
            deep_cursor = encode_cursor((ids[10_000],))
            first_event, _ = event_for("GET", f"/v1/conversations/{cid}/messages", reader, query={"limit": 50})
            deep_event, _ = event_for(
                "GET", f"/v1/conversations/{cid}/messages", reader, query={"limit": 50, "cursor": deep_cursor}
            )
            page_params = {
                "anonymous": False,
                "user_id": bob,
                "conversation_id": cid,
                "cursor": None,
                "limit": 51,
                "max_bytes": ANSWER_MAX_BYTES,
            }

            def handler_page() -> None:
                response = lambda_handler(first_event, context)
                assert response["statusCode"] == 200

            def direct_page() -> None:
                # As the handler runs it: the one statement in autocommit (no BEGIN/ROLLBACK).
                auto.execute(PAGE_BACKWARD, page_params).fetchall()

            def handler_deep() -> None:
                assert lambda_handler(deep_event, context)["statusCode"] == 200

            a, b = side_by_side(handler_page, direct_page, rounds=300)
            page_ratio = report("page of 50", "handler", a, "direct SQL", b, target="<= 1.5x")
            a, b = side_by_side(handler_deep, handler_page, rounds=300)
            depth_ratio = report("page at depth 10,000", "deep", a, "first page", b, target="<= 1.3x")

            counter = iter(range(10**9))

            def send_event() -> dict[str, Any]:
                body = {"content": f"bench send {next(counter)}", "idempotency_key": uuid.uuid4().hex}
                return event_for("POST", f"/v1/conversations/{cid}/messages", jwt_principal(alice), body=body)[0]

            events = [send_event() for _ in range(700)]
            pending = iter(events)

            def handler_send() -> None:
                assert lambda_handler(next(pending), context)["statusCode"] == 201

            def direct_send() -> None:
                params = {
                    "anonymous": False,
                    "user_id": alice,
                    "conversation_id": cid,
                    "thread_id": None,
                    "content": f"direct send {next(counter)}",
                    "file_ids": [],
                    "idempotency_key": uuid.uuid4().hex,
                    "message_limit": 1000,
                }
                auto.execute(SEND, params).fetchone()

            a, b = side_by_side(handler_send, direct_send, rounds=300)
            send_ratio = report("send", "handler", a, "direct SQL", b, target="<= 1.3x")

            handler_conn = None
            with container().db.provider.connection() as live:
                handler_conn = live
            trips, commits = trace_counts(handler_conn, lambda: handler_send(), auto)
            print(f"send through the handler: {trips} round trip(s), {commits} commit(s) that wrote (targets: <= 2, 1)")

            sparse, heavy = _seed_conversations(url)  # after the sends, which it would not change anyway

            # The statement itself, run as the page's direct side is: what the handler adds is the same for both users
            # and would narrow the difference (it is measured next).
            def listing(user: uuid.UUID) -> Callable[[], object]:
                params = {"user_id": user, "limit": 51, "after_at": None, "after_id": None, "kinds": None}
                return lambda: auto.execute(LIST_FOR_MEMBER, params).fetchall()

            a, b = side_by_side(listing(sparse), listing(heavy), rounds=200)
            list_ratio = report(
                f"conversation list among {CONVERSATIONS:,}", "in 20", a, "in 5,000", b, target="<= 1.0x"
            )
            busy_event, _ = event_for("GET", "/v1/conversations", jwt_principal(heavy))

            def handler_list() -> None:
                assert list_conversations(busy_event, context)["statusCode"] == 200

            a, b = side_by_side(handler_list, listing(heavy), rounds=200)
            list_handler_ratio = report("conversation list of 50", "handler", a, "direct SQL", b, target="<= 1.3x")

            behind, caught_up = _seed_unread(url, sparse)
            a, b = side_by_side(listing(behind), listing(caught_up), rounds=200)
            unread_ratio = report(f"conversation list with {UNREAD:,} unread", "unread", a, "read", b, target="<= 1.5x")
        container().db.close()
        ok = (
            page_ratio <= 1.5
            and depth_ratio <= 1.3
            and send_ratio <= 1.3
            and trips <= 2
            and commits == 1
            and list_ratio <= 1.0
            and list_handler_ratio <= 1.3
            and unread_ratio <= 1.5
        )
        print("messages: all targets met" if ok else "messages: a target was missed")


if __name__ == "__main__":
    main()
