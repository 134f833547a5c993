"""A write racing its writer's removal (a send, and every other write a participant makes in a conversation): once
the removal commits, nothing from that writer is stored."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from shared.repositories.account_deletions import AccountDeletionsRepository
from shared.repositories.completions import CompletionsRepository
from shared.repositories.conversations import ConversationsRepository
from shared.repositories.messages import MessagesRepository
from shared.services import account_deletions, conversations
from tests.conversations_helpers import call, jwt_principal, make_user
from tests.helpers import wait_for_a_lock_waiter


def _pause_after(monkeypatch, repository, method: str, thread: str) -> tuple[threading.Event, threading.Event]:
    """Make `repository.method`, run in the thread named `thread`, pause once it has returned (its transaction still
    open) until `resume` is set; `paused` is set when it does."""
    paused, resume = threading.Event(), threading.Event()
    real = getattr(repository, method)

    def pausing(self, *args, **kwargs):
        done = real(self, *args, **kwargs)
        if threading.current_thread().name == thread:
            paused.set()
            resume.wait(10)
        return done

    monkeypatch.setattr(repository, method, pausing)
    return paused, resume


def _remove_while(app_container, db, monkeypatch, pause_after, remover, conversation_id, user_id, act):
    """Remove `user_id` from the conversation, pausing inside the removal's transaction (it holds the
    conversation's row) after `pause_after`: before or after it deleted the participant, so that either way
    `act`'s snapshot still shows them as one; run `act` until it waits on a lock; then let both finish."""
    paused, resume = _pause_after(monkeypatch, ConversationsRepository, pause_after, "remover")
    removing = threading.Thread(
        target=lambda: conversations.remove_participant(app_container.db, remover, conversation_id, user_id),
        name="remover",
    )
    removing.start()
    assert paused.wait(10)
    out = {}
    acting = threading.Thread(target=lambda: out.update(result=act()))
    acting.start()
    wait_for_a_lock_waiter(db)
    resume.set()
    removing.join(10)
    acting.join(10)
    assert not removing.is_alive() and not acting.is_alive()
    assert db.execute(
        "SELECT count(*) FROM participants WHERE conversation_id = %s AND user_id = %s", (conversation_id, user_id)
    ).fetchone() == (0,)
    return out["result"]


@pytest.fixture
def group(app_container, db):
    alice, bob = jwt_principal(make_user(db, "alice")), jwt_principal(make_user(db, "bob"))
    body = {"kind": "group", "title": "g", "participant_ids": [str(bob.user_id)]}
    return alice, bob, call("POST", "/v1/conversations", alice, body=body).body["id"]


PAUSES = pytest.mark.parametrize("pause_after", ["lock", "remove_participant"], ids=["locked", "deleted"])
WHO_REMOVES = pytest.mark.parametrize("leaves", [False, True], ids=["removed_by_admin", "leaves"])


@PAUSES
@WHO_REMOVES
def test_a_send_waiting_on_the_conversation_is_404_and_stores_nothing_when_its_senders_removal_commits(
    app_container, db, monkeypatch, group, pause_after, leaves
):
    alice, bob, conversation_id = group
    path = f"/v1/conversations/{conversation_id}/messages"
    reply = _remove_while(
        app_container,
        db,
        monkeypatch,
        pause_after,
        bob if leaves else alice,
        conversation_id,
        bob.user_id,
        lambda: call("POST", path, bob, body={"content": "late"}),
    )
    assert reply.status == 404, reply.body
    assert db.execute("SELECT count(*) FROM messages WHERE sender_id = %s", (bob.user_id,)).fetchone()[0] == 0


@pytest.fixture
def direct(app_container, db):
    alice, bob = jwt_principal(make_user(db, "alice")), jwt_principal(make_user(db, "bob"))
    body = {"kind": "direct", "participant_ids": [str(bob.user_id)]}
    return alice, bob, call("POST", "/v1/conversations", alice, body=body).body["id"]


def _messages(db, conversation_id):
    return db.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation_id,)).fetchone()[0]


@PAUSES
def test_a_send_waiting_on_a_direct_conversation_is_409_and_stores_nothing_when_the_other_users_leave_commits(
    app_container, db, monkeypatch, direct, pause_after
):
    # Bob's send came while Alice's leave held the conversation's row: the statement's snapshot still shows Alice,
    # but the send locks her participant row after the conversation's and finds it deleted.
    alice, bob, conversation_id = direct
    path = f"/v1/conversations/{conversation_id}/messages"
    reply = _remove_while(
        app_container,
        db,
        monkeypatch,
        pause_after,
        alice,
        conversation_id,
        alice.user_id,
        lambda: call("POST", path, bob, body={"content": "late"}),
    )
    assert (reply.status, reply.body["reason"]) == (409, "counterpart_gone"), reply.body
    assert _messages(db, conversation_id) == 0


@pytest.mark.parametrize("pause_after", ["lock_conversations", "delete_user"])
def test_a_send_waiting_on_a_direct_conversation_is_409_and_stores_nothing_when_the_other_users_deletion_commits(
    app_container, db, monkeypatch, direct, pause_after
):
    alice, bob, conversation_id = direct
    admin = jwt_principal(make_user(db, "root", role="admin"), role="admin")
    paused, resume = _pause_after(monkeypatch, AccountDeletionsRepository, pause_after, "deleter")
    built = app_container
    deleting = threading.Thread(
        target=lambda: account_deletions.delete_account(built.db, built.settings, admin, alice.user_id), name="deleter"
    )
    deleting.start()
    assert paused.wait(10)
    out = {}
    path = f"/v1/conversations/{conversation_id}/messages"
    sending = threading.Thread(target=lambda: out.update(reply=call("POST", path, bob, body={"content": "late"})))
    sending.start()
    wait_for_a_lock_waiter(db)
    resume.set()
    deleting.join(10)
    sending.join(10)
    assert not deleting.is_alive() and not sending.is_alive()
    assert db.execute("SELECT count(*) FROM users WHERE id = %s", (alice.user_id,)).fetchone() == (0,)
    assert (out["reply"].status, out["reply"].body["reason"]) == (409, "counterpart_gone"), out["reply"].body
    assert _messages(db, conversation_id) == 0


@pytest.mark.parametrize("leaves", ["alice", "bob"])
def test_a_direct_send_that_holds_the_conversation_before_a_leave_is_stored_and_the_leave_waits_for_it(
    app_container, db, database_url, direct, leaves
):
    # The send (the SEND statement itself, its transaction held open) came first: the leave of either user waits for
    # it, and the message stays once both commit.
    alice, bob, conversation_id = direct
    leaver = alice if leaves == "alice" else bob
    params = {
        "anonymous": False, "user_id": bob.user_id, "conversation_id": conversation_id, "thread_id": None,
        "content": "first", "file_ids": [], "idempotency_key": None, "message_limit": 1000,
    }  # fmt: skip
    out = {}
    with psycopg.connect(database_url) as sender:
        sent = MessagesRepository(sender).send(params)
        assert sent is not None and sent.created
        path = f"/v1/conversations/{conversation_id}/participants/{leaver.user_id}"
        leaving = threading.Thread(target=lambda: out.update(reply=call("DELETE", path, leaver)))
        leaving.start()
        wait_for_a_lock_waiter(db)
        assert leaving.is_alive(), "the leave did not wait for the send"
        sender.commit()
    leaving.join(10)
    assert out["reply"].status == 204
    assert _messages(db, conversation_id) == 1


@PAUSES
def test_a_completion_record_waiting_on_the_conversation_stores_nothing_when_its_users_removal_commits(
    app_container, db, database_url, monkeypatch, group, pause_after
):
    alice, bob, conversation_id = group
    thread_id = call("POST", f"/v1/conversations/{conversation_id}/threads", bob, body={"title": "t"}).body["id"]

    def record():
        with psycopg.connect(database_url, autocommit=True) as worker:
            return worker.execute(
                "SELECT user_message_id FROM confab_record_completion(%s, %s, %s, 'q', NULL, 'a', 'm', '{}'::jsonb)",
                (thread_id, conversation_id, bob.user_id),
            ).fetchall()

    rows = _remove_while(app_container, db, monkeypatch, pause_after, alice, conversation_id, bob.user_id, record)
    assert rows == []  # the caller left: shared/repositories/completions.py reads no row as that
    assert db.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation_id,)).fetchone()[0] == 0


@PAUSES
def test_a_failed_turns_user_message_is_not_kept_when_its_users_removal_commits_while_it_waits(
    app_container, db, database_url, monkeypatch, group, pause_after
):
    # What a completion keeps when the provider fails (the user's message alone) takes the same locks as a send.
    alice, bob, conversation_id = group
    thread_id = call("POST", f"/v1/conversations/{conversation_id}/threads", bob, body={"title": "t"}).body["id"]

    def keep():
        with psycopg.connect(database_url, autocommit=True) as worker:
            CompletionsRepository(worker).store_user_message(
                thread_id=thread_id, user_id=bob.user_id, content="q", idempotency_key=None
            )

    _remove_while(app_container, db, monkeypatch, pause_after, alice, conversation_id, bob.user_id, keep)
    assert db.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation_id,)).fetchone()[0] == 0


def test_deleting_the_newest_message_keeps_last_message_at_on_a_send_that_commits_while_the_delete_waits(
    app_container, db, database_url, group
):
    alice, bob, conversation_id = group
    path = f"/v1/conversations/{conversation_id}/messages"
    call("POST", path, alice, body={"content": "first"})
    newest = call("POST", path, alice, body={"content": "to delete"}).body
    # A send in flight, as SEND does it: the conversation's row locked, its message in, last_message_at moved.
    with psycopg.connect(database_url) as sender:
        sender.execute("SELECT 1 FROM conversations WHERE id = %s FOR NO KEY UPDATE", (conversation_id,))
        sent_at = sender.execute(
            "WITH ins AS (INSERT INTO messages (conversation_id, sender_id, content) VALUES (%s, %s, 'late') "
            "RETURNING conversation_id, created_at) "
            "UPDATE conversations c SET last_message_at = ins.created_at FROM ins WHERE c.id = ins.conversation_id "
            "RETURNING c.last_message_at",
            (conversation_id, bob.user_id),
        ).fetchone()[0]
        out = {}
        deleting = threading.Thread(
            target=lambda: out.update(reply=call("DELETE", f"/v1/messages/{newest['id']}", alice))
        )
        deleting.start()
        wait_for_a_lock_waiter(db)
        sender.commit()
    deleting.join(10)
    assert out["reply"].status == 204
    stored = db.execute("SELECT last_message_at FROM conversations WHERE id = %s", (conversation_id,)).fetchone()[0]
    assert stored == sent_at  # not the time of "first", which the delete's snapshot showed as the newest left


# Every other write a participant makes in a conversation, made by bob; each answers what it would change. Bob is
# made an admin for the admin-only ones (alice, an admin too, can still remove him; he can still leave).
def _message(who, conversation_id, content="m"):
    return call("POST", f"/v1/conversations/{conversation_id}/messages", who, body={"content": content}).body["id"]


def _make_admin(alice, bob, conversation_id):
    path = f"/v1/conversations/{conversation_id}/participants/{bob.user_id}"
    assert call("PATCH", path, alice, body={"role": "admin"}).status == 200


def _with_carol(db, alice, conversation_id):
    carol = make_user(db, "carol")
    body = {"user_id": str(carol)}
    assert call("POST", f"/v1/conversations/{conversation_id}/participants", alice, body=body).status == 201
    return carol


def _edit(db, alice, bob, cid):
    m = _message(bob, cid)
    return "PATCH", f"/v1/messages/{m}", {"content": "late"}, "SELECT content, edited_at FROM messages WHERE id = %s", m


def _react(db, alice, bob, cid):
    m = _message(alice, cid)
    return "POST", f"/v1/messages/{m}/reactions", {"emoji": "👍"}, "SELECT * FROM message_reactions", None


def _unreact(db, alice, bob, cid):
    m = _message(alice, cid)
    assert call("POST", f"/v1/messages/{m}/reactions", bob, body={"emoji": "👍"}).status == 201
    return "DELETE", f"/v1/messages/{m}/reactions/%F0%9F%91%8D", None, "SELECT * FROM message_reactions", None


def _feedback(db, alice, bob, cid):
    m = _message(alice, cid)
    return "PUT", f"/v1/messages/{m}/feedback", {"rating": 5}, "SELECT * FROM message_feedback", None


def _thread(db, alice, bob, cid):
    return "POST", f"/v1/conversations/{cid}/threads", {"title": "t"}, "SELECT * FROM conversation_threads", None


# A mark's statuses and its change in the feed (the reader's cursor goes with the participant row).
# The marks' entries only: the removal the mark races logs a participant change of its own (migration 0611).
_MARKED = (
    "SELECT status, status_timestamps, "
    "(SELECT count(*) FROM message_changes WHERE kind IN ('read', 'delivered')) FROM messages"
)


def _delivered(db, alice, bob, cid):
    m = _message(alice, cid)
    body = {"message_id": m, "status": "delivered"}
    return "POST", f"/v1/conversations/{cid}/read", body, _MARKED, None


def _read(db, alice, bob, cid):
    m = _message(alice, cid)
    return "POST", f"/v1/conversations/{cid}/read", {"message_id": m, "status": "read"}, _MARKED, None


def _panel(db, alice, bob, cid):
    return "POST", f"/v1/conversations/{cid}/panels", {"name": "p"}, "SELECT * FROM dashboard_panels", None


def _panel_change(db, alice, bob, cid):
    panel = call("POST", f"/v1/conversations/{cid}/panels", bob, body={"name": "p"}).body["id"]
    return "PATCH", f"/v1/panels/{panel}", {"name": "late"}, "SELECT * FROM dashboard_panels", None


def _data_ref(db, alice, bob, cid):
    file_id = db.execute(
        "INSERT INTO user_files (owner_id, original_name, content_type, size, storage_key) "
        "VALUES (%s, 'a.txt', 'text/plain', 3, gen_random_uuid()::text) RETURNING id",
        (bob.user_id,),
    ).fetchone()[0]
    body = {"file_id": str(file_id)}
    return "POST", f"/v1/conversations/{cid}/data-refs", body, "SELECT * FROM room_data_refs", None


def _execution(db, alice, bob, cid):
    return "POST", "/v1/code-executions", {"conversation_id": cid}, "SELECT * FROM code_executions", None


def _execution_change(db, alice, bob, cid):
    record = call("POST", "/v1/code-executions", bob, body={"conversation_id": cid}).body["id"]
    return "PATCH", f"/v1/code-executions/{record}", {"output": "late"}, "SELECT * FROM code_executions", None


def _add(db, alice, bob, cid):
    _make_admin(alice, bob, cid)
    dave = make_user(db, "dave")
    body = {"user_id": str(dave)}
    return "POST", f"/v1/conversations/{cid}/participants", body, "SELECT * FROM participants WHERE user_id = %s", dave


def _delete_message(db, alice, bob, cid):
    m = _message(bob, cid)
    return "DELETE", f"/v1/messages/{m}", None, "SELECT id FROM messages", None


def _rename(db, alice, bob, cid):
    _make_admin(alice, bob, cid)
    return "PATCH", f"/v1/conversations/{cid}", {"title": "late"}, "SELECT title FROM conversations", None


def _delete_conversation(db, alice, bob, cid):
    _make_admin(alice, bob, cid)
    return "DELETE", f"/v1/conversations/{cid}", None, "SELECT id FROM conversations", None


def _change_role(db, alice, bob, cid):
    _make_admin(alice, bob, cid)
    carol = _with_carol(db, alice, cid)
    path = f"/v1/conversations/{cid}/participants/{carol}"
    return "PATCH", path, {"role": "admin"}, "SELECT user_id, role FROM participants WHERE user_id = %s", carol


def _remove_carol(db, alice, bob, cid):
    _make_admin(alice, bob, cid)
    carol = _with_carol(db, alice, cid)
    path = f"/v1/conversations/{cid}/participants/{carol}"
    return "DELETE", path, None, "SELECT user_id FROM participants WHERE user_id = %s", carol


# These hold the conversation's row only as sends and removals do not exclude (KEY SHARE), then the writer's
# participant row: a write that came while a removal held the conversation's row but had not yet deleted the
# participant goes in before the removal, which then waits for it. So they wait only once the participant is deleted.
PARTICIPANT_LOCKED = {
    "feedback": _feedback,
    "thread": _thread,
    "panel": _panel,
    "panel_change": _panel_change,
    "data_ref": _data_ref,
    "execution": _execution,
    "execution_change": _execution_change,
}
# These take the conversation's row as a removal does (or more): they wait behind it from its first lock on.
CONVERSATION_LOCKED = {
    "delete_message": _delete_message,
    # Edits and reactions draw their change's position under it too (migrations 0601, 0602).
    "edit": _edit,
    "react": _react,
    "unreact": _unreact,
    # Marks draw their change's position under it (migration 0603).
    "delivered": _delivered,
    "read": _read,
    "rename": _rename,
    "delete_conversation": _delete_conversation,
    "change_role": _change_role,
    "remove_other": _remove_carol,
    # An addition draws its change's position under it (migration 0611).
    "add_participant": _add,
}


def _late_write(app_container, db, monkeypatch, group, pause_after, leaves, setup):
    alice, bob, conversation_id = group
    method, path, body, query, param = setup(db, alice, bob, conversation_id)
    params = () if param is None else (param,)
    before = db.execute(query, params).fetchall()
    reply = _remove_while(
        app_container,
        db,
        monkeypatch,
        pause_after,
        bob if leaves else alice,
        conversation_id,
        bob.user_id,
        lambda: call(method, path, bob, body=body),
    )
    assert reply.status == 404, reply.body
    assert db.execute(query, params).fetchall() == before


@WHO_REMOVES
@pytest.mark.parametrize("write", PARTICIPANT_LOCKED)
def test_a_write_waiting_on_its_writers_deleted_participant_row_is_404_and_stores_nothing_once_the_removal_commits(
    app_container, db, monkeypatch, group, write, leaves
):
    setup = PARTICIPANT_LOCKED[write]
    _late_write(app_container, db, monkeypatch, group, "remove_participant", leaves, setup)


@PAUSES
@WHO_REMOVES
@pytest.mark.parametrize("write", CONVERSATION_LOCKED)
def test_a_write_waiting_on_the_conversation_is_404_and_changes_nothing_when_its_writers_removal_commits(
    app_container, db, monkeypatch, group, write, pause_after, leaves
):
    _late_write(app_container, db, monkeypatch, group, pause_after, leaves, CONVERSATION_LOCKED[write])


@pytest.mark.parametrize(
    ("repository", "write"),
    [(MessagesRepository, "react"), (ConversationsRepository, "panel")],
    ids=["react", "panel"],
)
def test_a_removal_waits_for_a_write_that_passed_its_access_check_and_the_write_goes_in_first(
    app_container, db, monkeypatch, group, repository, write
):
    # The race itself: the writer is paused between its check and its write while the removal runs. Unlocked, the
    # removal committed in that gap and the write went in after it.
    alice, bob, conversation_id = group
    method, path, body, _, _ = {**PARTICIPANT_LOCKED, **CONVERSATION_LOCKED}[write](db, alice, bob, conversation_id)
    checked, go = threading.Event(), threading.Event()
    real = repository.access

    def pausing(self, *args, **kwargs):
        found = real(self, *args, **kwargs)
        if threading.current_thread().name == "writer":
            checked.set()
            go.wait(10)
        return found

    monkeypatch.setattr(repository, "access", pausing)
    out = {}
    writing = threading.Thread(target=lambda: out.update(reply=call(method, path, bob, body=body)), name="writer")
    writing.start()
    assert checked.wait(10)
    removing = threading.Thread(
        target=lambda: conversations.remove_participant(app_container.db, alice, conversation_id, bob.user_id)
    )
    removing.start()
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    deadline = time.monotonic() + 10
    while removing.is_alive() and not db.execute(waiting).fetchone()[0] and time.monotonic() < deadline:
        time.sleep(0.02)
    removed_in_the_gap = not removing.is_alive()
    go.set()
    writing.join(10)
    removing.join(10)
    assert not writing.is_alive() and not removing.is_alive()
    assert not removed_in_the_gap, "the removal committed between the write's access check and its write"
    assert out["reply"].status == 201, out["reply"].body
    assert db.execute(
        "SELECT count(*) FROM participants WHERE conversation_id = %s AND user_id = %s", (conversation_id, bob.user_id)
    ).fetchone() == (0,)


def test_a_write_racing_its_writers_leave_of_a_conversation_they_were_last_in_does_not_deadlock(
    app_container, db, monkeypatch
):
    # Bob is the last person in the conversation, so his leave deletes it. His reaction (the conversation's row held
    # KEY SHARE) waits for his participant row, which the leave deleted: the leave must not then wait for the
    # reaction's lock on the conversation's row to delete it, or each waits for the other until PostgreSQL aborts one.
    bob = jwt_principal(make_user(db, "bob"))
    conversation_id = call("POST", "/v1/conversations", bob, body={"kind": "group", "title": "g"}).body["id"]
    message_id = _message(bob, conversation_id)
    deadlocks = []

    def spied(repository, name):
        real = getattr(repository, name)

        def spying(self, *args, **kwargs):
            try:
                return real(self, *args, **kwargs)
            except psycopg.errors.DeadlockDetected:
                deadlocks.append(name)
                raise

        monkeypatch.setattr(repository, name, spying)

    spied(MessagesRepository, "access")
    spied(ConversationsRepository, "delete")
    reply = _remove_while(
        app_container,
        db,
        monkeypatch,
        "remove_participant",
        bob,
        conversation_id,
        bob.user_id,
        lambda: call("POST", f"/v1/messages/{message_id}/reactions", bob, body={"emoji": "👍"}),
    )
    assert deadlocks == []
    assert reply.status == 404, reply.body
    assert db.execute("SELECT count(*) FROM conversations WHERE id = %s", (conversation_id,)).fetchone() == (0,)
