"""The seeds' ON DELETE, uniqueness and CHECK rules, enforced by the database and mapped to domain errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.bootstrap import build_container
from shared.db import Database
from shared.errors import ConflictError, UnprocessableError, problem_for
from shared.settings import Settings


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    built = build_container(settings)
    yield built.db
    built.db.close()


def one(db, statement: str, **params: Any) -> Any:
    return db.execute(statement, params).fetchone()[0]


def add_user(db, name: str | None = None) -> uuid.UUID:
    name = name or f"u{uuid.uuid4().hex[:10]}"
    return one(db, "INSERT INTO users (username, email) VALUES (%(n)s, %(n)s || '@example.com') RETURNING id", n=name)


def add_conversation(db, *, owner=None, created_by=None, kind="direct") -> uuid.UUID:
    return one(
        db,
        "INSERT INTO conversations (kind, user_id, created_by) VALUES (%(k)s, %(o)s, %(c)s) RETURNING id",
        k=kind,
        o=owner,
        c=created_by,
    )


def add_message(db, conversation, sender, content="hello") -> int:
    return one(
        db,
        "INSERT INTO messages (conversation_id, sender_id, content) VALUES (%(c)s, %(s)s, %(t)s) RETURNING id",
        c=conversation,
        s=sender,
        t=content,
    )


def count(db, table: str, where: str, **params: Any) -> int:
    return one(db, f"SELECT count(*) FROM {table} WHERE {where}", **params)


@pytest.fixture
def world(db) -> dict[str, Any]:
    """An owner with a chat, a shared conversation they created, messages, a reaction, usage, a thread."""
    owner, other = add_user(db), add_user(db)
    chat = add_conversation(db, owner=owner, created_by=owner, kind="assistant")
    shared = add_conversation(db, created_by=owner, kind="group")
    for conversation in (chat, shared):
        for user in (owner, other):
            db.execute(
                "INSERT INTO participants (conversation_id, user_id) VALUES (%(c)s, %(u)s)",
                {"c": conversation, "u": user},
            )
    thread = one(
        db,
        "INSERT INTO conversation_threads (conversation_id, user_id) VALUES (%(c)s, %(u)s) RETURNING id",
        c=chat,
        u=owner,
    )
    shared_message = add_message(db, shared, owner)
    chat_message = add_message(db, chat, owner)
    db.execute(
        "INSERT INTO message_reactions (message_id, user_id, emoji) VALUES (%(m)s, %(u)s, 'x')",
        {"m": shared_message, "u": other},
    )
    db.execute(
        "INSERT INTO message_reactions (message_id, user_id, emoji) VALUES (%(m)s, %(u)s, 'y')",
        {"m": shared_message, "u": owner},
    )
    db.execute(
        "INSERT INTO message_feedback (message_id, user_id, rating) VALUES (%(m)s, %(u)s, 5)",
        {"m": chat_message, "u": owner},
    )
    db.execute(
        "INSERT INTO model_usage (event_id, user_id, conversation_id, thread_id, message_id, model_name, provider)"
        " VALUES (gen_random_uuid(), %(u)s, %(c)s, %(t)s, %(m)s, 'm', 'local')",
        {"u": owner, "c": chat, "t": thread, "m": chat_message},
    )
    return {
        "owner": owner,
        "other": other,
        "chat": chat,
        "shared": shared,
        "thread": thread,
        "shared_message": shared_message,
        "chat_message": chat_message,
    }


def test_deleting_a_user_cascades_their_chats_and_participations_when_seeds_say_cascade(db, world):
    db.execute("DELETE FROM users WHERE id = %s", (world["owner"],))
    assert count(db, "conversations", "id = %(c)s", c=world["chat"]) == 0
    assert count(db, "participants", "user_id = %(u)s", u=world["owner"]) == 0
    assert count(db, "message_reactions", "user_id = %(u)s", u=world["owner"]) == 0
    assert count(db, "message_reactions", "user_id = %(u)s", u=world["other"]) == 1


def test_deleting_a_user_keeps_shared_conversations_messages_and_usage_with_null_references(db, world):
    db.execute("DELETE FROM users WHERE id = %s", (world["owner"],))
    assert one(db, "SELECT created_by FROM conversations WHERE id = %(c)s", c=world["shared"]) is None
    assert one(db, "SELECT sender_id FROM messages WHERE id = %(m)s", m=world["shared_message"]) is None
    assert count(db, "model_usage", "user_id IS NULL AND model_name = 'm'") == 1


def test_deleting_users_who_reused_an_idempotency_key_in_one_conversation_keeps_their_messages(db):
    # sender_id goes NULL, and the key (unique with NULLS NOT DISTINCT) would collide: it is cleared instead.
    first, second = add_user(db), add_user(db)
    group = add_conversation(db, kind="group")
    for sender in (first, second):
        db.execute(
            "INSERT INTO messages (conversation_id, sender_id, content, idempotency_key) VALUES (%s, %s, 'hi', '1')",
            (group, sender),
        )
    db.execute("UPDATE messages SET content = 'edited' WHERE sender_id = %s", (second,))
    assert count(db, "messages", "idempotency_key = '1'") == 2  # ordinary updates keep the key
    db.execute("DELETE FROM users WHERE id = %s", (first,))
    db.execute("DELETE FROM users WHERE id = %s", (second,))
    assert count(db, "messages", "conversation_id = %(c)s AND sender_id IS NULL", c=group) == 2
    assert count(db, "messages", "conversation_id = %(c)s AND idempotency_key IS NOT NULL", c=group) == 0


def test_deleting_a_conversation_cascades_messages_participants_reactions_and_threads(db, world):
    db.execute("DELETE FROM conversations WHERE id = %s", (world["shared"],))
    assert count(db, "messages", "conversation_id = %(c)s", c=world["shared"]) == 0
    assert count(db, "participants", "conversation_id = %(c)s", c=world["shared"]) == 0
    assert count(db, "message_reactions", "message_id = %(m)s", m=world["shared_message"]) == 0
    db.execute("DELETE FROM conversations WHERE id = %s", (world["chat"],))
    assert count(db, "conversation_threads", "id = %(t)s", t=world["thread"]) == 0
    assert count(db, "message_feedback", "message_id = %(m)s", m=world["chat_message"]) == 0


def test_deleting_a_conversation_keeps_its_usage_rows_for_analytics(db, world):
    db.execute("DELETE FROM conversations WHERE id = %s", (world["chat"],))
    row = db.execute("SELECT conversation_id, thread_id, message_id FROM model_usage").fetchone()
    assert row == (None, None, None)


def test_deleting_a_message_cascades_reactions_feedback_edits_and_code_executions(db, world):
    message = world["chat_message"]
    db.execute("INSERT INTO message_edits (message_id, previous_content) VALUES (%s, 'old')", (message,))
    db.execute("INSERT INTO code_executions (message_id, conversation_id) VALUES (%s, %s)", (message, world["chat"]))
    db.execute("DELETE FROM messages WHERE id = %s", (message,))
    for table in ("message_feedback", "message_edits", "code_executions"):
        assert count(db, table, "message_id = %(m)s", m=message) == 0, table


def test_deleting_a_template_or_licence_cascades_preferences_and_seats(db):
    user = add_user(db)
    template = one(
        db,
        "INSERT INTO agent_templates (template_name, description, prompt_template) VALUES ('t', 'd', 'p') RETURNING id",
    )
    db.execute("INSERT INTO user_template_preferences (user_id, template_id) VALUES (%s, %s)", (user, template))
    licence = one(
        db,
        "INSERT INTO licenses (owner_id, key_prefix, key_hash, tier, seats)"
        " VALUES (%(u)s, 'k', 'h', 'pro', 2) RETURNING id",
        u=user,
    )
    db.execute("INSERT INTO license_seats (license_id, user_id) VALUES (%s, %s)", (licence, user))
    db.execute("DELETE FROM agent_templates")
    db.execute("DELETE FROM licenses")
    assert count(db, "user_template_preferences", "true") == 0 and count(db, "license_seats", "true") == 0


def test_updated_at_is_kept_current_by_the_database_when_a_row_changes(db):
    user = add_user(db)
    before = one(db, "SELECT updated_at FROM users WHERE id = %(u)s", u=user)
    db.execute("UPDATE users SET name = 'n' WHERE id = %s", (user,))
    assert one(db, "SELECT updated_at FROM users WHERE id = %(u)s", u=user) > before


def test_anonymous_conversation_cannot_have_an_owner(database, db):
    user = add_user(db)
    with pytest.raises(UnprocessableError):
        database.transact(
            lambda uow: uow.conn.execute("INSERT INTO conversations (kind, user_id) VALUES ('anonymous', %s)", (user,))
        )


def _seed(db) -> dict[str, Any]:
    user, other = add_user(db, "alice"), add_user(db)
    conversation = add_conversation(db, created_by=user)
    message = add_message(db, conversation, user)
    template = one(
        db,
        "INSERT INTO agent_templates (template_name, description, prompt_template)"
        " VALUES ('analyst', 'd', 'p') RETURNING id",
    )
    return {"user": user, "other": other, "conversation": conversation, "message": message, "template": template}


# Each statement is run twice: the second breaks one uniqueness rule of the seeds.
UNIQUE_RULES = {
    "email case-insensitive": (
        "INSERT INTO users (username, email) VALUES (%(n)s, %(e)s)",
        lambda s, i: {"n": f"x{i}", "e": ["bob@example.com", "BOB@Example.com"][i]},
    ),
    "username": (
        "INSERT INTO users (username, email) VALUES (%(n)s, %(e)s)",
        lambda s, i: {"n": ["carol", "Carol"][i], "e": f"c{i}@example.com"},
    ),
    "participant per conversation": (
        "INSERT INTO participants (conversation_id, user_id) VALUES (%(c)s, %(u)s)",
        lambda s, i: {"c": s["conversation"], "u": s["other"]},
    ),
    "reaction per message user emoji": (
        "INSERT INTO message_reactions (message_id, user_id, emoji) VALUES (%(m)s, %(u)s, 'ok')",
        lambda s, i: {"m": s["message"], "u": s["user"]},
    ),
    "feedback per message user": (
        "INSERT INTO message_feedback (message_id, user_id, rating) VALUES (%(m)s, %(u)s, 3)",
        lambda s, i: {"m": s["message"], "u": s["user"]},
    ),
    "cache per model and prompt": (
        "INSERT INTO ai_cache (model, prompt_hash, prompt_summary, response_text, tokens_used, cost_estimate, ttl)"
        " VALUES ('m', 'h', 's', 'r', 1, 0, now())",
        lambda s, i: {},
    ),
    "preference per user and template": (
        "INSERT INTO user_template_preferences (user_id, template_id) VALUES (%(u)s, %(t)s)",
        lambda s, i: {"u": s["user"], "t": s["template"]},
    ),
    "model_id": ("INSERT INTO model_configurations (model_id) VALUES ('local-echo')", lambda s, i: {}),
    "template_name": (
        "INSERT INTO agent_templates (template_name, description, prompt_template) VALUES ('writer', 'd', 'p')",
        lambda s, i: {},
    ),
    "report_uuid": (
        "INSERT INTO deep_analysis_reports (report_uuid, user_id, goal) VALUES ('r-1', %(u)s, 'g')",
        lambda s, i: {"u": s["user"]},
    ),
    "licence key": (
        "INSERT INTO licenses (owner_id, key_prefix, key_hash, tier, seats) VALUES (%(u)s, 'p', 'kh', 't', 1)",
        lambda s, i: {"u": s["user"]},
    ),
    "refresh token hash": (
        "INSERT INTO refresh_tokens (user_id, family_id, token_hash, token_version, expires_at)"
        " VALUES (%(u)s, gen_random_uuid(), 'th', 0, now())",
        lambda s, i: {"u": s["user"]},
    ),
    "api key hash": (
        "INSERT INTO api_keys (user_id, prefix, key_hash) VALUES (%(u)s, %(p)s, 'kh')",
        lambda s, i: {"u": s["user"], "p": f"cfb_{i}"},
    ),
    "file storage key": (
        "INSERT INTO user_files (owner_id, original_name, size, storage_key) VALUES (%(u)s, 'a', 1, 'k')",
        lambda s, i: {"u": s["user"]},
    ),
    "usage event_id": (
        "INSERT INTO model_usage (event_id, model_name, provider)"
        " VALUES ('00000000-0000-0000-0000-000000000001', 'm', 'p')",
        lambda s, i: {},
    ),
    "message idempotency key": (
        "INSERT INTO messages (conversation_id, sender_id, content, idempotency_key) VALUES (%(c)s, %(u)s, 'x', 'k1')",
        lambda s, i: {"c": s["conversation"], "u": s["user"]},
    ),
}


@pytest.mark.parametrize("rule", sorted(UNIQUE_RULES))
def test_duplicate_is_a_conflict_answered_409_when_a_uniqueness_rule_is_broken(rule, db, database):
    statement, params = UNIQUE_RULES[rule]
    seeded = _seed(db)
    db.execute(statement, params(seeded, 0))
    with pytest.raises(ConflictError) as caught:
        database.transact(lambda uow: uow.conn.execute(statement, params(seeded, 1)))
    assert problem_for(caught.value).status == 409


CHECK_RULES = {
    "user role": "UPDATE users SET role = 'owner'",
    "participant role": "UPDATE participants SET role = 'guest'",
    "message status": "UPDATE messages SET status = 'seen'",
    "rating": "INSERT INTO message_feedback (message_id, user_id, rating) SELECT id, sender_id, 6 FROM messages",
    "resource type": "INSERT INTO deployed_resources (resource_name, resource_type) VALUES ('r', 'azure')",
    "report status": "INSERT INTO deep_analysis_reports (report_uuid, user_id, goal, status)"
    " SELECT 'r', id, 'g', 'paused' FROM users LIMIT 1",
    "variant type": "UPDATE agent_templates SET variant_type = 'team'",
    "progress": "INSERT INTO deep_analysis_reports (report_uuid, user_id, goal, progress_percentage)"
    " SELECT 'r', id, 'g', 101 FROM users LIMIT 1",
}


@pytest.mark.parametrize("rule", sorted(CHECK_RULES))
def test_value_outside_the_allowed_set_is_a_422_when_a_check_rule_is_broken(rule, db, database):
    seeded = _seed(db)
    db.execute(
        "INSERT INTO participants (conversation_id, user_id) VALUES (%s, %s)", (seeded["conversation"], seeded["user"])
    )
    with pytest.raises(UnprocessableError) as caught:
        database.transact(lambda uow: uow.conn.execute(CHECK_RULES[rule]))
    assert problem_for(caught.value).status == 422
