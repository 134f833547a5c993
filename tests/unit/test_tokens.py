"""Access tokens: issued with every claim, refused when forged, broken or expired."""

from __future__ import annotations

import uuid

import jwt
import pytest

from shared.auth.tokens import issue_access_token, verify_access_token
from shared.errors import UnauthorizedError
from shared.settings import Settings
from tests.identity_helpers import forged_tokens

KEY = "unit-test-signing-key-" + "z" * 48
SETTINGS = Settings(CONFAB_STAGE="test", JWT_SECRET=KEY)
USER = uuid.uuid4()
CORPUS = forged_tokens(KEY, SETTINGS, USER)


def test_issued_token_carries_every_claim_and_verifies_when_untouched():
    token, expires_in = issue_access_token(USER, "admin", 3, key=KEY, settings=SETTINGS)
    assert expires_in == 900
    claims = jwt.decode(token, KEY, algorithms=["HS256"], audience=SETTINGS.jwt_audience)
    assert set(claims) == {"iss", "aud", "exp", "iat", "jti", "sub", "role", "ver"}
    assert claims["exp"] - claims["iat"] <= 900
    verified = verify_access_token(token, key=KEY, settings=SETTINGS)
    assert (verified.user_id, verified.role, verified.token_version) == (USER, "admin", 3)


def test_corpus_has_at_least_twenty_forgeries():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_forged_or_broken_token_is_refused_when_verified(name):
    with pytest.raises(UnauthorizedError):
        verify_access_token(CORPUS[name], key=KEY, settings=SETTINGS)
