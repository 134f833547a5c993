"""Through the local API: the real authorizer in front of the conversation handlers, with a real anonymous token."""

from __future__ import annotations

import json

from shared.local.server import LocalApi


def _send(api: LocalApi, method: str, path: str, token: str | None = None, body: object = None):
    headers = [("Content-Type", "application/json")]
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    data = json.dumps(body).encode() if body is not None else b""
    response = api.handle(method, path, headers, data, "198.51.100.9")
    return response.status, json.loads(response.body) if response.body else None


def test_anonymous_token_opens_its_conversation_only_when_it_passes_the_authorizer(app_container):
    api = LocalApi()
    status, created = _send(api, "POST", "/v1/anonymous/conversations", body={})
    assert status == 201
    mine, token = created["conversation"]["id"], created["token"]
    _, other = _send(api, "POST", "/v1/anonymous/conversations", body={})
    assert _send(api, "POST", f"/v1/conversations/{mine}/messages", token, {"content": "hi"})[0] == 201
    status, page = _send(api, "GET", f"/v1/conversations/{mine}/messages", token)
    assert status == 200 and [m["content"] for m in page["items"]] == ["hi"]
    assert _send(api, "GET", f"/v1/conversations/{other['conversation']['id']}/messages", token)[0] == 404
    assert _send(api, "GET", "/v1/conversations", token)[0] == 401  # a user-only route
    assert _send(api, "GET", f"/v1/conversations/{mine}/messages")[0] == 401  # no credentials
    assert _send(api, "GET", f"/v1/conversations/{mine}/messages", token[:-2] + "xx")[0] == 401
