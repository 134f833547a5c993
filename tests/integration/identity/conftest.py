"""Fixtures for the identity tests: the local API in-process (route table -> authorizer -> handler)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.bootstrap import Container, container
from shared.settings import get_settings

PASSWORD = "correct horse battery"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None


@dataclass
class Api:
    """Drives shared.local.server.LocalApi: the same authorizer and handlers the local server runs."""

    replies: list[Reply] = field(default_factory=list)

    def __post_init__(self) -> None:
        from shared.local.server import LocalApi

        self.local = LocalApi()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        ip: str = "203.0.113.10",
    ) -> Reply:
        pairs = [("Content-Type", "application/json"), ("User-Agent", "pytest")]
        if token:
            pairs.append(("Authorization", f"Bearer {token}"))
        pairs.extend((headers or {}).items())
        raw = json.dumps(body).encode() if body is not None else b""
        response = self.local.handle(method, path, pairs, raw, ip)
        reply = Reply(response.status, {k.lower(): v for k, v in response.headers}, response.body)
        self.replies.append(reply)
        return reply

    def signup(self, username: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
        body = {"username": username, "email": f"{username}@example.com", "password": password, **extra}
        reply = self.call("POST", "/v1/auth/signup", body)
        assert reply.status == 201, reply.json
        return reply.json  # type: ignore[no-any-return]

    def login(self, name: str) -> str:
        """An access token for `name`, signed in with PASSWORD."""
        reply = self.call("POST", "/v1/auth/login", {"login": name, "password": PASSWORD})
        assert reply.status == 200, reply.json
        return reply.json["access_token"]  # type: ignore[no-any-return]

    def with_role(self, make_role: Callable[[str, str], None], name: str, role: str) -> tuple[str, str]:
        """A new account given `role`: its id and an access token carrying the role."""
        body = self.signup(name)
        make_role(body["user"]["id"], role)
        return body["user"]["id"], self.login(name)


@pytest.fixture
def reconfigure(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Container]]:
    """Rebuild the process-wide container with extra environment (e.g. a lower login limit)."""

    def build(**env: str) -> Container:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        container.cache_clear()
        return container()

    yield build
    container().db.close()
    get_settings.cache_clear()
    container.cache_clear()


@pytest.fixture
def api(app_container: Container) -> Api:
    return Api()


@pytest.fixture
def make_role(db: Any) -> Callable[[str, str], None]:
    def set_role(user_id: str, role: str) -> None:
        db.execute("UPDATE users SET role = %s WHERE id = %s", (role, user_id))

    return set_role
