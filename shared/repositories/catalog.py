"""Model configurations and deployed resources."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel

MODEL_COLUMNS = """
    m.id, m.model_id, m.display_name, m.provider, m.provider_model_id, m.deployed_resource_id, m.system_prompt,
    m.per_1k_input_tokens_usd, m.per_1k_output_tokens_usd, m.per_1k_cached_input_tokens_usd,
    m.context_window_tokens, m.max_output_tokens, m.is_active, m.base_url, m.api_key_secret_arn,
    r.endpoint_url AS resource_endpoint_url, m.created_at, m.updated_at
"""

GET_MODEL_BY_MODEL_ID = f"""
SELECT {MODEL_COLUMNS}
FROM model_configurations m LEFT JOIN deployed_resources r ON r.id = m.deployed_resource_id
WHERE m.model_id = %(model_id)s
"""  # noqa: S608 (fixed column list)

GET_MODEL = f"""
SELECT {MODEL_COLUMNS}
FROM model_configurations m LEFT JOIN deployed_resources r ON r.id = m.deployed_resource_id
WHERE m.id = %(id)s
"""  # noqa: S608

LIST_MODELS = f"""
SELECT {MODEL_COLUMNS}
FROM model_configurations m LEFT JOIN deployed_resources r ON r.id = m.deployed_resource_id
WHERE (%(active_only)s = false OR m.is_active)
  AND (%(after)s::text IS NULL OR m.model_id > %(after)s)
ORDER BY m.model_id
LIMIT %(limit)s
"""  # noqa: S608

INSERT_MODEL = """
INSERT INTO model_configurations (
    model_id, display_name, provider, provider_model_id, deployed_resource_id, system_prompt,
    per_1k_input_tokens_usd, per_1k_output_tokens_usd, per_1k_cached_input_tokens_usd,
    context_window_tokens, max_output_tokens, is_active, base_url, api_key_secret_arn, updated_by
) VALUES (
    %(model_id)s, %(display_name)s, %(provider)s, %(provider_model_id)s, %(deployed_resource_id)s, %(system_prompt)s,
    %(per_1k_input_tokens_usd)s, %(per_1k_output_tokens_usd)s, %(per_1k_cached_input_tokens_usd)s,
    %(context_window_tokens)s, %(max_output_tokens)s, %(is_active)s, %(base_url)s, %(api_key_secret_arn)s,
    %(updated_by)s
)
RETURNING id
"""

INSERT_MODEL_IF_ABSENT = """
INSERT INTO model_configurations (model_id, display_name, provider, provider_model_id, system_prompt)
VALUES (%(model_id)s, %(display_name)s, 'local', %(model_id)s, %(system_prompt)s)
ON CONFLICT (model_id) DO NOTHING
"""

# Columns a PATCH may set; the statement is built from this fixed list only.
MODEL_UPDATABLE = (
    "display_name",
    "provider",
    "provider_model_id",
    "deployed_resource_id",
    "system_prompt",
    "per_1k_input_tokens_usd",
    "per_1k_output_tokens_usd",
    "per_1k_cached_input_tokens_usd",
    "context_window_tokens",
    "max_output_tokens",
    "is_active",
    "base_url",
    "api_key_secret_arn",
)

RESOURCE_COLUMNS = """
    id, conversation_id, user_id, resource_name, resource_type, aws_resource_id, instance_type, region, status,
    endpoint_url, estimated_hourly_cost, deployment_config, is_active, created_at, updated_at
"""

LIST_RESOURCES = f"""
SELECT {RESOURCE_COLUMNS} FROM deployed_resources
WHERE (%(after_created)s::timestamptz IS NULL OR (created_at, id) < (%(after_created)s, %(after_id)s))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
"""  # noqa: S608

GET_RESOURCE = f"SELECT {RESOURCE_COLUMNS} FROM deployed_resources WHERE id = %(id)s"  # noqa: S608

INSERT_RESOURCE = f"""
INSERT INTO deployed_resources (
    conversation_id, user_id, resource_name, resource_type, aws_resource_id, instance_type, region, status,
    endpoint_url, estimated_hourly_cost, deployment_config, is_active
) VALUES (
    %(conversation_id)s, %(user_id)s, %(resource_name)s, %(resource_type)s, %(aws_resource_id)s, %(instance_type)s,
    %(region)s, %(status)s, %(endpoint_url)s, %(estimated_hourly_cost)s, %(deployment_config)s, %(is_active)s
)
RETURNING {RESOURCE_COLUMNS}
"""  # noqa: S608

RESOURCE_UPDATABLE = (
    "resource_name",
    "aws_resource_id",
    "instance_type",
    "region",
    "status",
    "endpoint_url",
    "estimated_hourly_cost",
    "deployment_config",
    "is_active",
)

DELETE_RESOURCE = "DELETE FROM deployed_resources WHERE id = %(id)s RETURNING id"
# FOR UPDATE: a model being linked to the resource holds FOR KEY SHARE on its row (the foreign key) until it
# commits, and one linked later waits for this transaction: what MODELS_REACHED_THROUGH reads next is all there is.
LOCK_RESOURCE = "SELECT 1 FROM deployed_resources WHERE id = %(id)s FOR UPDATE"
# The openai-compatible models called at the resource's endpoint_url (they have no base_url of their own).
MODELS_REACHED_THROUGH = """
SELECT model_id FROM model_configurations
WHERE deployed_resource_id = %(id)s AND provider = 'openai-compatible' AND base_url IS NULL
ORDER BY model_id
"""


class ModelRow(BaseModel):
    id: UUID
    model_id: str
    display_name: str | None
    provider: str
    provider_model_id: str | None
    deployed_resource_id: UUID | None
    system_prompt: str | None
    per_1k_input_tokens_usd: Decimal
    per_1k_output_tokens_usd: Decimal
    per_1k_cached_input_tokens_usd: Decimal | None
    context_window_tokens: int
    max_output_tokens: int
    is_active: bool
    base_url: str | None
    api_key_secret_arn: str | None
    resource_endpoint_url: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def upstream_model(self) -> str:
        return self.provider_model_id or self.model_id

    @property
    def endpoint(self) -> str | None:
        return self.base_url or self.resource_endpoint_url


class ResourceRow(BaseModel):
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
    estimated_hourly_cost: Decimal | None
    deployment_config: dict[str, Any]
    is_active: bool
    created_at: datetime
    updated_at: datetime


def _update_statement(table: str, allowed: tuple[str, ...], changes: dict[str, Any], returning: str) -> Any:
    from psycopg import sql

    columns = [c for c in allowed if c in changes]
    assignments = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in columns)
    return sql.SQL("UPDATE {} SET {} WHERE id = %(id)s RETURNING {}").format(
        sql.Identifier(table), assignments, sql.SQL(returning)
    )


class CatalogRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def model_by_model_id(self, model_id: str) -> ModelRow | None:
        with self.conn.cursor(row_factory=class_row(ModelRow)) as cur:
            return cur.execute(GET_MODEL_BY_MODEL_ID, {"model_id": model_id}).fetchone()

    def model(self, id: UUID) -> ModelRow | None:
        with self.conn.cursor(row_factory=class_row(ModelRow)) as cur:
            return cur.execute(GET_MODEL, {"id": id}).fetchone()

    def list_models(self, *, active_only: bool, after: str | None, limit: int) -> list[ModelRow]:
        with self.conn.cursor(row_factory=class_row(ModelRow)) as cur:
            return cur.execute(LIST_MODELS, {"active_only": active_only, "after": after, "limit": limit}).fetchall()

    def add_model(self, values: dict[str, Any]) -> UUID:
        row = self.conn.execute(INSERT_MODEL, values).fetchone()
        assert row is not None
        return UUID(str(row[0]))

    def add_local_model_if_absent(self, model_id: str, display_name: str, system_prompt: str | None) -> None:
        self.conn.execute(
            INSERT_MODEL_IF_ABSENT, {"model_id": model_id, "display_name": display_name, "system_prompt": system_prompt}
        )

    def update_model(self, id: UUID, changes: dict[str, Any]) -> bool:
        if not any(c in changes for c in MODEL_UPDATABLE):
            return self.model(id) is not None
        statement = _update_statement("model_configurations", MODEL_UPDATABLE, changes, "id")
        return self.conn.execute(statement, {**changes, "id": id}).fetchone() is not None

    def list_resources(self, *, after: tuple[datetime, UUID] | None, limit: int) -> list[ResourceRow]:
        params = {"after_created": after[0] if after else None, "after_id": after[1] if after else None, "limit": limit}
        with self.conn.cursor(row_factory=class_row(ResourceRow)) as cur:
            return cur.execute(LIST_RESOURCES, params).fetchall()

    def resource(self, id: UUID) -> ResourceRow | None:
        with self.conn.cursor(row_factory=class_row(ResourceRow)) as cur:
            return cur.execute(GET_RESOURCE, {"id": id}).fetchone()

    def add_resource(self, values: dict[str, Any]) -> ResourceRow:
        values = {**values, "deployment_config": Jsonb(values.get("deployment_config") or {})}
        with self.conn.cursor(row_factory=class_row(ResourceRow)) as cur:
            row = cur.execute(INSERT_RESOURCE, values).fetchone()
        assert row is not None
        return row

    def update_resource(self, id: UUID, changes: dict[str, Any]) -> ResourceRow | None:
        if "deployment_config" in changes:
            changes = {**changes, "deployment_config": Jsonb(changes["deployment_config"] or {})}
        if not any(c in changes for c in RESOURCE_UPDATABLE):
            return self.resource(id)
        statement = _update_statement("deployed_resources", RESOURCE_UPDATABLE, changes, RESOURCE_COLUMNS)
        with self.conn.cursor(row_factory=class_row(ResourceRow)) as cur:
            return cur.execute(statement, {**changes, "id": id}).fetchone()

    def models_reached_through(self, id: UUID) -> list[str] | None:
        """The model_ids of the openai-compatible models called at the resource's endpoint (None: no such resource),
        with the resource locked against new links until commit."""
        if self.conn.execute(LOCK_RESOURCE, {"id": id}).fetchone() is None:
            return None
        return [row[0] for row in self.conn.execute(MODELS_REACHED_THROUGH, {"id": id})]

    def delete_resource(self, id: UUID) -> bool:
        return self.conn.execute(DELETE_RESOURCE, {"id": id}).fetchone() is not None
