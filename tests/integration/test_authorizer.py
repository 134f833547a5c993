"""The authorizer against a real database: JWTs, API keys, anonymous tokens, token versions."""

from __future__ import annotations

import uuid

import pytest

from shared.auth.anonymous import issue_anonymous_token
from shared.auth.api_keys import issue_key
from shared.auth.principal import Principal
from shared.auth.tokens import issue_access_token
from tests.helpers import FakeLambdaContext
from tests.identity_helpers import authorizer_request, forged_tokens


def _user(db, role="user", active=True) -> uuid.UUID:
    name = uuid.uuid4().hex[:10]
    return db.execute(
        "INSERT INTO users (username, email, role, is_active) VALUES (%s, %s, %s, %s) RETURNING id",
        (name, f"{name}@example.com", role, active),
    ).fetchone()[0]


def _authorize(event):
    from functions.authorizer import lambda_handler

    return lambda_handler(event, FakeLambdaContext())


def _refused(event) -> bool:
    with pytest.raises(Exception) as raised:
        _authorize(event)
    return str(raised.value) == "Unauthorized"


def _jwt(settings, user_id, role="user", version=0) -> str:
    return issue_access_token(user_id, role, version, key=settings.jwt_secret, settings=settings)[0]


def test_valid_jwt_gives_allow_policy_and_principal_context(app_container, settings, db):
    user = _user(db, role="admin")
    policy = _authorize(authorizer_request(_jwt(settings, user, "admin")))
    assert policy["principalId"] == str(user)
    statement = policy["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow" and statement["Resource"].endswith("abc123/prod/*/*")
    principal = Principal.from_context(policy["context"])
    assert (principal.kind, principal.user_id, principal.role) == ("jwt", user, "admin")


def test_jwt_is_refused_when_token_version_moved_on_or_user_deactivated(app_container, settings, db):
    user = _user(db)
    token = _jwt(settings, user)
    db.execute("UPDATE users SET token_version = token_version + 1 WHERE id = %s", (user,))
    assert _refused(authorizer_request(token))
    assert _authorize(authorizer_request(_jwt(settings, user, version=1)))
    db.execute("UPDATE users SET is_active = false WHERE id = %s", (user,))
    assert _refused(authorizer_request(_jwt(settings, user, version=1)))


def test_jwt_for_a_missing_user_or_stale_role_is_refused(app_container, settings, db):
    assert _refused(authorizer_request(_jwt(settings, uuid.uuid4())))
    user = _user(db)
    assert _refused(authorizer_request(_jwt(settings, user, role="admin")))


def test_every_forged_jwt_is_refused_by_the_authorizer(app_container, settings, db):
    user = _user(db)
    corpus = forged_tokens(settings.jwt_secret, settings, user)
    assert len(corpus) >= 20
    accepted = [name for name, token in corpus.items() if not _refused(authorizer_request(token))]
    assert accepted == []


def test_missing_or_unreadable_credentials_are_refused(app_container):
    assert _refused(authorizer_request(None))
    event = authorizer_request(None)
    event["headers"]["Authorization"] = "Basic dXNlcjpwYXNz"
    assert _refused(event)
    assert _refused(authorizer_request("x" * 5000))


def _api_key(db, user, **columns) -> str:
    issued = issue_key()
    db.execute(
        "INSERT INTO api_keys (user_id, prefix, key_hash, expires_at, revoked_at) VALUES (%s, %s, %s, %s, %s)",
        (user, issued.prefix, issued.key_hash, columns.get("expires_at"), columns.get("revoked_at")),
    )
    return issued.key


@pytest.mark.parametrize("header", ["Authorization", "x-api-key"])
def test_api_key_is_accepted_as_bearer_or_x_api_key(app_container, db, header):
    user = _user(db)
    key = _api_key(db, user)
    principal = Principal.from_context(_authorize(authorizer_request(key, header=header))["context"])
    assert (principal.kind, principal.user_id, principal.role) == ("api_key", user, "user")
    assert principal.api_key_id is not None


def test_api_key_is_refused_when_revoked_expired_unknown_or_owner_inactive(app_container, db):
    user = _user(db)
    assert _refused(authorizer_request(_api_key(db, user, revoked_at="2020-01-01T00:00:00Z")))
    assert _refused(authorizer_request(_api_key(db, user, expires_at="2020-01-01T00:00:00Z")))
    good = _api_key(db, user)
    assert _refused(authorizer_request(good[:-1] + ("A" if good[-1] != "A" else "B")))
    assert _refused(authorizer_request(issue_key().key))
    db.execute("UPDATE users SET is_active = false WHERE id = %s", (user,))
    assert _refused(authorizer_request(good))


def test_api_key_last_used_is_written_at_most_once_a_minute(app_container, db):
    user = _user(db)
    key = _api_key(db, user)
    _authorize(authorizer_request(key))
    first = db.execute("SELECT last_used FROM api_keys WHERE user_id = %s", (user,)).fetchone()[0]
    assert first is not None
    _authorize(authorizer_request(key))
    assert db.execute("SELECT last_used FROM api_keys WHERE user_id = %s", (user,)).fetchone()[0] == first
    db.execute("UPDATE api_keys SET last_used = now() - interval '61 seconds' WHERE user_id = %s", (user,))
    _authorize(authorizer_request(key))
    assert db.execute("SELECT last_used FROM api_keys WHERE user_id = %s", (user,)).fetchone()[0] > first


def _anonymous_conversation(db):
    conversation = uuid.uuid4()
    token, token_hash = issue_anonymous_token(conversation)
    db.execute(
        "INSERT INTO conversations (id, kind, anonymous_token_hash) VALUES (%s, 'anonymous', %s)",
        (conversation, token_hash),
    )
    return conversation, token


def test_anonymous_token_gives_a_conversation_scoped_principal_on_any_routes(app_container, db, monkeypatch):
    from shared import routes

    table = (*routes.ROUTE_GROUPS, routes.RouteGroup("x", (routes.Route("POST", "/v1/x/{id}", auth="any"),)))
    monkeypatch.setattr(routes, "ROUTE_GROUPS", table)
    conversation, token = _anonymous_conversation(db)
    policy = _authorize(authorizer_request(token, resource="/v1/x/{id}", method="POST"))
    principal = Principal.from_context(policy["context"])
    assert principal.is_anonymous and principal.conversation_id == conversation and principal.user_id is None
    assert _refused(authorizer_request(token, resource="/v1/users/me"))
    assert _refused(authorizer_request(token[:-2] + "zz", resource="/v1/x/{id}", method="POST"))
    assert _refused(
        authorizer_request(f"anon_{uuid.uuid4()}.{token.split('.')[1]}", resource="/v1/x/{id}", method="POST")
    )


def test_a_refused_credential_is_logged_with_the_request_it_came_with(app_container, settings, db):
    import io
    import json
    import logging

    from shared.observability import logger

    event = authorizer_request("not-a-credential")
    event["requestContext"]["requestId"] = "req-refused-1"
    sink = io.StringIO()
    capture = logging.StreamHandler(sink)
    capture.setFormatter(logger.registered_formatter)
    logger.addHandler(capture)
    try:
        assert _refused(event)
    finally:
        logger.removeHandler(capture)
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    refused = [line for line in lines if line["message"] == "credential refused"]
    assert refused and refused[0]["correlation_id"] == "req-refused-1"
    assert refused[0]["function_request_id"] == FakeLambdaContext.aws_request_id
    assert "not-a-credential" not in sink.getvalue()
