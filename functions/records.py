"""Code-execution records and deep-analysis reports."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from functions._http import lambda_entry, make_resolver, principal_of
from functions._params import Cursor, Limit
from functions._replies import replies
from shared.bootstrap import container
from shared.models.ids import PathId
from shared.pagination import Page
from shared.services import records
from shared.services.records import (
    ExecutionIn,
    ExecutionOut,
    ExecutionPatch,
    ReportIn,
    ReportOut,
    ReportPatch,
)

app = make_resolver()


@app.get("/v1/code-executions", summary="List my code executions", tags=["records"])
def get_executions(
    conversation_id: Annotated[UUID | None, Query()] = None, cursor: Cursor = None, limit: Limit = None
) -> Page[ExecutionOut]:
    return records.list_executions(
        container().db, principal_of(app), conversation_id=conversation_id, cursor=cursor, limit=limit
    )


@app.post(
    "/v1/code-executions", summary="Record a code execution", tags=["records"], responses=replies(ExecutionOut, 201)
)
def post_execution(body: ExecutionIn) -> Response[str]:
    out = records.create_execution(container().db, principal_of(app), body)
    return Response(status_code=201, content_type="application/json", body=out.model_dump_json())


@app.get("/v1/code-executions/<id>", summary="Get a code execution", tags=["records"])
def get_execution(id: PathId) -> ExecutionOut:
    return records.get_execution(container().db, principal_of(app), id)


@app.patch("/v1/code-executions/<id>", summary="Update a code execution", tags=["records"])
def patch_execution(id: PathId, body: ExecutionPatch) -> ExecutionOut:
    return records.update_execution(container().db, principal_of(app), id, body)


@app.get("/v1/analysis-reports", summary="List my analysis reports", tags=["records"])
def get_reports(cursor: Cursor = None, limit: Limit = None) -> Page[ReportOut]:
    return records.list_reports(container().db, principal_of(app), cursor=cursor, limit=limit)


@app.post(
    "/v1/analysis-reports",
    summary="Create an analysis report (idempotent on report_uuid)",
    tags=["records"],
    responses=replies(ReportOut, 201, 200),
)
def post_report(body: ReportIn) -> Response[str]:
    out, created = records.create_report(container().db, principal_of(app), body)
    return Response(status_code=201 if created else 200, content_type="application/json", body=out.model_dump_json())


@app.get("/v1/analysis-reports/<id>", summary="Get an analysis report", tags=["records"])
def get_report(id: PathId) -> ReportOut:
    return records.get_report(container().db, principal_of(app), id)


@app.patch("/v1/analysis-reports/<id>", summary="Advance or update an analysis report", tags=["records"])
def patch_report(id: PathId, body: ReportPatch) -> ReportOut:
    return records.update_report(container().db, principal_of(app), id, body)


lambda_handler = lambda_entry(app)
