"""Response shapes the conversation handlers share: 201/200/204 with a model body, and the body-size gate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel

from functions._http import proxy_problem
from shared.errors import PayloadTooLargeError

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def json_body(model: BaseModel, status: int) -> Response[str]:
    """The model serialized once, by pydantic, for a route declared `-> Response[str]` that documents the model
    in `responses=`. A `Response[Model]` route has Powertools validate the model it was handed again and encode
    it field by field: worth avoiding on the hot paths (a send), and where the body is already final."""
    return Response(status_code=status, content_type="application/json", body=model.model_dump_json())


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


def body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    return len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())


def body_limited(handler: Handler, max_bytes: Callable[[], int]) -> Handler:
    """413 before any parsing when the body is over the limit (validation would otherwise read it first)."""

    def limited(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if body_size(event) > max_bytes():
            return proxy_problem(PayloadTooLargeError(f"The request body is over {max_bytes()} bytes."))
        return handler(event, context)

    return limited
