"""One frozen settings object, read from the environment once per cold start."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The shortest HS256 key accepted, from JWT_SECRET or a generated key file (RFC 7518: at least the hash's size).
MIN_KEY_BYTES = 32


class Settings(BaseSettings):
    """Every knob Confab has. Nothing else reads os.environ."""

    # Inputs hidden from validation errors: they hold the database URL, the JWT key and provider keys.
    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", case_sensitive=False, populate_by_name=True, hide_input_in_errors=True
    )

    stage: Literal["local", "test", "dev", "prod"] = Field("local", alias="CONFAB_STAGE")
    service_name: str = Field("confab", alias="POWERTOOLS_SERVICE_NAME")
    aws_region: str = Field("us-east-1", alias="AWS_REGION")

    # Database: DATABASE_URL wins; otherwise host/port/name/user with a Secrets Manager secret
    # (password) or an IAM auth token (RDS Proxy).
    database_url: str | None = Field(None, alias="DATABASE_URL")
    db_host: str | None = Field(None, alias="DB_HOST")
    db_port: int = Field(5432, alias="DB_PORT", ge=1, le=65535)
    db_name: str = Field("confab", alias="DB_NAME")
    db_user: str = Field("confab", alias="DB_USER")
    db_secret_arn: str | None = Field(None, alias="DB_SECRET_ARN")
    db_iam_auth: bool = Field(False, alias="DB_IAM_AUTH")
    # The migration trigger only: the secret of the role the functions connect as (shared/app_role.py).
    app_db_secret_arn: str | None = Field(None, alias="APP_DB_SECRET_ARN")
    db_connect_timeout_s: int = Field(5, alias="DB_CONNECT_TIMEOUT", ge=1, le=60)
    db_sslmode: str = Field("prefer", alias="DB_SSLMODE")
    local_data_dir: Path = Field(PROJECT_ROOT / ".pgdata", alias="CONFAB_DATA_DIR")
    migrations_dir: Path = Field(PROJECT_ROOT / "migrations", alias="CONFAB_MIGRATIONS_DIR")

    # Auth
    jwt_secret: str | None = Field(None, alias="JWT_SECRET")
    jwt_secret_arn: str | None = Field(None, alias="JWT_SECRET_ARN")
    jwt_issuer: str = Field("confab", alias="JWT_ISSUER")
    jwt_audience: str = Field("confab-api", alias="JWT_AUDIENCE")
    access_token_ttl_s: int = Field(900, alias="ACCESS_TOKEN_TTL_SECONDS", ge=60, le=900)
    refresh_token_ttl_s: int = Field(30 * 86400, alias="REFRESH_TOKEN_TTL_SECONDS", ge=3600)
    bcrypt_rounds: int = Field(12, alias="BCRYPT_ROUNDS", ge=4, le=16)
    # Where local mode keeps a generated JWT signing key when JWT_SECRET is unset (git-ignored).
    local_state_dir: Path = Field(PROJECT_ROOT / ".confab", alias="CONFAB_STATE_DIR")
    # A spent refresh token replayed within this many seconds (concurrent refreshes from one client)
    # gets a fresh pair instead of revoking its family; RFC 9700 allows a short window, we cap it at 10 s.
    refresh_reuse_grace_s: int = Field(10, alias="REFRESH_REUSE_GRACE_SECONDS", ge=0, le=10)
    login_max_failures_per_account: int = Field(10, alias="LOGIN_MAX_FAILURES_PER_ACCOUNT", ge=1)
    login_max_failures_per_address: int = Field(50, alias="LOGIN_MAX_FAILURES_PER_ADDRESS", ge=1)
    # All the /64s of one IPv6 /48 together (a routed /56 or /48 could rotate them): ten /64s' worth.
    login_max_failures_per_ipv6_48: int = Field(500, alias="LOGIN_MAX_FAILURES_PER_IPV6_48", ge=1)
    login_failure_window_s: int = Field(900, alias="LOGIN_FAILURE_WINDOW_SECONDS", ge=60)
    api_key_touch_interval_s: int = Field(60, alias="API_KEY_TOUCH_INTERVAL_SECONDS", ge=1)

    # Usage pipeline and storage
    usage_queue_url: str | None = Field(None, alias="USAGE_QUEUE_URL")
    usage_local_batch_size: int = Field(100, alias="USAGE_LOCAL_BATCH_SIZE", ge=1, le=10_000)
    files_bucket: str | None = Field(None, alias="FILES_BUCKET")
    files_dir: Path = Field(PROJECT_ROOT / ".files", alias="CONFAB_FILES_DIR")

    # Browser origins allowed to call the API and upload to presigned URLs, comma-separated ("*" for any).
    cors_origins: str = Field("*", alias="CORS_ORIGINS")

    # Retention and cache
    anonymous_retention_days: int = Field(90, alias="ANONYMOUS_RETENTION_DAYS", ge=1)
    connection_log_retention_days: int = Field(180, alias="CONNECTION_LOG_RETENTION_DAYS", ge=1)
    # Changes in a conversation's change feed (edits, deletions, reactions, read and delivered marks); a client polling
    # from before them must resync (410).
    message_change_retention_days: int = Field(30, alias="MESSAGE_CHANGE_RETENTION_DAYS", ge=1)
    refresh_token_grace_days: int = Field(7, alias="REFRESH_TOKEN_GRACE_DAYS", ge=0)
    ai_cache_ttl_s: int = Field(7 * 86400, alias="AI_CACHE_TTL_SECONDS", ge=0)

    # AI: providers, completions cache and spend
    provider_timeout_s: float = Field(30.0, alias="PROVIDER_TIMEOUT_SECONDS", gt=0, le=900)
    provider_max_response_bytes: int = Field(1_048_576, alias="PROVIDER_MAX_RESPONSE_BYTES", ge=1024)
    # Local testing against a fake server on loopback only; refused outside local/test stages.
    allow_private_model_endpoints: bool = Field(False, alias="ALLOW_PRIVATE_MODEL_ENDPOINTS")
    openai_compatible_api_key: str | None = Field(None, alias="OPENAI_COMPATIBLE_API_KEY")
    # Where a model's API-key secrets must live (an ARN prefix, the deployed functions may read under it only).
    provider_secret_arn_prefix: str | None = Field(None, alias="PROVIDER_SECRET_ARN_PREFIX")
    # Only deterministic (temperature 0) requests are cached unless this is on.
    ai_cache_nondeterministic: bool = Field(False, alias="AI_CACHE_NONDETERMINISTIC")
    # Per-user spend per calendar month (UTC) in USD; unset means no limit.
    monthly_spend_limit_usd: Decimal | None = Field(None, alias="MONTHLY_SPEND_LIMIT_USD", ge=0)
    default_model_id: str | None = Field(None, alias="DEFAULT_MODEL_ID")
    # The model an anonymous conversation's token is answered by in a thread; unset, such a completion is 403
    # (anonymous AI is off). `confab serve` sets it to the seeded local model in local stages.
    anonymous_ai_model_id: str | None = Field(None, alias="ANONYMOUS_AI_MODEL_ID")
    # Answers one anonymous conversation may get in all (409 past it), and completions one client address (an
    # IPv4 address or IPv6 /64) and one IPv6 /48 may ask for per window (429 with Retry-After past it).
    anonymous_ai_turn_limit: int = Field(50, alias="ANONYMOUS_AI_TURN_LIMIT", ge=1, le=1_000_000)
    anonymous_ai_rate_limit: int = Field(60, alias="ANONYMOUS_AI_RATE_LIMIT", ge=1)
    anonymous_ai_rate_limit_per_ipv6_48: int = Field(600, alias="ANONYMOUS_AI_RATE_LIMIT_PER_IPV6_48", ge=1)
    anonymous_ai_window_s: int = Field(3600, alias="ANONYMOUS_AI_WINDOW_SECONDS", ge=1)
    # What all anonymous conversations together may spend per UTC day in USD (429 with Retry-After past it); unset
    # means no ceiling beyond the per-address rate.
    anonymous_ai_daily_spend_limit_usd: Decimal | None = Field(None, alias="ANONYMOUS_AI_DAILY_SPEND_LIMIT_USD", ge=0)

    # Conversations and messaging
    message_max_chars: int = Field(32_000, alias="MESSAGE_MAX_CHARS", ge=1)
    message_max_attachments: int = Field(10, alias="MESSAGE_MAX_ATTACHMENTS", ge=0)
    request_body_max_bytes: int = Field(256 * 1024, alias="REQUEST_BODY_MAX_BYTES", ge=1024)
    anonymous_create_limit: int = Field(20, alias="ANONYMOUS_CREATE_LIMIT", ge=1)
    # All the /64s of one IPv6 /48 together (a routed /56 or /48 could rotate them): ten /64s' worth.
    anonymous_create_limit_per_ipv6_48: int = Field(200, alias="ANONYMOUS_CREATE_LIMIT_PER_IPV6_48", ge=1)
    anonymous_create_window_s: int = Field(3600, alias="ANONYMOUS_CREATE_WINDOW_SECONDS", ge=1)
    # Messages one anonymous conversation may hold (and as many threads and earlier versions of edited messages):
    # anyone with its token can write to it.
    anonymous_message_limit: int = Field(1000, alias="ANONYMOUS_MESSAGE_LIMIT", ge=1, le=1_000_000)
    file_max_bytes: int = Field(25 * 1024 * 1024, alias="FILE_MAX_BYTES", ge=1)
    file_content_types: tuple[str, ...] = Field(
        (
            "application/json",
            "application/octet-stream",
            "application/pdf",
            "image/gif",
            "image/jpeg",
            "image/png",
            "image/webp",
            "text/csv",
            "text/markdown",
            "text/plain",
        ),
        alias="FILE_CONTENT_TYPES",
    )
    file_url_ttl_s: int = Field(900, alias="FILE_URL_TTL_SECONDS", ge=1, le=7 * 86400)
    file_uploads_in_progress_max: int = Field(20, alias="FILE_UPLOADS_IN_PROGRESS_MAX", ge=1, le=10_000)
    # Local mode signs its upload/download URLs with this key; unset, each process makes its own.
    local_files_secret: str | None = Field(None, alias="CONFAB_FILES_SECRET")
    # The local server's worker processes: invocations at once (1: one at a time, in the server's own process).
    local_workers: int = Field(4, alias="LOCAL_WORKERS", ge=1, le=8)
    # Maintenance: seconds between local runs (0: never), the time budget of one run, rows per transaction.
    maintenance_interval_s: int = Field(3600, alias="MAINTENANCE_INTERVAL_SECONDS", ge=0)
    maintenance_time_budget_s: float = Field(120, alias="MAINTENANCE_TIME_BUDGET_SECONDS", gt=0, le=840)
    maintenance_batch_size: int = Field(10_000, alias="MAINTENANCE_BATCH_SIZE", ge=1, le=50_000)
    maintenance_conversation_batch_size: int = Field(50, alias="MAINTENANCE_CONVERSATION_BATCH_SIZE", ge=1)

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def is_local(self) -> bool:
        return self.stage in ("local", "test")

    @model_validator(mode="after")
    def _check_secrets_source(self) -> Settings:
        # Fail at cold start, not on the first request, when AWS stages lack a secret source.
        if not self.is_local and self.jwt_secret and not self.jwt_secret_arn:
            raise ValueError("JWT_SECRET is for local mode only; set JWT_SECRET_ARN in AWS stages")
        if self.jwt_secret and len(self.jwt_secret.encode()) < MIN_KEY_BYTES:
            raise ValueError(f"JWT_SECRET must be at least {MIN_KEY_BYTES} bytes, as a generated key is")
        if not self.is_local and self.allow_private_model_endpoints:
            raise ValueError("ALLOW_PRIVATE_MODEL_ENDPOINTS is for local mode only")
        return self


@cache
def get_settings() -> Settings:
    """The process-wide settings, built on first use."""
    return Settings()
