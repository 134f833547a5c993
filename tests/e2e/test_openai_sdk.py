"""The official `openai` package, pointed at the local server, works unchanged (API key and JWT)."""

from __future__ import annotations

import json
import time

import openai
import pytest

from tests.e2e.test_local_server import _request
from tests.e2e.test_local_server import server as server  # the fixture, re-exported

pytestmark = pytest.mark.e2e


def _signup(server: str) -> str:
    body = {"username": "sdk", "email": "sdk@example.com", "password": "a strong password"}
    status, _, raw = _request(f"{server}/v1/auth/signup", method="POST", body=body)
    assert status == 201, raw
    return str(json.loads(raw)["access_token"])


def test_openai_client_lists_the_seeded_model_and_completes_with_usage_when_served_locally(server):
    token = _signup(server)
    status, _, raw = _request(
        f"{server}/v1/users/me/api-keys",
        method="POST",
        body={"name": "sdk"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status == 201
    api_key = json.loads(raw)["key"]

    client = openai.OpenAI(base_url=f"{server}/v1", api_key=api_key, max_retries=0, timeout=20)
    models = [m.id for m in client.models.list()]
    assert "local-echo" in models
    assert client.models.retrieve("local-echo").id == "local-echo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")

    first = client.chat.completions.create(
        model="local-echo",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hi"}],
        temperature=0,
    )
    assert first.object == "chat.completion" and first.choices[0].message.role == "assistant"
    assert "Say hi" in (first.choices[0].message.content or "")
    assert (
        first.usage is not None
        and first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    )
    assert first.usage.prompt_tokens > 0

    # A JWT works too, and the same deterministic question is answered the same way (from the cache).
    with_jwt = openai.OpenAI(base_url=f"{server}/v1", api_key=token, max_retries=0, timeout=20)
    again = with_jwt.chat.completions.create(
        model="local-echo",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hi"}],
        temperature=0,
    )
    assert again.choices[0].message.content == first.choices[0].message.content

    # Both calls are recorded like any other: one request to the model and one cache hit.
    deadline = time.monotonic() + 20
    while True:
        status, _, raw = _request(f"{server}/v1/usage/me?group_by=model", headers={"Authorization": f"Bearer {token}"})
        totals = json.loads(raw)["totals"] if status == 200 else {}
        if totals.get("requests") == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert totals["requests"] == 2 and totals["cache_hits"] == 1

    # A streaming client works unchanged too (the chunks arrive together, once the answer is complete).
    chunks = list(
        client.chat.completions.create(
            model="local-echo",
            messages=[{"role": "user", "content": "Stream it"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).find("Stream it") >= 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    with pytest.raises(openai.UnprocessableEntityError):  # refused before anything is streamed
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}], stream=True)

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="cfb_not_a_key", max_retries=0).models.list()
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
