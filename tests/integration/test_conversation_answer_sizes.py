"""Every answer of the conversations area fits in one Lambda answer: pages of large items stop short of it and go on
from where they stopped; a single item, made as large as the API allows, fits alone."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from tests.conversations_helpers import event_for, jwt_principal, make_user
from tests.helpers import FakeLambdaContext

# Lambda hands API Gateway at most 6 MB of JSON (a 502 beyond), the answer's body escaped inside it once more.
LAMBDA_ANSWER_MAX_BYTES = 6 * 1024 * 1024
# Four bytes of UTF-8; 12 in an answer that escapes non-ASCII, 14 where the body was escaped so already (pydantic).
EMOJI = "\U0001f600"
MAX_CHARS = 32_000  # MESSAGE_MAX_CHARS


def answer(method: str, path: str, principal: Any = None, **kwargs: Any) -> dict[str, Any]:
    """The handler's result as Lambda receives it."""
    event, module = event_for(method, path, principal, **kwargs)
    result: dict[str, Any] = importlib.import_module(module).lambda_handler(event, FakeLambdaContext())
    return result


def lambda_bytes(result: dict[str, Any]) -> int:
    """The size of Lambda's answer, whichever way the runtime writes non-ASCII (escaped, or as UTF-8)."""
    return max(len(json.dumps(result).encode()), len(json.dumps(result, ensure_ascii=False).encode()))


def fits(result: dict[str, Any]) -> Any:
    assert result["statusCode"] == 200, result["body"][:500]
    size = lambda_bytes(result)
    assert size <= LAMBDA_ANSWER_MAX_BYTES, f"{size} bytes"
    return json.loads(result["body"])


def walk(method: str, path: str, principal: Any, query: dict[str, Any]) -> list[list[Any]]:
    """Every page of a list until next_cursor is null, each answer checked against Lambda's limit."""
    pages, cursor = [], None
    while True:
        page = fits(answer(method, path, principal, query={**query, **({"cursor": cursor} if cursor else {})}))
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


@pytest.fixture
def group(app_container, db):
    alice, bob = make_user(db, "alice"), make_user(db, "bob")
    row = db.execute("INSERT INTO conversations (kind, title) VALUES ('group', 'g') RETURNING id").fetchone()
    db.execute(
        "INSERT INTO participants (conversation_id, user_id, role) VALUES (%s, %s, 'admin'), (%s, %s, 'member')",
        (row[0], alice, row[0], bob),
    )
    return {"id": row[0], "alice": jwt_principal(alice), "bob": jwt_principal(bob)}


# The largest texts a message holds, by their cost in Lambda's answer: four-byte characters (12 bytes each there at
# most), control characters (\u0001, 7) and quotes (\\\", 4); and short ones in between.
CONTENTS = [EMOJI * MAX_CHARS, "short", "\x01" * MAX_CHARS, '"' * MAX_CHARS, "x" * MAX_CHARS, "\u65e5" * MAX_CHARS]


def _insert_messages(db, conversation_id, sender, count, thread_id=None, prefix=""):
    ids = []
    for n in range(count):
        content = prefix + CONTENTS[n % len(CONTENTS)][: MAX_CHARS - len(prefix)]
        ids.append(
            db.execute(
                "INSERT INTO messages (conversation_id, thread_id, sender_id, content) VALUES (%s, %s, %s, %s) "
                "RETURNING id",
                (conversation_id, thread_id, sender, content),
            ).fetchone()[0]
        )
    return ids


def test_a_message_page_stops_short_of_lambdas_limit_and_goes_on_exactly_there_when_messages_are_large(group, db):
    # 200 messages of 32,000 characters are up to 77 MB in Lambda's answer: every page of such a conversation was a
    # 502 from API Gateway, whichever way it was read.
    ids = _insert_messages(db, group["id"], group["alice"].user_id, 72)
    path = f"/v1/conversations/{group['id']}/messages"
    for direction, expected in (("backward", ids[::-1]), ("forward", ids)):
        pages = walk("GET", path, group["bob"], {"limit": 200, "direction": direction})
        assert [m["id"] for page in pages for m in page] == expected
        assert len(pages) > 2 and all(len(page) > 1 for page in pages)
    # A limit reached before the size is: the cursor still continues right after the page.
    pages = walk("GET", path, group["bob"], {"limit": 7})
    assert [m["id"] for page in pages for m in page] == ids[::-1] and len(pages[0]) == 7


def test_a_change_feed_page_stops_short_of_lambdas_limit_and_goes_on_exactly_there_when_edits_are_large(group, db):
    # Each edit in the feed carries its message as it reads now: as large as a message page's items.
    ids = _insert_messages(db, group["id"], group["alice"].user_id, 72)
    changes = [
        db.execute(
            "INSERT INTO message_changes (conversation_id, message_id, kind) VALUES (%s, %s, 'edited') RETURNING id",
            (group["id"], message_id),
        ).fetchone()[0]
        for message_id in ids
    ]
    pages = walk("GET", f"/v1/conversations/{group['id']}/changes", group["bob"], {"limit": 200})
    assert [c["id"] for page in pages for c in page] == changes
    assert [c["message"]["id"] for page in pages for c in page] == ids
    assert len(pages) > 2 and all(len(page) > 1 for page in pages)


def test_a_thread_page_stops_short_of_lambdas_limit_and_goes_on_exactly_there_when_messages_are_large(group, db):
    thread = db.execute(
        "INSERT INTO conversation_threads (conversation_id, user_id) VALUES (%s, %s) RETURNING id",
        (group["id"], group["alice"].user_id),
    ).fetchone()[0]
    ids = _insert_messages(db, group["id"], group["alice"].user_id, 42, thread_id=thread)
    for direction, expected in (("backward", ids[::-1]), ("forward", ids)):
        pages = walk("GET", f"/v1/threads/{thread}/messages", group["bob"], {"limit": 200, "direction": direction})
        assert [m["id"] for page in pages for m in page] == expected and len(pages) > 1


def test_search_pages_stop_short_of_lambdas_limit_and_go_on_exactly_there_when_messages_are_large(group, db):
    ids = _insert_messages(db, group["id"], group["alice"].user_id, 42, prefix="needle ")
    pages = walk("GET", "/v1/search/messages", group["bob"], {"q": "needle", "limit": 200})
    assert [m["id"] for page in pages for m in page] == ids[::-1] and len(pages) > 1


def test_an_edit_history_page_stops_short_of_lambdas_limit_when_earlier_versions_are_large(group, db):
    # A message's earlier versions are not bounded in number (only an anonymous conversation's are).
    message = _insert_messages(db, group["id"], group["alice"].user_id, 1)[0]
    for n in range(16):
        db.execute(
            "INSERT INTO message_edits (message_id, previous_content, edited_by, edited_at) "
            "VALUES (%s, %s, %s, now() - make_interval(secs => %s))",
            (message, EMOJI * MAX_CHARS, group["alice"].user_id, n),
        )
    pages = walk("GET", f"/v1/messages/{message}/edits", group["bob"], {"limit": 200})
    assert sum(len(page) for page in pages) == 16 and len(pages) > 1


# A JSON object sent in one request body (256 KiB): 65,000 four-byte characters are 14 bytes each in the answer.
LARGE_OBJECT = {"text": EMOJI * 65_000}


def test_a_thread_list_page_stops_short_of_lambdas_limit_when_thread_data_is_large(group, db):
    for _ in range(8):
        db.execute(
            "INSERT INTO conversation_threads (conversation_id, user_id, thread_data) VALUES (%s, %s, %s::jsonb)",
            (group["id"], group["alice"].user_id, json.dumps(LARGE_OBJECT)),
        )
    pages = walk("GET", f"/v1/conversations/{group['id']}/threads", group["bob"], {"limit": 200})
    assert sum(len(page) for page in pages) == 8 and len(pages) > 1


def test_a_panel_list_page_stops_short_of_lambdas_limit_when_layouts_and_configs_are_large(group, db):
    # A panel's layout and config each take a request body's worth (changed one at a time).
    for n in range(4):
        db.execute(
            "INSERT INTO dashboard_panels (conversation_id, name, layout, config, created_by) "
            "VALUES (%s, %s, %s::jsonb, %s::jsonb, %s)",
            (group["id"], f"p{n}", json.dumps(LARGE_OBJECT), json.dumps(LARGE_OBJECT), group["alice"].user_id),
        )
    pages = walk("GET", f"/v1/conversations/{group['id']}/panels", group["bob"], {"limit": 200})
    assert sum(len(page) for page in pages) == 4 and len(pages) > 1


# Answers that fit whatever the data, by arithmetic (the largest each field may be, at 14 bytes a character, the
# most any character costs in an answer whose body pydantic wrote), checked here with that data built.


def _astral(chars: int, tag: int = 0) -> str:
    """`chars` four-byte characters, told apart by `tag` (for unique columns)."""
    return chr(0x1F300 + tag % 700) + EMOJI * (chars - 1)


def test_one_message_fits_alone_when_it_is_as_large_as_the_api_allows(group, db):
    # 32,000 four-byte characters (12 bytes each in Lambda's answer, 14 where pydantic wrote the body), ten
    # attachments whose names and types are as long as their columns let the API make them, a 200-character key:
    # under 0.6 MB in every answer that carries it.
    alice = group["alice"]
    files = [
        db.execute(
            "INSERT INTO user_files (owner_id, original_name, content_type, size, storage_key) "
            "VALUES (%s, %s, %s, 1, gen_random_uuid()::text) RETURNING id",
            (alice.user_id, _astral(255, n), _astral(200, n)),
        ).fetchone()[0]
        for n in range(10)
    ]
    body = {"content": EMOJI * MAX_CHARS, "attachments": [str(f) for f in files], "idempotency_key": _astral(200)}
    raw = json.dumps(body, ensure_ascii=False).encode()  # 128 KB of UTF-8: within the 256 KiB a request may carry
    path = f"/v1/conversations/{group['id']}/messages"
    sent = answer("POST", path, alice, raw_body=raw)
    assert sent["statusCode"] == 201 and lambda_bytes(sent) <= 600_000
    message_id = json.loads(sent["body"])["id"]
    assert lambda_bytes(answer("POST", path, alice, raw_body=raw)) <= 600_000  # the retry's answer
    page = fits(answer("GET", path, group["bob"], query={"limit": 1}))
    assert [m["id"] for m in page["items"]] == [message_id]
    assert len(fits(answer("GET", "/v1/search/messages", group["bob"], query={"q": "x", "limit": 1}))["items"]) == 0
    edit = json.dumps({"content": '"' * MAX_CHARS}).encode()
    assert answer("PATCH", f"/v1/messages/{message_id}", alice, raw_body=edit)["statusCode"] == 200
    edits = fits(answer("GET", f"/v1/messages/{message_id}/edits", group["bob"]))
    assert [e["previous_content"] for e in edits["items"]] == [EMOJI * MAX_CHARS]


def test_conversation_lists_participants_and_reactions_fit_when_every_field_is_as_large_as_allowed(group, db):
    # A conversation in a list: title 500, use_case 200, room_type 100, room_token 200, host 255 and status 50
    # characters, a preview of 200, about 0.8 KB of ids, times and numbers: at most 22 KB, 4.4 MB for 200.
    bob = group["bob"]
    for n in range(200):
        cid = db.execute(
            "INSERT INTO conversations (kind, title, use_case, status, room_type, room_token, host, last_message_at) "
            "VALUES ('room', %s, %s, %s, %s, %s, %s, now()) RETURNING id",
            (_astral(500), _astral(200), _astral(50), _astral(100), _astral(200, n) + str(n), _astral(255)),
        ).fetchone()[0]
        db.execute("INSERT INTO participants (conversation_id, user_id) VALUES (%s, %s)", (cid, bob.user_id))
        db.execute(
            "INSERT INTO messages (conversation_id, sender_id, content) VALUES (%s, %s, %s)",
            (cid, bob.user_id, EMOJI * 300),
        )
    listed = fits(answer("GET", "/v1/conversations", bob, query={"limit": 200}))
    assert len(listed["items"]) == 200 and all(len(c["last_message"]["content"]) == 200 for c in listed["items"])
    # A participant: a username of 255 characters (its column's bound) and about 0.3 KB more: 0.8 MB for 200.
    for n in range(200):
        user = db.execute(
            "INSERT INTO users (username, email) VALUES (%s, %s) RETURNING id",
            (_astral(250, n) + f"{n:05d}", f"{n}@x.test"),
        ).fetchone()[0]
        db.execute("INSERT INTO participants (conversation_id, user_id) VALUES (%s, %s)", (group["id"], user))
    participants = fits(answer("GET", f"/v1/conversations/{group['id']}/participants", bob, query={"limit": 200}))
    assert len(participants["items"]) == 200
    # Reactions: at most 50 distinct emoji of at most 32 characters each, under 30 KB.
    message = _insert_messages(db, group["id"], bob.user_id, 1)[0]
    for n in range(50):
        emoji = json.dumps({"emoji": _astral(32, n)}, ensure_ascii=False).encode()
        assert answer("POST", f"/v1/messages/{message}/reactions", bob, raw_body=emoji)["statusCode"] == 201
    assert len(fits(answer("GET", f"/v1/messages/{message}/reactions", bob))["reactions"]) == 50
