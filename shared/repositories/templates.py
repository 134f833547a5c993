"""Agent templates and each user's preferences for them (the premium check is in shared/repositories/licenses.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from pydantic import BaseModel

TEMPLATE_COLUMNS = """
    id, template_name, display_name, description, prompt_template, icon_url, category, is_premium_only,
    variant_type, is_active, created_at, updated_at
"""

GET_TEMPLATE = f"SELECT {TEMPLATE_COLUMNS} FROM agent_templates WHERE id = %(id)s"  # noqa: S608

LIST_TEMPLATES = f"""
SELECT {TEMPLATE_COLUMNS} FROM agent_templates
WHERE (%(active_only)s = false OR is_active)
  AND (%(after)s::text IS NULL OR template_name > %(after)s)
ORDER BY template_name
LIMIT %(limit)s
"""  # noqa: S608

INSERT_TEMPLATE = f"""
INSERT INTO agent_templates (template_name, display_name, description, prompt_template, icon_url, category,
                             is_premium_only, variant_type, is_active)
VALUES (%(template_name)s, %(display_name)s, %(description)s, %(prompt_template)s, %(icon_url)s, %(category)s,
        %(is_premium_only)s, %(variant_type)s, %(is_active)s)
RETURNING {TEMPLATE_COLUMNS}
"""  # noqa: S608

TEMPLATE_UPDATABLE = (
    "template_name",
    "display_name",
    "description",
    "prompt_template",
    "icon_url",
    "category",
    "is_premium_only",
    "variant_type",
    "is_active",
)


PREFERENCE_COLUMNS = "template_id, is_enabled, usage_count, last_used_at, created_at, updated_at"

GET_PREFERENCE = f"""
SELECT {PREFERENCE_COLUMNS} FROM user_template_preferences WHERE user_id = %(user_id)s AND template_id = %(template_id)s
"""  # noqa: S608

PUT_PREFERENCE = f"""
INSERT INTO user_template_preferences (user_id, template_id, is_enabled)
VALUES (%(user_id)s, %(template_id)s, %(is_enabled)s)
ON CONFLICT (user_id, template_id) DO UPDATE SET is_enabled = EXCLUDED.is_enabled
RETURNING {PREFERENCE_COLUMNS}
"""  # noqa: S608

COUNT_USE = """
INSERT INTO user_template_preferences (user_id, template_id, usage_count, last_used_at)
VALUES (%(user_id)s, %(template_id)s, 1, now())
ON CONFLICT (user_id, template_id) DO UPDATE
SET usage_count = user_template_preferences.usage_count + 1, last_used_at = now()
"""


class TemplateRow(BaseModel):
    id: UUID
    template_name: str
    display_name: str | None
    description: str
    prompt_template: str
    icon_url: str | None
    category: str | None
    is_premium_only: bool
    variant_type: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


class PreferenceRow(BaseModel):
    template_id: UUID
    is_enabled: bool
    usage_count: int
    last_used_at: datetime | None
    created_at: datetime
    updated_at: datetime


class TemplatesRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def get(self, id: UUID) -> TemplateRow | None:
        with self.conn.cursor(row_factory=class_row(TemplateRow)) as cur:
            return cur.execute(GET_TEMPLATE, {"id": id}).fetchone()

    def list(self, *, active_only: bool, after: str | None, limit: int) -> list[TemplateRow]:
        with self.conn.cursor(row_factory=class_row(TemplateRow)) as cur:
            return cur.execute(LIST_TEMPLATES, {"active_only": active_only, "after": after, "limit": limit}).fetchall()

    def add(self, values: dict[str, Any]) -> TemplateRow:
        with self.conn.cursor(row_factory=class_row(TemplateRow)) as cur:
            row = cur.execute(INSERT_TEMPLATE, values).fetchone()
        assert row is not None
        return row

    def update(self, id: UUID, changes: dict[str, Any]) -> TemplateRow | None:
        from psycopg import sql

        columns = [c for c in TEMPLATE_UPDATABLE if c in changes]
        if not columns:
            return self.get(id)
        statement = sql.SQL("UPDATE agent_templates SET {} WHERE id = %(id)s RETURNING {}").format(
            sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in columns),
            sql.SQL(TEMPLATE_COLUMNS),
        )
        with self.conn.cursor(row_factory=class_row(TemplateRow)) as cur:
            return cur.execute(statement, {**changes, "id": id}).fetchone()

    def preference(self, user_id: UUID, template_id: UUID) -> PreferenceRow | None:
        with self.conn.cursor(row_factory=class_row(PreferenceRow)) as cur:
            return cur.execute(GET_PREFERENCE, {"user_id": user_id, "template_id": template_id}).fetchone()

    def put_preference(self, user_id: UUID, template_id: UUID, is_enabled: bool) -> PreferenceRow:
        params = {"user_id": user_id, "template_id": template_id, "is_enabled": is_enabled}
        with self.conn.cursor(row_factory=class_row(PreferenceRow)) as cur:
            row = cur.execute(PUT_PREFERENCE, params).fetchone()
        assert row is not None
        return row

    def count_use(self, user_id: UUID, template_id: UUID) -> None:
        """Queued without waiting for a result: it may share a pipelined unit of work's one round trip."""
        self.conn.execute(COUNT_USE, {"user_id": user_id, "template_id": template_id})
