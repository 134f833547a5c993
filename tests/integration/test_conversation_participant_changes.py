"""Participant changes in the change feed (migration 0611): someone added, removed, leaving or given another role is a
`participants` change naming them, with the participant as the participant list reads them at the poll (null once
they are gone), so a client polling the feed keeps its member list without reading the list again."""

from __future__ import annotations

import pytest

from tests.conversations_helpers import after_waiting_on_the_conversation, call, jwt_principal, make_user


@pytest.fixture
def group(app_container, db):
    alice, bob, carol, dave = (jwt_principal(make_user(db, n)) for n in ("alice", "bob", "carol", "dave"))
    body = {"kind": "group", "title": "t", "participant_ids": [str(bob.user_id)]}
    conversation = call("POST", "/v1/conversations", alice, body=body).body
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, "id": conversation["id"]}


def _path(group, tail=""):
    return f"/v1/conversations/{group['id']}/participants{tail}"


def _add(group, who, role="member", by="alice"):
    return call("POST", _path(group), group[by], body={"user_id": str(group[who].user_id), "role": role})


def _set_role(group, who, role, by="alice"):
    return call("PATCH", _path(group, f"/{group[who].user_id}"), group[by], body={"role": role})


def _remove(group, who, by="alice"):
    return call("DELETE", _path(group, f"/{group[who].user_id}"), group[by])


def _changes(group, who="bob", after=0):
    reply = call("GET", f"/v1/conversations/{group['id']}/changes", group[who], query={"after": str(after)})
    assert reply.status == 200, reply.body
    return reply.body["items"]


def _listed(group, who="bob"):
    """The participant list as GET .../participants answers it, by user id."""
    items = call("GET", _path(group), group[who], query={"limit": "200"}).body["items"]
    return {p["user_id"]: p for p in items}


def _entries(items):
    return [(c["kind"], c["user_id"], c["message_id"]) for c in items]


def _head(group, who="bob"):
    return call("GET", f"/v1/conversations/{group['id']}", group[who]).body["last_change_id"]


def test_an_addition_a_role_change_and_a_removal_are_participant_changes_carrying_the_participant_as_listed(group):
    # A client showing the member list and polling the feed never learned of them short of reading the list again.
    assert _changes(group) == [] and _head(group) is None  # a new conversation's first participants log nothing
    carol, dave = str(group["carol"].user_id), str(group["dave"].user_id)
    assert _add(group, "carol").status == 201
    assert _add(group, "dave", role="admin").status == 201
    added = _changes(group)
    assert _entries(added) == [("participants", carol, None), ("participants", dave, None)]
    listed = _listed(group)
    # Exactly as the list renders them (times included), and the feed's head moves with them.
    assert [c["participant"] for c in added] == [listed[carol], listed[dave]]
    assert _head(group) == added[-1]["id"]
    assert all(c["message"] is None and c["reactions"] is None for c in added)

    assert _set_role(group, "dave", "member").status == 200
    [role] = _changes(group, after=added[-1]["id"])
    assert (role["user_id"], role["participant"]["role"]) == (dave, "member")
    assert role["participant"] == _listed(group)[dave]

    assert _remove(group, "carol").status == 204
    [gone] = _changes(group, after=role["id"])
    assert _entries([gone]) == [("participants", carol, None)] and gone["participant"] is None
    assert _head(group) == gone["id"]


def test_a_users_next_change_replaces_their_earlier_entry_which_would_read_the_same(group, db):
    # The feed reads a participant as they are at the poll: an earlier entry of the same user says nothing more.
    _add(group, "carol")
    first = _changes(group)[-1]["id"]
    _set_role(group, "carol", "admin")
    [entry] = _changes(group)
    assert entry["id"] > first and entry["participant"]["role"] == "admin"
    _remove(group, "carol")
    _add(group, "carol")  # back: one entry, reading them as they are now
    [entry] = _changes(group)
    assert entry["participant"]["role"] == "member"
    rows = db.execute(
        "SELECT count(*) FROM message_changes WHERE conversation_id = %s AND kind = 'participants'", (group["id"],)
    ).fetchone()
    assert rows == (1,)


def test_a_participant_write_that_changes_nothing_logs_nothing(group, db):
    _add(group, "carol")
    before = _changes(group)
    assert _add(group, "carol").status == 409  # already there
    assert _set_role(group, "carol", "member").status == 200  # the role it has
    assert _remove(group, "dave").status == 404  # not a participant
    assert _changes(group) == before


def test_a_removed_participant_loses_the_feed_at_once_and_the_others_see_the_removal_or_the_leave(group):
    _add(group, "carol")
    _add(group, "dave")
    assert _remove(group, "carol").status == 204
    assert _remove(group, "dave", by="dave").status == 204  # a leave
    for who in ("carol", "dave"):
        reply = call("GET", f"/v1/conversations/{group['id']}/changes", group[who], query={"after": "0"})
        assert reply.status == 404  # never their own removal entry
    assert [(c["user_id"], c["participant"]) for c in _changes(group)] == [
        (str(group["carol"].user_id), None),
        (str(group["dave"].user_id), None),
    ]


@pytest.mark.parametrize(
    ("write", "status"),
    [
        (lambda g: _add(g, "carol").status, 201),
        (lambda g: _set_role(g, "bob", "admin").status, 200),
        (lambda g: _remove(g, "bob").status, 204),
    ],
    ids=["add", "role", "remove"],
)
def test_a_participant_change_waits_for_a_send_holding_the_conversation_so_it_commits_in_order(
    group, database_url, write, status
):
    # Under FOR KEY SHARE an addition drew its position while a send held the row, and could commit after a poll had
    # seen a larger position: skipped by that client for good.
    assert after_waiting_on_the_conversation(database_url, group["id"], lambda: write(group)) == [status]


def test_a_direct_conversations_user_leaving_and_coming_back_is_in_its_feed(app_container, db):
    alice, bob = jwt_principal(make_user(db, "alice")), jwt_principal(make_user(db, "bob"))
    body = {"kind": "direct", "participant_ids": [str(bob.user_id)]}
    conversation_id = call("POST", "/v1/conversations", alice, body=body).body["id"]
    direct = {"alice": alice, "bob": bob, "id": conversation_id}
    assert _changes(direct, "alice") == []
    assert call("DELETE", f"/v1/conversations/{conversation_id}/participants/{bob.user_id}", bob).status == 204
    [left] = _changes(direct, "alice")
    assert (left["user_id"], left["participant"]) == (str(bob.user_id), None)
    back = {"kind": "direct", "participant_ids": [str(alice.user_id)]}
    assert call("POST", "/v1/conversations", bob, body=back).status == 200
    [entry] = _changes(direct, "alice")  # the leave's entry replaced
    assert entry["id"] > left["id"]
    assert entry["participant"] == _listed(direct, "alice")[str(bob.user_id)]
    assert call("POST", "/v1/conversations", bob, body=back).status == 200  # both in already: nothing
    assert _changes(direct, "alice") == [entry]


def test_an_account_deletion_logs_its_leaving_naming_nobody_and_its_successor_as_admin(app_container, db, group):
    # The deleted account is no longer named (user_id null, as a mark's reader): the entry tells a client that a
    # deleted account left, so it reads the participant list again. The first-joined person made admin is a role
    # change like any other.
    _add(group, "carol")
    admin = jwt_principal(make_user(db, "root", role="admin"), role="admin")
    assert call("DELETE", f"/v1/admin/users/{group['alice'].user_id}", admin).status == 204
    items = _changes(group)
    bob = str(group["bob"].user_id)
    assert [(c["user_id"], c["participant"] and c["participant"]["role"]) for c in items] == [
        (str(group["carol"].user_id), "member"),
        (bob, "admin"),
        (None, None),
    ]
    assert items[1]["participant"] == _listed(group)[bob]


def test_asking_again_for_a_direct_conversation_waits_for_a_send_holding_it_before_its_user_comes_back(
    app_container, db, database_url
):
    # The user back in it is a change: its position is drawn under the conversation's row, as an addition's is.
    alice, bob = jwt_principal(make_user(db, "alice")), jwt_principal(make_user(db, "bob"))
    body = {"kind": "direct", "participant_ids": [str(bob.user_id)]}
    conversation_id = call("POST", "/v1/conversations", alice, body=body).body["id"]
    call("DELETE", f"/v1/conversations/{conversation_id}/participants/{bob.user_id}", bob)
    back = {"kind": "direct", "participant_ids": [str(alice.user_id)]}
    assert after_waiting_on_the_conversation(
        database_url, conversation_id, lambda: call("POST", "/v1/conversations", bob, body=back).status
    ) == [200]


def test_a_client_keeping_the_member_list_from_the_feed_ends_with_the_list_as_read_again(app_container, db, group):
    # The recipe (docs/conversations.md, "Polling both feeds"): read the messages, start the feed at the newest id,
    # read the list after that; then apply each participants entry (replace, drop, or read the list again when it
    # names nobody), and move a member's read cursor with their `read` entries. Polled between some of the writes and
    # not others, so some entries replace unpolled ones.
    eve = jwt_principal(make_user(db, "eve"))
    group["eve"] = eve
    sent = call("POST", f"/v1/conversations/{group['id']}/messages", group["alice"], body={"content": "hi"}).body
    position, members = sent["id"], _listed(group)

    def poll() -> None:
        nonlocal position, members
        for change in _changes(group, after=position):
            position = change["id"]
            reader = members.get(change["user_id"]) if change["kind"] == "read" else None
            if reader is not None and change["message_id"] > (reader["last_read_message_id"] or 0):
                reader.update(last_read_message_id=change["message_id"], last_read_at=change["changed_at"])
            if change["kind"] != "participants":
                continue
            if change["user_id"] is None:
                members = _listed(group)
            elif change["participant"] is None:
                members.pop(change["user_id"], None)
            else:
                members[change["user_id"]] = change["participant"]

    _add(group, "carol")
    _add(group, "dave", role="admin")
    poll()
    _set_role(group, "carol", "admin")
    _remove(group, "dave", by="dave")
    _add(group, "eve")
    poll()
    _remove(group, "carol")
    _add(group, "carol")
    _set_role(group, "eve", "admin")
    call("POST", f"/v1/conversations/{group['id']}/read", group["bob"], body={"message_id": sent["id"]})
    poll()
    assert members == _listed(group)
    admin = jwt_principal(make_user(db, "root", role="admin"), role="admin")
    assert call("DELETE", f"/v1/admin/users/{eve.user_id}", admin).status == 204
    poll()
    assert members == _listed(group)
    assert str(eve.user_id) not in members and members[str(group["carol"].user_id)]["role"] == "member"
