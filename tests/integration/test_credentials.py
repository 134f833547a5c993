"""Where database credentials come from in AWS: a Secrets Manager secret, or an IAM auth token (RDS Proxy)."""

from __future__ import annotations

import json

import boto3
import psycopg
import pytest
from moto import mock_aws

from shared.bootstrap import build_container, conninfo_factory
from shared.settings import Settings


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


def test_secret_supplies_user_and_password_when_db_secret_arn_is_set(aws, database_url):
    parts = psycopg.conninfo.conninfo_to_dict(database_url)
    secret = boto3.client("secretsmanager").create_secret(
        Name="confab/db", SecretString=json.dumps({"username": parts.get("user", "postgres"), "password": "pw"})
    )
    settings = Settings(
        CONFAB_STAGE="dev",
        DB_HOST=str(parts["host"]),
        DB_PORT=int(parts.get("port") or 5432),
        DB_NAME=str(parts["dbname"]),
        DB_SECRET_ARN=secret["ARN"],
        DB_SSLMODE="disable",
    )
    params = conninfo_factory(settings)()
    assert params["password"] == "pw" and params["user"] == parts.get("user", "postgres")
    db = build_container(settings).db
    try:
        assert db.read(lambda uow: uow.conn.execute("SELECT current_database()").fetchone()) == (parts["dbname"],)
    finally:
        db.close()


def test_iam_token_is_generated_per_connection_when_iam_auth_is_on(aws):
    settings = Settings(CONFAB_STAGE="prod", DB_HOST="proxy.example.internal", DB_IAM_AUTH=True, DB_SSLMODE="require")
    factory = conninfo_factory(settings)
    params = factory()
    assert "Action=connect" in params["password"] and "DBUser=confab" in params["password"]
    assert params["host"] == "proxy.example.internal" and params["sslmode"] == "require"


def test_missing_credentials_source_fails_fast_when_settings_are_built():
    with pytest.raises(ValueError, match="DB_IAM_AUTH"):
        conninfo_factory(Settings(CONFAB_STAGE="dev", DB_HOST="db.internal"))
    with pytest.raises(ValueError, match="DATABASE_URL"):
        conninfo_factory(Settings(CONFAB_STAGE="dev"))
