"""The model catalog and deployed resources: admins write, signed-in users read (system prompts for admins only)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from shared.auth.principal import Principal
from shared.db import Database, UnitOfWork
from shared.errors import ConflictError, NotFoundError, UnprocessableError
from shared.models.json_values import JsonObject
from shared.models.money import Money
from shared.models.strict import Strict
from shared.pagination import Page, decode_cursor, page_as, page_limit, page_of
from shared.providers.endpoints import EndpointRefused, Resolver, check_endpoint_url, resolve_host
from shared.repositories.catalog import CatalogRepository, ModelRow, ResourceRow
from shared.services import admin_rights
from shared.settings import Settings

ProviderKind = Literal["bedrock", "sagemaker", "openai-compatible", "local"]
ResourceKind = Literal["bedrock", "sagemaker", "nvidia-nim"]
Price = Decimal

LOCAL_MODEL_ID = "local-echo"


class ModelIn(Strict):
    model_id: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._:/@-]+$")
    display_name: str | None = Field(None, max_length=255)
    provider: ProviderKind = "local"
    provider_model_id: str | None = Field(None, max_length=512)
    deployed_resource_id: UUID | None = None
    system_prompt: str | None = Field(None, max_length=50_000)
    per_1k_input_tokens_usd: Money = Field(Decimal(0), ge=0, max_digits=10, decimal_places=6)
    per_1k_output_tokens_usd: Money = Field(Decimal(0), ge=0, max_digits=10, decimal_places=6)
    per_1k_cached_input_tokens_usd: Money | None = Field(None, ge=0, max_digits=10, decimal_places=6)
    context_window_tokens: int = Field(8192, gt=0, le=10_000_000)
    max_output_tokens: int = Field(1024, gt=0, le=1_000_000)
    is_active: bool = True
    base_url: str | None = Field(None, max_length=2000)
    api_key_secret_arn: str | None = Field(None, max_length=2048, pattern=r"^arn:aws[a-z-]*:secretsmanager:")


class ModelPatch(Strict):
    display_name: str | None = Field(None, max_length=255)
    provider: ProviderKind | None = None
    provider_model_id: str | None = Field(None, max_length=512)
    deployed_resource_id: UUID | None = None
    system_prompt: str | None = Field(None, max_length=50_000)
    per_1k_input_tokens_usd: Money | None = Field(None, ge=0, max_digits=10, decimal_places=6)
    per_1k_output_tokens_usd: Money | None = Field(None, ge=0, max_digits=10, decimal_places=6)
    per_1k_cached_input_tokens_usd: Money | None = Field(None, ge=0, max_digits=10, decimal_places=6)
    context_window_tokens: int | None = Field(None, gt=0, le=10_000_000)
    max_output_tokens: int | None = Field(None, gt=0, le=1_000_000)
    is_active: bool | None = None
    base_url: str | None = Field(None, max_length=2000)
    api_key_secret_arn: str | None = Field(None, max_length=2048, pattern=r"^arn:aws[a-z-]*:secretsmanager:")


MODEL_NON_NULL = (
    "provider",
    "per_1k_input_tokens_usd",
    "per_1k_output_tokens_usd",
    "context_window_tokens",
    "max_output_tokens",
    "is_active",
)


class ModelOut(BaseModel):
    id: UUID
    model_id: str
    display_name: str | None
    provider: str
    provider_model_id: str | None
    deployed_resource_id: UUID | None
    per_1k_input_tokens_usd: Money
    per_1k_output_tokens_usd: Money
    per_1k_cached_input_tokens_usd: Money | None
    context_window_tokens: int
    max_output_tokens: int
    is_active: bool
    created_at: datetime
    updated_at: datetime
    # Admins only: the system prompt and where the model is reached.
    system_prompt: str | None = None
    base_url: str | None = None
    api_key_secret_arn: str | None = None


class ResourceIn(Strict):
    resource_name: str = Field(min_length=1, max_length=255)
    resource_type: ResourceKind
    conversation_id: UUID | None = None
    aws_resource_id: str | None = Field(None, max_length=2048)
    instance_type: str | None = Field(None, max_length=100)
    region: str | None = Field(None, max_length=50, pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
    status: str = Field("pending", min_length=1, max_length=50)
    endpoint_url: str | None = Field(None, max_length=2000)
    estimated_hourly_cost: Money | None = Field(None, ge=0, max_digits=10, decimal_places=4)
    deployment_config: JsonObject = Field(default_factory=dict)
    is_active: bool = True


class ResourcePatch(Strict):
    resource_name: str | None = Field(None, min_length=1, max_length=255)
    aws_resource_id: str | None = Field(None, max_length=2048)
    instance_type: str | None = Field(None, max_length=100)
    region: str | None = Field(None, max_length=50, pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
    status: str | None = Field(None, min_length=1, max_length=50)
    endpoint_url: str | None = Field(None, max_length=2000)
    estimated_hourly_cost: Money | None = Field(None, ge=0, max_digits=10, decimal_places=4)
    deployment_config: JsonObject | None = None
    is_active: bool | None = None


RESOURCE_NON_NULL = ("resource_name", "status", "deployment_config", "is_active")


class ResourceOut(BaseModel):
    id: UUID
    conversation_id: UUID | None
    user_id: UUID | None
    resource_name: str
    resource_type: str
    aws_resource_id: str | None
    instance_type: str | None
    region: str | None
    status: str
    endpoint_url: str | None
    estimated_hourly_cost: Money | None
    deployment_config: dict[str, Any]
    is_active: bool
    created_at: datetime
    updated_at: datetime


CATALOG_ADMINS = "Only admins may change the catalog."


def require_admin(principal: Principal) -> UUID:
    return admin_rights.require_admin(principal, CATALOG_ADMINS)


def confirm_admin(uow: UnitOfWork, principal: Principal, *, write: bool) -> None:
    admin_rights.confirm_admin(uow, principal, write=write, detail=CATALOG_ADMINS)


def _model_out(row: ModelRow, *, admin: bool) -> ModelOut:
    data = row.model_dump()
    if not admin:
        data.update(system_prompt=None, base_url=None, api_key_secret_arn=None)
    return ModelOut.model_validate(data)


def _check_url(url: str | None, field: str, settings: Settings, resolver: Resolver) -> None:
    if url is None or settings.allow_private_model_endpoints:
        return
    try:
        check_endpoint_url(url, resolver=resolver)
    except EndpointRefused as exc:
        raise UnprocessableError(str(exc), errors=[{"loc": ["body", field], "type": "endpoint_refused"}]) from None


def _check_secret(arn: str | None, settings: Settings) -> None:
    """A model's API-key secret must be one the deployed functions may read (their grant names this prefix)."""
    prefix = settings.provider_secret_arn_prefix
    if arn is None or not prefix or arn.startswith(prefix):
        return
    raise UnprocessableError(
        f"The API key's secret must be named under {prefix.rsplit(':', 1)[-1]} (the functions may read no other).",
        errors=[{"loc": ["body", "api_key_secret_arn"], "type": "secret_not_readable"}],
    )


def _check_output_fits(context_window_tokens: int, max_output_tokens: int) -> None:
    """A completion asks for max_output_tokens of answer unless the client sends fewer, and the context gets the
    window less that: a model whose output fills its window refused every request a client sent as it is."""
    if max_output_tokens >= context_window_tokens:
        raise UnprocessableError(
            "max_output_tokens must be less than context_window_tokens: the context gets the window less the answer.",
            errors=[{"loc": ["body", "max_output_tokens"], "type": "output_exceeds_context_window"}],
        )


def _check_reachable(row: ModelRow) -> None:
    """An openai-compatible model is called at its base_url, else at its deployed resource's endpoint_url: one with
    neither was stored, and every completion on it was a 502 (no_base_url) until an admin noticed."""
    if row.provider == "openai-compatible" and row.endpoint is None:
        message = "An openai-compatible model needs a base_url, or a deployed resource that has an endpoint_url."
        raise UnprocessableError(message, errors=[{"loc": ["body", "base_url"], "type": "no_endpoint"}])


# A PATCH of one of these is checked with _check_reachable (any other, a deactivation say, goes through as it is).
ENDPOINT_FIELDS = frozenset({"provider", "base_url", "deployed_resource_id"})


def list_models(db: Database, principal: Principal, *, cursor: str | None, limit: int | None) -> Page[ModelOut]:
    principal.require_user()
    size = page_limit(limit)
    after = decode_cursor(cursor, (str,))

    def read(uow: UnitOfWork) -> tuple[bool, list[ModelRow]]:
        # Inactive models and where each is reached, for an account that is an admin now (admin_rights).
        admin = admin_rights.admin_role_now(uow, principal, write=False) is not None
        rows = CatalogRepository(uow.conn).list_models(
            active_only=not admin, after=after[0] if after else None, limit=size + 1
        )
        return admin, rows

    admin, rows = db.read(read)
    return page_as(page_of(rows, size, lambda r: (r.model_id,)), lambda r: _model_out(r, admin=admin))


def create_model(
    db: Database, principal: Principal, body: ModelIn, settings: Settings, resolver: Resolver = resolve_host
) -> ModelOut:
    user_id = require_admin(principal)
    _check_output_fits(body.context_window_tokens, body.max_output_tokens)
    _check_url(body.base_url, "base_url", settings, resolver)
    _check_secret(body.api_key_secret_arn, settings)

    def work(uow: UnitOfWork) -> ModelOut:
        confirm_admin(uow, principal, write=True)
        repo = CatalogRepository(uow.conn)
        new_id = repo.add_model({**body.model_dump(), "updated_by": user_id})
        row = repo.model(new_id)
        assert row is not None
        _check_reachable(row)  # a refusal rolls the insert back
        return _model_out(row, admin=True)

    return db.transact(work)


def update_model(
    db: Database,
    principal: Principal,
    id: UUID,
    body: ModelPatch,
    settings: Settings,
    resolver: Resolver = resolve_host,
) -> ModelOut:
    require_admin(principal)
    body.refuse_nulls(*MODEL_NON_NULL)
    changes = body.model_dump(exclude_unset=True)
    _check_url(changes.get("base_url"), "base_url", settings, resolver)
    _check_secret(changes.get("api_key_secret_arn"), settings)

    def work(uow: UnitOfWork) -> ModelOut:
        confirm_admin(uow, principal, write=True)
        repo = CatalogRepository(uow.conn)
        if not repo.update_model(id, changes):
            raise NotFoundError()
        row = repo.model(id)
        assert row is not None
        # Checked on the row as changed (the update locked it), so two PATCHes, one of each field, cannot pass
        # the check apart; a refusal rolls the change back. Only when the PATCH sets either: a row stored before
        # the check can still be deactivated or renamed as it is.
        if {"context_window_tokens", "max_output_tokens"} & changes.keys():
            _check_output_fits(row.context_window_tokens, row.max_output_tokens)
        if ENDPOINT_FIELDS & changes.keys():
            _check_reachable(row)
        return _model_out(row, admin=True)

    return db.transact(work)


def seed_local_model(db: Database) -> None:
    """The local provider's model, so a fresh `make dev` has a usable model (idempotent)."""
    db.transact(
        lambda uow: CatalogRepository(uow.conn).add_local_model_if_absent(
            LOCAL_MODEL_ID, "Local echo (deterministic, no network)", "You are Confab's local test model."
        )
    )


def list_resources(db: Database, principal: Principal, *, cursor: str | None, limit: int | None) -> Page[ResourceOut]:
    require_admin(principal)
    size = page_limit(limit)
    after = decode_cursor(cursor, (datetime, UUID))

    def read(uow: UnitOfWork) -> list[ResourceRow]:
        confirm_admin(uow, principal, write=False)
        return CatalogRepository(uow.conn).list_resources(after=after, limit=size + 1)

    return page_as(page_of(db.read(read), size, lambda r: (r.created_at, r.id)), _resource_out)


def _resource_out(row: ResourceRow | None) -> ResourceOut:
    if row is None:
        raise NotFoundError()
    return ResourceOut.model_validate(row.model_dump())


def get_resource(db: Database, principal: Principal, id: UUID) -> ResourceOut:
    require_admin(principal)

    def read(uow: UnitOfWork) -> ResourceOut:
        confirm_admin(uow, principal, write=False)
        return _resource_out(CatalogRepository(uow.conn).resource(id))

    return db.read(read)


def create_resource(
    db: Database, principal: Principal, body: ResourceIn, settings: Settings, resolver: Resolver = resolve_host
) -> ResourceOut:
    user_id = require_admin(principal)
    _check_url(body.endpoint_url, "endpoint_url", settings, resolver)
    values = {**body.model_dump(), "user_id": user_id}

    def work(uow: UnitOfWork) -> ResourceOut:
        confirm_admin(uow, principal, write=True)
        return _resource_out(CatalogRepository(uow.conn).add_resource(values))

    return db.transact(work)


def update_resource(
    db: Database,
    principal: Principal,
    id: UUID,
    body: ResourcePatch,
    settings: Settings,
    resolver: Resolver = resolve_host,
) -> ResourceOut:
    require_admin(principal)
    body.refuse_nulls(*RESOURCE_NON_NULL)
    changes = body.model_dump(exclude_unset=True)
    _check_url(changes.get("endpoint_url"), "endpoint_url", settings, resolver)

    def work(uow: UnitOfWork) -> ResourceOut:
        confirm_admin(uow, principal, write=True)
        repo = CatalogRepository(uow.conn)
        if "endpoint_url" in changes and changes["endpoint_url"] is None:
            _refuse_if_models_call_it(repo, id, "have its endpoint_url removed")
        return _resource_out(repo.update_resource(id, changes))

    return db.transact(work)


def _refuse_if_models_call_it(repo: CatalogRepository, id: UUID, change: str) -> None:
    """409 naming the openai-compatible models called at the resource's endpoint (they have no base_url): without
    it every completion on them would answer 502 no_base_url. 404 for an unknown resource."""
    models = repo.models_reached_through(id)
    if models is None:
        raise NotFoundError()
    if models:
        raise ConflictError(
            f"The resource cannot {change}: models are called at its endpoint_url ({', '.join(models[:10])}). "
            "Give them a base_url, another resource, or delete them first.",
            reason="resource_in_use",
            models=len(models),
        )


def delete_resource(db: Database, principal: Principal, id: UUID) -> None:
    require_admin(principal)

    def work(uow: UnitOfWork) -> None:
        confirm_admin(uow, principal, write=True)
        repo = CatalogRepository(uow.conn)
        _refuse_if_models_call_it(repo, id, "be deleted")
        if not repo.delete_resource(id):
            raise NotFoundError()

    db.transact(work)
