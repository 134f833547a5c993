"""Code-execution records and deep-analysis reports (seed 002)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel

EXECUTION_COLUMNS = """
    e.id, e.message_id, e.conversation_id, e.user_id, e.initial_code, e.latest_code, e.is_successful, e.output,
    e.model_provider, e.model_name, e.failed_agents, e.error_messages, e.created_at, e.updated_at
"""

# A record's writer takes part in its conversation, checked as conversation writes are (ConversationsRepository's
# LOCKED_ACCESS): the conversation's row, then the writer's participant row, locked until the write commits, so a
# removal cannot commit in between, and a check that waited for one finds no row.
IS_PARTICIPANT = """
SELECT 1 FROM conversations c
JOIN participants p ON p.conversation_id = c.id AND p.user_id = %(user_id)s
WHERE c.id = %(conversation_id)s
FOR KEY SHARE OF c, p
"""

MESSAGE_IN_CONVERSATION = """
SELECT EXISTS (SELECT 1 FROM messages WHERE id = %(message_id)s AND conversation_id = %(conversation_id)s)
"""

INSERT_EXECUTION = f"""
INSERT INTO code_executions AS e (
    message_id, conversation_id, user_id, initial_code, latest_code, is_successful, output,
    model_provider, model_name, failed_agents, error_messages
)
VALUES (%(message_id)s, %(conversation_id)s, %(user_id)s, %(initial_code)s, %(latest_code)s, %(is_successful)s,
        %(output)s, %(model_provider)s, %(model_name)s, %(failed_agents)s, %(error_messages)s)
RETURNING {EXECUTION_COLUMNS}
"""  # noqa: S608

# Visible to the participants of its conversation.
GET_EXECUTION = f"""
SELECT {EXECUTION_COLUMNS}
FROM code_executions e
JOIN participants p ON p.conversation_id = e.conversation_id AND p.user_id = %(user_id)s
WHERE e.id = %(id)s
"""  # noqa: S608

# The record before its author changes it, locked as IS_PARTICIPANT locks (conversation, then participant).
LOCK_EXECUTION = f"""
SELECT {EXECUTION_COLUMNS}
FROM code_executions e
JOIN conversations c ON c.id = e.conversation_id
JOIN participants p ON p.conversation_id = e.conversation_id AND p.user_id = %(user_id)s
WHERE e.id = %(id)s
FOR KEY SHARE OF c, p
"""  # noqa: S608

# The caller's own records, of conversations the caller is still in: a record stays visible to its
# conversation's participants only, as GET_EXECUTION has it, even to its author after leaving.
LIST_EXECUTIONS = f"""
SELECT {EXECUTION_COLUMNS}
FROM code_executions e
JOIN participants p ON p.conversation_id = e.conversation_id AND p.user_id = %(user_id)s
WHERE e.user_id = %(user_id)s
  AND (%(conversation_id)s::uuid IS NULL OR e.conversation_id = %(conversation_id)s)
  AND (%(after_created)s::timestamptz IS NULL OR (e.created_at, e.id) < (%(after_created)s, %(after_id)s))
ORDER BY e.created_at DESC, e.id DESC
LIMIT %(limit)s
"""  # noqa: S608

EXECUTION_UPDATABLE = ("latest_code", "is_successful", "output", "failed_agents", "error_messages")

REPORT_COLUMNS = """
    id, report_uuid, user_id, goal, status, start_time, end_time, duration_seconds, deep_questions, deep_plan,
    summaries, analysis_code, plotly_figures, synthesis, final_conclusion, html_report, progress_percentage,
    total_tokens_used, estimated_cost, credits_consumed, created_at, updated_at
"""

INSERT_REPORT = f"""
INSERT INTO deep_analysis_reports (report_uuid, user_id, goal, deep_questions, deep_plan)
VALUES (%(report_uuid)s, %(user_id)s, %(goal)s, %(deep_questions)s, %(deep_plan)s)
ON CONFLICT (report_uuid) DO NOTHING
RETURNING {REPORT_COLUMNS}
"""  # noqa: S608

REPORT_BY_UUID = f"SELECT {REPORT_COLUMNS} FROM deep_analysis_reports WHERE report_uuid = %(report_uuid)s"  # noqa: S608

REPORT_FOR_OWNER = f"""
SELECT {REPORT_COLUMNS} FROM deep_analysis_reports WHERE id = %(id)s AND user_id = %(user_id)s
"""  # noqa: S608

LOCK_REPORT_FOR_OWNER = REPORT_FOR_OWNER.rstrip() + " FOR UPDATE"

LIST_REPORTS = f"""
SELECT {REPORT_COLUMNS} FROM deep_analysis_reports
WHERE user_id = %(user_id)s
  AND (%(after_created)s::timestamptz IS NULL OR (created_at, id) < (%(after_created)s, %(after_id)s))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
"""  # noqa: S608

REPORT_UPDATABLE = (
    "status",
    "deep_questions",
    "deep_plan",
    "summaries",
    "analysis_code",
    "plotly_figures",
    "synthesis",
    "final_conclusion",
    "html_report",
    "progress_percentage",
    "total_tokens_used",
    "estimated_cost",
    "credits_consumed",
)
JSON_COLUMNS = frozenset({"summaries", "plotly_figures", "synthesis", "failed_agents", "error_messages"})


class ExecutionRow(BaseModel):
    id: UUID
    message_id: int | None
    conversation_id: UUID
    user_id: UUID | None
    initial_code: str | None
    latest_code: str | None
    is_successful: bool
    output: str | None
    model_provider: str | None
    model_name: str | None
    failed_agents: Any
    error_messages: Any
    created_at: datetime
    updated_at: datetime


class ReportRow(BaseModel):
    id: UUID
    report_uuid: str
    user_id: UUID
    goal: str
    status: str
    start_time: datetime
    end_time: datetime | None
    duration_seconds: int | None
    deep_questions: str | None
    deep_plan: str | None
    summaries: Any
    analysis_code: str | None
    plotly_figures: Any
    synthesis: Any
    final_conclusion: str | None
    html_report: str | None
    progress_percentage: int
    total_tokens_used: int
    estimated_cost: Decimal
    credits_consumed: int
    created_at: datetime
    updated_at: datetime


def _json(values: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if k in JSON_COLUMNS and v is not None else v for k, v in values.items()}


def _keyset(after: tuple[datetime, UUID] | None) -> dict[str, Any]:
    return {"after_created": after[0] if after else None, "after_id": after[1] if after else None}


class RecordsRepository:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def is_participant(self, conversation_id: UUID, user_id: UUID) -> bool:
        """Whether the user takes part in the conversation; if so, held until commit (IS_PARTICIPANT)."""
        row = self.conn.execute(IS_PARTICIPANT, {"conversation_id": conversation_id, "user_id": user_id}).fetchone()
        return row is not None

    def message_in_conversation(self, message_id: int, conversation_id: UUID) -> bool:
        params = {"message_id": message_id, "conversation_id": conversation_id}
        row = self.conn.execute(MESSAGE_IN_CONVERSATION, params).fetchone()
        return bool(row and row[0])

    def add_execution(self, values: dict[str, Any]) -> ExecutionRow:
        with self.conn.cursor(row_factory=class_row(ExecutionRow)) as cur:
            row = cur.execute(INSERT_EXECUTION, _json(values)).fetchone()
        assert row is not None
        return row

    def execution(self, id: UUID, user_id: UUID, *, lock: bool = False) -> ExecutionRow | None:
        with self.conn.cursor(row_factory=class_row(ExecutionRow)) as cur:
            return cur.execute(LOCK_EXECUTION if lock else GET_EXECUTION, {"id": id, "user_id": user_id}).fetchone()

    def list_executions(
        self, user_id: UUID, conversation_id: UUID | None, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[ExecutionRow]:
        params = {"user_id": user_id, "conversation_id": conversation_id, "limit": limit, **_keyset(after)}
        with self.conn.cursor(row_factory=class_row(ExecutionRow)) as cur:
            return cur.execute(LIST_EXECUTIONS, params).fetchall()

    def update_execution(self, id: UUID, changes: dict[str, Any]) -> None:
        self._update("code_executions", EXECUTION_UPDATABLE, id, changes)

    def _update(self, table: str, allowed: tuple[str, ...], id: UUID, changes: dict[str, Any]) -> None:
        columns = [c for c in allowed if c in changes]
        extra = [sql.SQL(e) for e in changes.get("_sql", ())]
        if not columns and not extra:
            return
        assignments = [sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in columns]
        statement = sql.SQL("UPDATE {} SET {} WHERE id = %(id)s").format(
            sql.Identifier(table), sql.SQL(", ").join(assignments + extra)
        )
        self.conn.execute(statement, {**_json({c: changes[c] for c in columns}), "id": id})

    def add_report(self, values: dict[str, Any]) -> ReportRow | None:
        """The new report, or None when the report_uuid exists already."""
        with self.conn.cursor(row_factory=class_row(ReportRow)) as cur:
            return cur.execute(INSERT_REPORT, values).fetchone()

    def report_by_uuid(self, report_uuid: str) -> ReportRow | None:
        with self.conn.cursor(row_factory=class_row(ReportRow)) as cur:
            return cur.execute(REPORT_BY_UUID, {"report_uuid": report_uuid}).fetchone()

    def report(self, id: UUID, user_id: UUID, *, lock: bool = False) -> ReportRow | None:
        with self.conn.cursor(row_factory=class_row(ReportRow)) as cur:
            query = LOCK_REPORT_FOR_OWNER if lock else REPORT_FOR_OWNER
            return cur.execute(query, {"id": id, "user_id": user_id}).fetchone()

    def list_reports(self, user_id: UUID, after: tuple[datetime, UUID] | None, limit: int) -> list[ReportRow]:
        with self.conn.cursor(row_factory=class_row(ReportRow)) as cur:
            return cur.execute(LIST_REPORTS, {"user_id": user_id, "limit": limit, **_keyset(after)}).fetchall()

    def update_report(self, id: UUID, changes: dict[str, Any], *, finish: bool) -> None:
        """Apply changes; `finish` sets end_time and the duration computed by the database clock."""
        extra = (
            ("end_time = now()", "duration_seconds = greatest(0, extract(epoch FROM now() - start_time))::integer")
            if finish
            else ()
        )
        self._update("deep_analysis_reports", REPORT_UPDATABLE, id, {**changes, "_sql": extra})
