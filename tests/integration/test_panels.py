"""Dashboard panels and room data references."""

from __future__ import annotations

import pytest

from shared.models.json_values import JSON_MAX_DEPTH
from tests.conversations_helpers import call, jwt_principal, make_user


def _setup(db):
    alice, bob, carol = (jwt_principal(make_user(db, n)) for n in ("alice", "bob", "carol"))
    body = {"kind": "room", "title": "lab", "participant_ids": [str(bob.user_id)]}
    room = call("POST", "/v1/conversations", alice, body=body).body["id"]
    return alice, bob, carol, room


def test_panels_are_created_listed_changed_and_deleted_by_creator_or_admin(app_container, db):
    alice, bob, carol, room = _setup(db)
    panel = call("POST", f"/v1/conversations/{room}/panels", bob, body={"name": "p", "layout": {"x": 1}})
    assert panel.status == 201
    pid = panel.body["id"]
    assert call("GET", f"/v1/conversations/{room}/panels", carol).status == 404
    assert [p["id"] for p in call("GET", f"/v1/conversations/{room}/panels", alice).body["items"]] == [pid]
    changed = call("PATCH", f"/v1/panels/{pid}", bob, body={"config": {"k": "v"}})
    assert changed.status == 200 and changed.body["layout"] == {"x": 1} and changed.body["config"] == {"k": "v"}
    mine = call("POST", f"/v1/conversations/{room}/panels", alice, body={"name": "q"}).body["id"]
    assert call("PATCH", f"/v1/panels/{mine}", bob, body={"name": "z"}).status == 403
    assert call("DELETE", f"/v1/panels/{pid}", carol).status == 404
    assert call("DELETE", f"/v1/panels/{pid}", alice).status == 204  # admin


def test_a_panel_patched_to_null_is_422_naming_the_fields_and_changes_nothing(app_container, db):
    # name, layout and config are never null: a null was answered 200 and left the field as it was, so a client
    # that meant to clear the layout was told it had.
    _, bob, _, room = _setup(db)
    pid = call("POST", f"/v1/conversations/{room}/panels", bob, body={"name": "p", "layout": {"x": 1}}).body["id"]
    refused = call("PATCH", f"/v1/panels/{pid}", bob, body={"name": "renamed", "layout": None, "config": None})
    assert refused.status == 422, refused.body
    assert [item["loc"] for item in refused.body["errors"]] == [["body", "layout"], ["body", "config"]]
    panel = call("GET", f"/v1/conversations/{room}/panels", bob).body["items"][0]
    assert (panel["name"], panel["layout"], panel["config"]) == ("p", {"x": 1}, {})
    assert call("PATCH", f"/v1/panels/{pid}", bob, body={"name": None}).status == 422


def test_data_refs_need_an_owned_file_and_a_panel_of_the_same_room(app_container, db):
    alice, bob, _, room = _setup(db)
    file_id = db.execute(
        "INSERT INTO user_files (owner_id, original_name, size, storage_key) VALUES (%s, 'f', 1, 'k1') RETURNING id",
        (bob.user_id,),
    ).fetchone()[0]
    panel = call("POST", f"/v1/conversations/{room}/panels", bob, body={"name": "p"}).body["id"]
    assert call("POST", f"/v1/conversations/{room}/data-refs", alice, body={"file_id": str(file_id)}).status == 422
    ref = call("POST", f"/v1/conversations/{room}/data-refs", bob, body={"file_id": str(file_id), "panel_id": panel})
    assert ref.status == 201 and ref.body["panel_id"] == panel
    assert [r["id"] for r in call("GET", f"/v1/conversations/{room}/data-refs", alice).body["items"]] == [
        ref.body["id"]
    ]
    assert call("DELETE", f"/v1/data-refs/{ref.body['id']}", bob).status == 204


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_deeply_nested_layout_or_config_is_422_and_stores_nothing_when_over_the_depth_limit(app_container, db):
    alice, bob, _, room = _setup(db)
    kept = call("POST", f"/v1/conversations/{room}/panels", bob, body={"name": "kept", "layout": {"x": 1}}).body["id"]
    deep = b'{"name": "p", "layout": {"a": ' + _nested(300) + b"}}"
    created = call("POST", f"/v1/conversations/{room}/panels", bob, raw_body=deep)
    changed = call("PATCH", f"/v1/panels/{kept}", bob, raw_body=b'{"config": {"a": ' + _nested(300) + b"}}")

    assert created.status == changed.status == 422
    assert created.headers["Content-Type"] == "application/problem+json"
    assert created.body["errors"][0]["loc"][:2] == ["body", "layout"]
    # Nothing was stored, so the room's panels still read for everyone.
    listed = call("GET", f"/v1/conversations/{room}/panels", alice)
    assert listed.status == 200 and [p["id"] for p in listed.body["items"]] == [kept]
    assert listed.body["items"][0]["config"] == {}
    at_limit = b'{"name": "p", "layout": {"a": ' + _nested(JSON_MAX_DEPTH - 1) + b"}}"
    assert call("POST", f"/v1/conversations/{room}/panels", bob, raw_body=at_limit).status == 201


@pytest.mark.parametrize(
    "layout",
    [
        b'{"a": 1e400}',  # valid JSON, too large for a float: read as infinity
        b'{"a": [1, -1e400]}',
        b'{"a": NaN}',
        b'{"a": {"b": "\\ud83d"}}',  # a lone surrogate
        b'{"\\udc00": 1}',  # in a key
        b'{"a": ["\\u0000"]}',
    ],
)
def test_json_that_jsonb_cannot_hold_is_a_422_naming_the_field_and_stores_nothing(app_container, db, layout):
    _, bob, _, room = _setup(db)
    kept = call("POST", f"/v1/conversations/{room}/panels", bob, body={"name": "kept"}).body["id"]
    created = call(
        "POST", f"/v1/conversations/{room}/panels", bob, raw_body=b'{"name": "p", "layout": ' + layout + b"}"
    )
    changed = call("PATCH", f"/v1/panels/{kept}", bob, raw_body=b'{"config": ' + layout + b"}")
    for reply, field in ((created, "layout"), (changed, "config")):
        assert reply.status == 422 and reply.headers["Content-Type"] == "application/problem+json"
        assert [error["loc"][:2] for error in reply.body["errors"]] == [["body", field]], reply.body
    panels = call("GET", f"/v1/conversations/{room}/panels", bob).body["items"]
    assert [(p["id"], p["config"]) for p in panels] == [(kept, {})]
    # A pair of surrogates is one character, and a number a float holds is kept (as the same number).
    fine = b'{"name": "p", "layout": {"\\ud83d\\ude00": -2.5e-3}}'
    stored = call("POST", f"/v1/conversations/{room}/panels", bob, raw_body=fine)
    assert stored.status == 201 and stored.body["layout"] == {"😀": -0.0025}
