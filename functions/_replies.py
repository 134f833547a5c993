"""Response shapes the handlers share: 201/200/204 with a model body."""

from __future__ import annotations

from typing import TypeVar

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


STATUS_DESCRIPTIONS = {200: "OK", 201: "Created"}


def replies(model: type[BaseModel], *statuses: int) -> dict[int, OpenAPIResponse]:
    """The `responses=` of a route that answers `model` with these statuses, for the OpenAPI document: without
    it a `Response[str]` route documents a string, and every route a 200 even when it answers 201."""
    return {
        status: {"description": STATUS_DESCRIPTIONS[status], "content": {"application/json": {"model": model}}}
        for status in statuses
    }


def problem(description: str) -> OpenAPIResponse:
    """A route's own problem+json reply, for the OpenAPI document: one that the generic replies every operation gets
    (shared/local/server.py, _problem_replies) cannot see, such as a public route's 401."""
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def json_body(model: BaseModel, status: int) -> Response[str]:
    """The model serialized once, by pydantic, for a route declared `-> Response[str]` that documents the model
    in `responses=`. A `Response[Model]` route has Powertools validate the model it was handed again and encode
    it field by field: worth avoiding on the hot paths (a send), and where the body is already final."""
    return Response(status_code=status, content_type="application/json", body=model.model_dump_json())


def credentials_json(model: BaseModel, status_code: int = 200) -> Response[str]:
    """An answer carrying credentials (a token pair, an API key, a licence key, an anonymous token), serialized as
    json_body does and marked for no cache to keep (RFC 6749, 5.1: a proxy's or a browser's disk cache must not hold
    tokens)."""
    response = json_body(model, status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def created_json(model: BaseModel) -> Response[str]:
    """201 with the model serialized once (see json_body)."""
    return json_body(model, 201)


def created(model: M) -> Response[M]:
    return Response(status_code=201, content_type="application/json", body=model)


def ok(model: M) -> Response[M]:
    return Response(status_code=200, content_type="application/json", body=model)


def created_or_ok(model: M, is_new: bool) -> Response[M]:
    return created(model) if is_new else ok(model)


def no_content() -> Response[None]:
    return Response(status_code=204, body=None)
