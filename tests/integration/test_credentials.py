"""Where credentials come from in AWS: database credentials from a Secrets Manager secret or an IAM auth token
(RDS Proxy), and the JWT signing key from a Secrets Manager secret."""

from __future__ import annotations

import json
import uuid

import boto3
import psycopg
import pytest
from moto import mock_aws

from shared.auth.keys import MIN_KEY_BYTES, signing_key
from shared.auth.tokens import issue_access_token
from shared.bootstrap import build_container, conninfo_factory
from shared.services.authentication import authenticate, credential_from_headers
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


def test_signing_key_from_secrets_manager_is_used_when_long_enough(aws):
    key = "k" * MIN_KEY_BYTES
    arn = boto3.client("secretsmanager").create_secret(Name="confab/jwt-ok", SecretString=key)["ARN"]
    assert signing_key(Settings(CONFAB_STAGE="dev", JWT_SECRET_ARN=arn)) == key


def test_signing_key_from_secrets_manager_shorter_than_32_bytes_stops_every_token_when_read(aws):
    # JWT_SECRET is refused under 32 bytes when settings are built; the secret's value is held to the same rule
    # when it is read, so a short key neither signs tokens nor verifies them (anyone could brute-force it).
    short = "k" * (MIN_KEY_BYTES - 1)
    arn = boto3.client("secretsmanager").create_secret(Name="confab/jwt-short", SecretString=short)["ARN"]
    settings = Settings(CONFAB_STAGE="dev", JWT_SECRET_ARN=arn)
    with pytest.raises(ValueError, match=f"JWT_SECRET_ARN.*at least {MIN_KEY_BYTES} bytes"):
        signing_key(settings)
    with pytest.warns(UserWarning, match="HMAC key"):  # PyJWT's own warning about the key this test forges with
        forged, _ = issue_access_token(uuid.uuid4(), "super_admin", 1, key=short, settings=settings)
    credential = credential_from_headers({"Authorization": f"Bearer {forged}"})
    with pytest.raises(ValueError, match="JWT_SECRET_ARN"):
        authenticate(credential, db=None, settings=settings, allow_anonymous=False)  # type: ignore[arg-type]
