from __future__ import annotations

import psycopg
import pytest

from functions import migrate as migrate_function
from shared.local.events import LocalContext
from shared.settings import get_settings


@pytest.fixture
def migrate_env(empty_database_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    get_settings.cache_clear()
    yield empty_database_url
    get_settings.cache_clear()


def _context() -> LocalContext:
    return LocalContext(function_name="confab-migrate", aws_request_id="trigger-1")


def test_trigger_applies_every_migration_when_the_database_is_empty(migrate_env: str):
    result = migrate_function.lambda_handler({}, _context())

    files = sorted(p.stem for p in get_settings().migrations_dir.glob("*.sql"))
    assert result["applied"] == files
    with psycopg.connect(migrate_env) as conn:
        row = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert row is not None and row[0] == len(files)


def test_trigger_applies_nothing_when_run_again_after_a_deploy(migrate_env: str):
    migrate_function.lambda_handler({}, _context())

    assert migrate_function.lambda_handler({}, _context()) == {"applied": []}
