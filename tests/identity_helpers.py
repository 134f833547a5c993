"""Helpers for the identity tests: a corpus of forged JWTs, events for the authorizer and the auth routes."""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from typing import Any

import jwt

from shared.settings import Settings
from tests.helpers import load_event

WRONG_KEY = "an-entirely-different-signing-key-" + "y" * 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(settings: Settings, user_id: uuid.UUID, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "role": "user",
        "ver": 0,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    for key, value in changes.items():
        if value is ...:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{signature}"


def forged_tokens(key: str, settings: Settings, user_id: uuid.UUID) -> dict[str, str]:
    """At least twenty tokens that must all be refused, each named for what is wrong with it."""

    def signed(algorithm: str = "HS256", signing_key: str = key, **changes: Any) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyJWT warns about short keys for HS512, which is the point
            return jwt.encode(_claims(settings, user_id, **changes), signing_key, algorithm=algorithm)

    good = signed()
    head, payload, signature = good.split(".")
    tampered_claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    tampered_claims["role"] = "super_admin"
    other = signed(role="admin")
    now = int(time.time())
    corpus = {
        "alg none": _unsigned({"alg": "none", "typ": "JWT"}, _claims(settings, user_id)),
        "alg None capitalised": _unsigned({"alg": "None", "typ": "JWT"}, _claims(settings, user_id)),
        "alg none with the real signature": _unsigned({"alg": "none"}, _claims(settings, user_id), signature),
        "wrong key": signed(signing_key=WRONG_KEY),
        "HS512 with the right key": signed(algorithm="HS512"),
        "RS256 header over an HMAC signature": _unsigned({"alg": "RS256", "typ": "JWT"}, _claims(settings, user_id))
        + signature,
        "expired": signed(iat=now - 1200, exp=now - 600),
        "wrong issuer": signed(iss="someone-else"),
        "wrong audience": signed(aud="another-api"),
        "audience list": signed(aud=[settings.jwt_audience, "another-api"]),
        "missing sub": signed(sub=...),
        "missing exp": signed(exp=...),
        "missing iat": signed(iat=...),
        "missing jti": signed(jti=...),
        "missing role": signed(role=...),
        "missing ver": signed(ver=...),
        "missing iss": signed(iss=...),
        "missing aud": signed(aud=...),
        "unknown role": signed(role="root"),
        "version as string": signed(ver="0"),
        "sub not a uuid": signed(sub="admin"),
        "lifetime over fifteen minutes": signed(exp=now + 86400),
        "tampered payload": f"{head}.{_b64(json.dumps(tampered_claims).encode())}.{signature}",
        "signature from another token": f"{head}.{payload}.{other.split('.')[2]}",
        "extra segment": good + ".extra",
        "two segments": f"{head}.{payload}",
        "empty signature": f"{head}.{payload}.",
        "garbage": "not-a-token",
        "non-base64 header": f"!!!.{payload}.{signature}",
        "issued in the future": signed(iat=now + 3600, exp=now + 3900),
    }
    return corpus


def authorizer_request(
    credential: str | None = None,
    *,
    header: str = "Authorization",
    resource: str = "/v1/users/me",
    method: str = "GET",
) -> dict[str, Any]:
    """A REQUEST authorizer event as API Gateway sends it, with the credential in the given header."""
    headers: dict[str, str] = {"Host": "abc123.execute-api.us-east-1.amazonaws.com"}
    if credential is not None:
        headers[header] = f"Bearer {credential}" if header == "Authorization" else credential
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:abc123/prod/{method}{resource}",
        "resource": resource,
        "path": resource,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {},
        "pathParameters": {},
        "stageVariables": {},
        "requestContext": load_event("health_get")["requestContext"],
    }
