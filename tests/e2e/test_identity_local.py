"""The local server runs the authorizer before protected handlers, over real HTTP."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_local_server import _request
from tests.e2e.test_local_server import server as server  # the fixture, re-exported

pytestmark = pytest.mark.e2e


def test_signup_then_me_with_a_token_and_401_without_one_when_served_locally(server):
    body = {"username": "e2e", "email": "e2e@example.com", "password": "a strong password"}
    status, _, raw = _request(f"{server}/v1/auth/signup", method="POST", body=body)
    assert status == 201
    token = json.loads(raw)["access_token"]
    status, _, raw = _request(f"{server}/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and json.loads(raw)["username"] == "e2e"
    status, headers, _ = _request(f"{server}/v1/users/me")
    assert status == 401 and headers["Content-Type"] == "application/problem+json"
    status, _, _ = _request(f"{server}/v1/users/me", headers={"Authorization": f"Bearer {token}x"})
    assert status == 401
