"""Passwords, opaque secrets, API keys, anonymous tokens and the signing key: the primitives."""

from __future__ import annotations

import uuid
from unittest import mock

import bcrypt
import pytest
from pydantic import ValidationError

from shared.auth import passwords
from shared.auth.anonymous import issue_anonymous_token, parse_anonymous_token, verify_anonymous_token
from shared.auth.api_keys import PREFIX_CHARS, api_key_prefix, issue_key
from shared.auth.keys import MIN_KEY_BYTES, local_key, signing_key
from shared.auth.opaque import hash_secret, same_hash
from shared.errors import UnprocessableError
from shared.services.authentication import credential_from_headers
from shared.settings import Settings

ROUNDS = 4


@pytest.mark.parametrize("password", ["short", "x" * 7, "é" * 37, "x" * 73])
def test_password_rules_reject_under_8_chars_or_over_72_bytes_with_422(password):
    with pytest.raises(UnprocessableError) as raised:
        passwords.check_password_rules(password)
    assert password not in str(raised.value.errors)


@pytest.mark.parametrize("password", ["x" * 8, "x" * 72, "é" * 36])
def test_password_rules_accept_8_chars_to_72_bytes(password):
    passwords.check_password_rules(password)


def test_password_verifies_only_when_it_matches_the_hash():
    stored = passwords.hash_password("correct horse", ROUNDS)
    assert stored.startswith("$2b$04$")
    assert passwords.verify_password("correct horse", stored, ROUNDS)
    assert not passwords.verify_password("wrong horse!", stored, ROUNDS)


def test_a_hash_needs_rehashing_only_when_made_at_another_cost():
    assert not passwords.needs_rehash(passwords.hash_password("correct horse", ROUNDS), ROUNDS)
    assert passwords.needs_rehash(passwords.hash_password("correct horse", ROUNDS + 1), ROUNDS)
    assert passwords.needs_rehash("not-a-bcrypt-hash", ROUNDS)
    assert passwords.dummy_hash(ROUNDS + 1).startswith(f"$2b$0{ROUNDS + 1}$")


def test_verify_does_one_bcrypt_check_whatever_the_input_when_account_missing_or_password_too_long():
    stored = passwords.hash_password("x" * 72, ROUNDS)
    with mock.patch.object(passwords.bcrypt, "checkpw", wraps=bcrypt.checkpw) as checkpw:
        assert not passwords.verify_password("whatever1", None, ROUNDS)
        assert not passwords.verify_password("x" * 73, stored, ROUNDS)  # the first 72 bytes match, still no
        assert not passwords.verify_password("whatever1", "not-a-bcrypt-hash", ROUNDS)
        assert not passwords.verify_password("whatever1", stored, ROUNDS)
    assert checkpw.call_count == 5  # one each, plus the dummy after the malformed hash raised


def test_same_hash_is_true_only_for_the_secret_that_made_it():
    stored = hash_secret("s3cret")
    assert same_hash("s3cret", stored)
    assert not same_hash("s3cret!", stored)
    assert not same_hash("s3cret", None)


def test_api_key_has_mark_prefix_and_hash_but_not_the_key_in_what_is_stored():
    issued = issue_key()
    assert issued.key.startswith("cfb_") and len(issued.prefix) == PREFIX_CHARS
    assert issued.key.startswith(issued.prefix) and issued.key_hash == hash_secret(issued.key)
    assert issued.key not in issued.key_hash
    assert api_key_prefix(issued.key) == issued.prefix
    for bad in ("cfb_", "cfb_short", "cfb_" + "x" * 43 + "!", "abc_" + "x" * 43):
        assert api_key_prefix(bad) is None


def test_anonymous_token_verifies_only_for_its_conversation_and_hash():
    conversation = uuid.uuid4()
    token, token_hash = issue_anonymous_token(conversation)
    assert token.startswith(f"anon_{conversation}.")
    assert parse_anonymous_token(token) == (conversation, token.split(".", 1)[1])
    assert verify_anonymous_token(token, conversation, token_hash)
    assert not verify_anonymous_token(token, uuid.uuid4(), token_hash)
    assert not verify_anonymous_token(token + "x", conversation, token_hash)
    assert not verify_anonymous_token(token, conversation, None)
    for bad in ("anon_", "anon_nope.secret", f"anon_{conversation}", f"anon_{conversation}.", "cfb_x"):
        assert parse_anonymous_token(bad) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer abc"}, "abc"),
        ({"authorization": "bearer  abc "}, "abc"),
        ({"X-Api-Key": "cfb_k"}, "cfb_k"),
        ({"Authorization": "Basic dXNlcjpwYXNz", "x-api-key": "cfb_k"}, None),
        ({"Authorization": "Bearer "}, None),
        ({}, None),
        (None, None),
    ],
)
def test_credential_comes_from_bearer_or_x_api_key_when_present(headers, expected):
    assert credential_from_headers(headers) == expected


def test_local_signing_key_is_generated_once_and_kept_when_jwt_secret_is_unset(tmp_path):
    first = local_key(tmp_path / "state")
    assert len(first) >= 32 and local_key(tmp_path / "state") == first
    assert (tmp_path / "state" / "jwt_secret").stat().st_mode & 0o777 == 0o600
    settings = Settings(CONFAB_STAGE="local", CONFAB_STATE_DIR=str(tmp_path / "state"), JWT_SECRET=None)
    assert signing_key(settings) == first
    assert signing_key(Settings(CONFAB_STAGE="local", JWT_SECRET="k" * 40)) == "k" * 40


@pytest.mark.parametrize("stage", ["local", "test"])
def test_short_jwt_secret_is_refused_like_a_short_key_file_when_settings_are_read(stage, monkeypatch):
    monkeypatch.setenv("CONFAB_STAGE", stage)
    monkeypatch.setenv("JWT_SECRET", "s" * (MIN_KEY_BYTES - 1))
    with pytest.raises(ValidationError, match=f"at least {MIN_KEY_BYTES} bytes") as refused:
        Settings()
    assert "s" * (MIN_KEY_BYTES - 1) not in str(refused.value)
    monkeypatch.setenv("JWT_SECRET", "é" * (MIN_KEY_BYTES // 2))  # counted in bytes, as the key file is
    assert signing_key(Settings()) == "é" * (MIN_KEY_BYTES // 2)


def test_signing_key_is_refused_in_aws_stages_without_a_secret_arn():
    with pytest.raises(ValueError):
        signing_key(Settings(CONFAB_STAGE="prod", JWT_SECRET=None, JWT_SECRET_ARN=None))
