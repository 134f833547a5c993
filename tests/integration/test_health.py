from __future__ import annotations

from shared.bootstrap import container
from shared.settings import get_settings
from tests.helpers import FakeLambdaContext, body_of, header, load_event


def test_health_is_ok_with_migration_version_when_the_database_is_up(app_container, db):
    from functions.health import lambda_handler

    response = lambda_handler(load_event("health_get"), FakeLambdaContext())
    assert response["statusCode"] == 200
    body = body_of(response)
    expected = db.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
    assert body == {"status": "ok", "database": "ok", "migration_version": expected}


def test_health_is_503_problem_with_retry_after_when_the_database_is_unreachable(monkeypatch):
    from functions.health import lambda_handler

    monkeypatch.setenv("DATABASE_URL", "postgresql://confab@127.0.0.1:1/none")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "1")
    get_settings.cache_clear()
    container.cache_clear()
    try:
        response = lambda_handler(load_event("health_get"), FakeLambdaContext())
    finally:
        get_settings.cache_clear()
        container.cache_clear()
    assert response["statusCode"] == 503
    assert header(response, "Content-Type") == "application/problem+json"
    assert header(response, "Retry-After") == "5"
    body = body_of(response)
    assert body["type"].endswith("/unavailable")
    assert "Traceback" not in response["body"] and "127.0.0.1" not in response["body"]
