"""The composition root: builds settings and adapters once per warm container and hands them out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from shared.db import ConnectionProvider, ConninfoFactory, Database
from shared.events.publishers import DirectUsagePublisher, QueueUsagePublisher, SqsUsagePublisher
from shared.events.usage import UsageEvent, UsagePublisher
from shared.settings import Settings, get_settings

if TYPE_CHECKING:
    from shared.providers.registry import ProviderRegistry
    from shared.services.completions import CompletionService


def conninfo_factory(settings: Settings) -> ConninfoFactory:
    """Where connection parameters come from: DATABASE_URL, an IAM auth token, or a Secrets Manager secret."""
    if settings.database_url:
        url = settings.database_url
        return lambda: {"conninfo": url}
    if not settings.db_host:
        raise ValueError("Set DATABASE_URL, or DB_HOST with DB_IAM_AUTH or DB_SECRET_ARN")
    base: dict[str, Any] = {
        "host": settings.db_host,
        "port": settings.db_port,
        "dbname": settings.db_name,
        "user": settings.db_user,
        "sslmode": settings.db_sslmode,
    }
    if settings.db_iam_auth:
        return lambda: {**base, "password": _iam_token(settings)}
    if settings.db_secret_arn:
        arn = settings.db_secret_arn
        return lambda: {**base, **secret_credentials(arn)}
    raise ValueError("DB_HOST needs DB_IAM_AUTH=true or DB_SECRET_ARN")


def _iam_token(settings: Settings) -> str:
    # boto3 only on this path: a container on DATABASE_URL never pays for the import.
    import boto3

    client = boto3.client("rds", region_name=settings.aws_region)
    return str(
        client.generate_db_auth_token(
            DBHostname=settings.db_host, Port=settings.db_port, DBUsername=settings.db_user, Region=settings.aws_region
        )
    )


def secret_credentials(arn: str) -> dict[str, Any]:
    """libpq parameters (user, password, and host, port, dbname where given) from an RDS secret's JSON."""
    from shared.secrets import secret_json

    secret = secret_json(arn)
    creds: dict[str, Any] = {"user": secret["username"], "password": secret["password"]}
    for key, target in (("host", "host"), ("port", "port"), ("dbname", "dbname")):
        if secret.get(key):
            creds[target] = secret[key]
    return creds


class FlushablePublisher(UsagePublisher, Protocol):
    def flush(self, timeout: float | None = None) -> None: ...

    def close(self) -> None: ...


def build_usage_publisher(settings: Settings, db: Database) -> FlushablePublisher:
    """SQS when USAGE_QUEUE_URL is set; otherwise an in-process queue locally, or direct recording in AWS."""
    from shared.services.usage import record_usage

    def sink(events: Sequence[UsageEvent]) -> object:
        return record_usage(db, events)

    if settings.usage_queue_url:
        return SqsUsagePublisher(settings.usage_queue_url, sink, region=settings.aws_region)
    if settings.is_local:
        return QueueUsagePublisher(sink, batch_size=settings.usage_local_batch_size, on_thread_exit=db.provider.discard)
    return DirectUsagePublisher(sink)


@dataclass
class Container:
    """What a warm container shares between invocations."""

    settings: Settings
    db: Database
    usage_publisher: FlushablePublisher

    def flush(self, timeout: float | None = 30) -> None:
        """Wait until every usage event published so far is recorded (tests, shutdown)."""
        self.usage_publisher.flush(timeout)

    def close(self) -> None:
        self.usage_publisher.close()
        self.db.close()


def build_container(settings: Settings) -> Container:
    """Build every adapter from settings; tests call this with their own settings."""
    provider = ConnectionProvider(
        conninfo_factory(settings),
        connect_timeout_s=settings.db_connect_timeout_s,
        application_name=settings.service_name,
    )
    db = Database(provider)
    return Container(settings=settings, db=db, usage_publisher=build_usage_publisher(settings, db))


@cache
def container() -> Container:
    """The process-wide container, built on first use."""
    return build_container(get_settings())


@cache
def completion_service() -> CompletionService:
    """The completion service of this warm container: shared database, provider clients and usage publisher."""
    from shared.services.completions import CompletionService

    built = container()
    return CompletionService(built.db, model_providers(), _usage_publisher(built), built.settings)


@cache
def model_providers() -> ProviderRegistry:
    """Provider clients, made once per warm container (boto3 clients on first use)."""
    from shared.providers.registry import ProviderRegistry

    return ProviderRegistry(container().settings)


def _usage_publisher(built: Container) -> UsagePublisher:
    return built.usage_publisher
