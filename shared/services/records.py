"""Code-execution records (Confab stores them; it runs no code) and deep-analysis reports with their lifecycle."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, Field

from shared.auth.principal import Principal
from shared.db import Database, UnitOfWork
from shared.errors import ConflictError, NotFoundError, PayloadTooLargeError
from shared.models.json_values import JsonArray, JsonObject, JsonValue
from shared.models.money import Money
from shared.models.strict import Strict
from shared.pagination import (
    ANSWER_MAX_BYTES,
    Page,
    answer_bytes,
    decode_cursor,
    page_as,
    page_limit,
    page_of,
    page_within,
)
from shared.repositories.records import ExecutionRow, RecordsRepository, ReportRow

Status = Literal["pending", "running", "completed", "failed"]
# The only moves a report may make; staying in place is allowed while it is not finished.
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"pending", "running"}),
    "running": frozenset({"running", "completed", "failed"}),
    "completed": frozenset(),
    "failed": frozenset(),
}


class ExecutionIn(Strict):
    conversation_id: UUID
    message_id: int | None = Field(None, ge=1)
    initial_code: str | None = Field(None, max_length=1_000_000)
    latest_code: str | None = Field(None, max_length=1_000_000)
    is_successful: bool = False
    output: str | None = Field(None, max_length=1_000_000)
    model_provider: str | None = Field(None, max_length=100)
    model_name: str | None = Field(None, max_length=255)
    failed_agents: JsonArray = Field(default_factory=list)
    error_messages: JsonObject = Field(default_factory=dict)


class ExecutionPatch(Strict):
    latest_code: str | None = Field(None, max_length=1_000_000)
    is_successful: bool | None = None
    output: str | None = Field(None, max_length=1_000_000)
    failed_agents: JsonArray | None = None
    error_messages: JsonObject | None = None


class ExecutionOut(BaseModel):
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


class ReportIn(Strict):
    report_uuid: str = Field(min_length=1, max_length=100)
    goal: str = Field(min_length=1, max_length=20_000)
    deep_questions: str | None = Field(None, max_length=100_000)
    deep_plan: str | None = Field(None, max_length=100_000)


class ReportPatch(Strict):
    status: Status | None = None
    progress_percentage: int | None = Field(None, ge=0, le=100)
    deep_questions: str | None = Field(None, max_length=100_000)
    deep_plan: str | None = Field(None, max_length=100_000)
    summaries: JsonValue = None
    analysis_code: str | None = Field(None, max_length=1_000_000)
    plotly_figures: JsonValue = None
    synthesis: JsonValue = None
    final_conclusion: str | None = Field(None, max_length=1_000_000)
    html_report: str | None = Field(None, max_length=5_000_000)
    total_tokens_used: int | None = Field(None, ge=0, le=2_000_000_000)
    estimated_cost: Money | None = Field(None, ge=0, max_digits=12, decimal_places=6)
    credits_consumed: int | None = Field(None, ge=0, le=2_000_000_000)


class ReportOut(BaseModel):
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
    estimated_cost: Money
    credits_consumed: int
    created_at: datetime
    updated_at: datetime


# Both lists are newest first by (created_at, id).
KEYSET = (datetime, UUID)

Record = TypeVar("Record", ExecutionOut, ReportOut)


def _keyset_of(record: ExecutionOut | ReportOut) -> tuple[datetime, UUID]:
    return record.created_at, record.id


def _answerable(record: Record) -> Record:
    """The record as written, if one answer can still carry it (each field is bounded, the record was not: a
    report's HTML, code and conclusion together made a report no GET or list page could answer again)."""
    if answer_bytes(record) > ANSWER_MAX_BYTES:
        raise PayloadTooLargeError(
            f"With this change the record would be over {ANSWER_MAX_BYTES} bytes of JSON, more than one answer "
            "can carry; nothing was changed."
        )
    return record


def _execution_out(row: ExecutionRow | None) -> ExecutionOut:
    if row is None:
        raise NotFoundError()
    return ExecutionOut.model_validate(row.model_dump())


def create_execution(db: Database, principal: Principal, body: ExecutionIn) -> ExecutionOut:
    user_id = principal.require_user()

    def work(uow: UnitOfWork) -> ExecutionOut:
        repo = RecordsRepository(uow.conn)
        if not repo.is_participant(body.conversation_id, user_id):
            raise NotFoundError()
        if body.message_id is not None and not repo.message_in_conversation(body.message_id, body.conversation_id):
            raise NotFoundError()
        return _answerable(_execution_out(repo.add_execution({**body.model_dump(), "user_id": user_id})))

    return db.transact(work)


def get_execution(db: Database, principal: Principal, id: UUID) -> ExecutionOut:
    user_id = principal.require_user()
    return db.read(lambda uow: _execution_out(RecordsRepository(uow.conn).execution(id, user_id)))


def list_executions(
    db: Database, principal: Principal, *, conversation_id: UUID | None, cursor: str | None, limit: int | None
) -> Page[ExecutionOut]:
    user_id = principal.require_user()
    size = page_limit(limit)
    after = decode_cursor(cursor, KEYSET)
    rows = db.read(lambda uow: RecordsRepository(uow.conn).list_executions(user_id, conversation_id, after, size + 1))
    return page_within(page_as(page_of(rows, size, lambda r: (r.created_at, r.id)), _execution_out), _keyset_of)


def update_execution(db: Database, principal: Principal, id: UUID, body: ExecutionPatch) -> ExecutionOut:
    user_id = principal.require_user()
    body.refuse_nulls("is_successful", "failed_agents", "error_messages")
    changes = body.model_dump(exclude_unset=True)

    def work(uow: UnitOfWork) -> ExecutionOut:
        repo = RecordsRepository(uow.conn)
        row = repo.execution(id, user_id, lock=True)
        # Only the author changes a record; other participants see it but get the same 404 as a stranger.
        if row is None or row.user_id != user_id:
            raise NotFoundError()
        repo.update_execution(id, changes)
        return _answerable(_execution_out(repo.execution(id, user_id)))

    return db.transact(work)


def _report_out(row: ReportRow | None) -> ReportOut:
    if row is None:
        raise NotFoundError()
    return ReportOut.model_validate(row.model_dump())


def create_report(db: Database, principal: Principal, body: ReportIn) -> tuple[ReportOut, bool]:
    """The report and whether it was created now; a repeated report_uuid returns the first one."""
    user_id = principal.require_user()

    def work(uow: UnitOfWork) -> tuple[ReportOut, bool]:
        repo = RecordsRepository(uow.conn)
        row = repo.add_report({**body.model_dump(), "user_id": user_id})
        if row is not None:
            return _report_out(row), True
        existing = repo.report_by_uuid(body.report_uuid)
        if existing is None or existing.user_id != user_id:
            raise ConflictError("This report_uuid is taken.")
        return _report_out(existing), False

    return db.transact(work)


def get_report(db: Database, principal: Principal, id: UUID) -> ReportOut:
    user_id = principal.require_user()
    return db.read(lambda uow: _report_out(RecordsRepository(uow.conn).report(id, user_id)))


def list_reports(db: Database, principal: Principal, *, cursor: str | None, limit: int | None) -> Page[ReportOut]:
    user_id = principal.require_user()
    size = page_limit(limit)
    after = decode_cursor(cursor, KEYSET)
    rows = db.read(lambda uow: RecordsRepository(uow.conn).list_reports(user_id, after, size + 1))
    return page_within(page_as(page_of(rows, size, lambda r: (r.created_at, r.id)), _report_out), _keyset_of)


def update_report(db: Database, principal: Principal, id: UUID, body: ReportPatch) -> ReportOut:
    """Move a report along pending -> running -> completed | failed; progress, results and totals on the way."""
    user_id = principal.require_user()
    body.refuse_nulls("status", "progress_percentage", "total_tokens_used", "estimated_cost", "credits_consumed")
    changes = body.model_dump(exclude_unset=True)

    def work(uow: UnitOfWork) -> ReportOut:
        repo = RecordsRepository(uow.conn)
        row = repo.report(id, user_id, lock=True)
        if row is None:
            raise NotFoundError()
        if not TRANSITIONS[row.status]:
            raise ConflictError(f"The report is {row.status}; it can no longer change.")
        target = changes.get("status", row.status)
        if target not in TRANSITIONS[row.status]:
            raise ConflictError(f"A report cannot go from {row.status} to {target}.")
        finish = target in ("completed", "failed") and target != row.status
        if target == "completed":
            changes["progress_percentage"] = 100
        repo.update_report(id, changes, finish=finish)
        return _answerable(_report_out(repo.report(id, user_id)))

    return db.transact(work)
