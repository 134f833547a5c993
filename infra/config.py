"""Stage settings, read from CDK context (`-c stage=prod -c nat=true`); everything else has a stage default."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

# One place for the runtime (the newest Lambda offers; cdk-nag L1 asks for it): the bundler installs wheels
# for the same Python version.
RUNTIME = lambda_.Runtime.PYTHON_3_14
PYTHON_VERSION = "3.14"
ARCHITECTURE = lambda_.Architecture.ARM_64

SERVICE_NAME = "confab"
METRICS_NAMESPACE = "Confab"
DB_NAME = "confab"
DB_USER = "confab"  # the master user: owns the schema; only the migration trigger connects as it
APP_DB_USER = "confab_app"  # what every other function connects as: rows only (shared/app_role.py)

# The aggregator's timeout sets the usage queue's visibility timeout (AWS asks for at least 6x).
AGGREGATOR_TIMEOUT = Duration.seconds(30)
VISIBILITY_TIMEOUT_FACTOR = 6
# Receives before a usage batch goes to the dead-letter queue: 20 x the visibility timeout (180 s) is an hour,
# so a database outage shorter than that sends no valid event there.
MAX_RECEIVE_COUNT = 20


@dataclass(frozen=True)
class StageConfig:
    stage: str
    nat: bool
    use_proxy: bool
    instance_type: ec2.InstanceType
    multi_az: bool
    # Performance Insights (Database Insights standard mode): 7 days of database load by wait event and SQL, free.
    # Off in dev, where a t4g.micro may not support it on every engine and nobody tunes queries.
    performance_insights: bool
    allocated_storage_gb: int
    backup_retention: Duration
    deletion_protection: bool
    removal_policy: RemovalPolicy
    log_retention: logs.RetentionDays
    endpoint_azs: int  # interface endpoints cost per AZ-hour: dev keeps one, prod one per AZ
    aggregator_max_concurrency: int
    throttle_rate: int
    throttle_burst: int
    waf: bool  # a web ACL in front of the API (infra/waf.py): about $10 a month, so prod only by default
    waf_rate_limit: int  # requests per client address per five minutes before WAF answers 429
    authorizer_cache_ttl_s: int
    cors_origins: tuple[str, ...]
    alarm_email: str | None
    bundle: bool
    # Concurrent executions reserved per function (route group name, or authorizer, usage_aggregator,
    # maintenance, migrate): none by default, since each one needs account headroom (docs/deploy.md).
    reserved_concurrency: Mapping[str, int]
    # Application settings (shared/settings.py names: MONTHLY_SPEND_LIMIT_USD, DEFAULT_MODEL_ID...) every function
    # gets in its environment; none by default, so each takes the setting's own default.
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"Confab-{self.stage}"

    @property
    def removal_policy_for_kept(self) -> RemovalPolicy:
        """Logs, the usage queues and the database secrets: kept when the stack goes, where data is protected
        (undelivered usage events, and the password of a snapshot restored later)."""
        return RemovalPolicy.RETAIN if self.deletion_protection else RemovalPolicy.DESTROY


DEFAULTS: dict[str, StageConfig] = {
    "dev": StageConfig(
        stage="dev",
        nat=False,
        use_proxy=False,  # the proxy bills at least 2 vCPUs (~$22/month); dev's few functions connect directly
        instance_type=ec2.InstanceType.of(ec2.InstanceClass.BURSTABLE4_GRAVITON, ec2.InstanceSize.MICRO),
        multi_az=False,
        performance_insights=False,
        allocated_storage_gb=20,
        backup_retention=Duration.days(1),
        deletion_protection=False,
        removal_policy=RemovalPolicy.DESTROY,
        log_retention=logs.RetentionDays.TWO_WEEKS,
        endpoint_azs=1,
        aggregator_max_concurrency=2,
        throttle_rate=50,
        throttle_burst=100,
        waf=False,
        waf_rate_limit=1000,
        authorizer_cache_ttl_s=60,
        cors_origins=("http://localhost:3000", "http://localhost:5173"),
        alarm_email=None,
        bundle=True,
        reserved_concurrency={},
    ),
    "prod": StageConfig(
        stage="prod",
        nat=False,
        use_proxy=True,
        instance_type=ec2.InstanceType.of(ec2.InstanceClass.BURSTABLE4_GRAVITON, ec2.InstanceSize.MEDIUM),
        multi_az=True,
        performance_insights=True,
        allocated_storage_gb=50,
        backup_retention=Duration.days(14),
        deletion_protection=True,
        removal_policy=RemovalPolicy.SNAPSHOT,
        log_retention=logs.RetentionDays.THREE_MONTHS,
        endpoint_azs=2,
        aggregator_max_concurrency=5,
        throttle_rate=500,
        throttle_burst=1000,
        waf=True,
        waf_rate_limit=3000,
        authorizer_cache_ttl_s=60,
        cors_origins=("*",),  # bearer tokens, no cookies; narrow it with -c cors_origins=https://app.example.com
        alarm_email=None,
        bundle=True,
        reserved_concurrency={},
    ),
}


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


RESERVED_CONCURRENCY_EXAMPLE = '{"authorizer": 20, "completions": 50}'


def _reserved_concurrency(value: Any) -> dict[str, int]:
    """A JSON object of function name to count: a string from `-c`, or an object from cdk.json."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict):
        raise ValueError(
            f"reserved_concurrency must be a JSON object of function name to count, such as "
            f"'{RESERVED_CONCURRENCY_EXAMPLE}'"
        )
    for name, count in value.items():
        # bool is an int in Python; a float such as 2.0 is not a count either.
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"reserved_concurrency[{name!r}] must be a positive integer, got {count!r}")
    return dict(value)


# Settings the stacks set themselves (stage, database, secrets, queue, bucket, origins, the provider deadline and
# secret prefix), and local-only ones: a `settings` context naming one is refused. A JWT key or a database URL in a
# function's environment would be a secret in plain text.
STACK_OWNED_SETTINGS = frozenset(
    {
        "CONFAB_STAGE", "POWERTOOLS_SERVICE_NAME", "AWS_REGION", "DATABASE_URL", "DB_HOST", "DB_PORT", "DB_NAME",
        "DB_USER", "DB_SECRET_ARN", "DB_IAM_AUTH", "APP_DB_SECRET_ARN", "DB_CONNECT_TIMEOUT", "DB_SSLMODE",
        "CONFAB_DATA_DIR", "CONFAB_MIGRATIONS_DIR", "CONFAB_STATE_DIR", "CONFAB_FILES_DIR", "JWT_SECRET",
        "JWT_SECRET_ARN", "USAGE_QUEUE_URL", "FILES_BUCKET", "CORS_ORIGINS", "PROVIDER_SECRET_ARN_PREFIX",
        "PROVIDER_TIMEOUT_SECONDS", "OPENAI_COMPATIBLE_API_KEY", "ALLOW_PRIVATE_MODEL_ENDPOINTS",
    }
)  # fmt: skip
SETTINGS_EXAMPLE = '{"MONTHLY_SPEND_LIMIT_USD": "25", "DEFAULT_MODEL_ID": "claude-haiku"}'


def _settings(value: Any) -> dict[str, str]:
    """A JSON object of setting name to value (a string from `-c`, or an object from cdk.json), each name one
    shared/settings.py reads and the stacks do not set, each value one it accepts: checked here, at synth, rather
    than by a function failing its cold start after the deploy."""
    from pydantic import ValidationError

    from shared.settings import Settings

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict):
        raise ValueError(f"settings must be a JSON object of setting name to value, such as '{SETTINGS_EXAMPLE}'")
    known = {str(f.alias).upper() for f in Settings.model_fields.values() if f.alias}
    settings: dict[str, str] = {}
    for name, setting in value.items():
        upper = str(name).upper()
        if upper not in known:
            raise ValueError(f"settings[{name!r}] is not a Confab setting (docs/deploy.md lists them)")
        if upper in STACK_OWNED_SETTINGS:
            raise ValueError(f"settings[{name!r}] is set by the stacks themselves or is local-only")
        if isinstance(setting, bool):
            setting = "true" if setting else "false"
        if not isinstance(setting, str | int | float) or setting is None:
            raise ValueError(f"settings[{name!r}] must be a string, number or boolean, got {setting!r}")
        settings[upper] = str(setting)
    try:
        Settings.model_validate({"CONFAB_STAGE": "prod", **settings})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"settings holds a value Confab would refuse: {problems}") from None
    return settings


def from_context(get: Any) -> StageConfig:
    """The stage's defaults with any context overrides; `get` is `node.try_get_context`."""
    stage = str(get("stage") or "dev")
    if stage not in DEFAULTS:
        raise ValueError(f"unknown stage {stage!r}: use one of {sorted(DEFAULTS)}")
    config = DEFAULTS[stage]
    overrides: dict[str, Any] = {}
    for key in ("nat", "use_proxy", "bundle", "multi_az", "performance_insights", "waf"):
        if get(key) is not None:
            overrides[key] = _flag(get(key))
    if get("instance_type"):
        overrides["instance_type"] = ec2.InstanceType(str(get("instance_type")))
    if get("authorizer_cache_ttl") is not None:
        overrides["authorizer_cache_ttl_s"] = int(get("authorizer_cache_ttl"))
    if get("waf_rate_limit") is not None:
        overrides["waf_rate_limit"] = int(get("waf_rate_limit"))
    if get("endpoint_azs") is not None:
        overrides["endpoint_azs"] = int(get("endpoint_azs"))
    if get("cors_origins"):
        overrides["cors_origins"] = tuple(o.strip() for o in str(get("cors_origins")).split(",") if o.strip())
    if get("alarm_email"):
        overrides["alarm_email"] = str(get("alarm_email"))
    if get("reserved_concurrency"):
        overrides["reserved_concurrency"] = _reserved_concurrency(get("reserved_concurrency"))
    if get("settings"):
        overrides["settings"] = _settings(get("settings"))
    return replace(config, **overrides)
