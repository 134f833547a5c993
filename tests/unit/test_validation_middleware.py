"""RequestValidation answers exactly what Powertools' OpenAPIRequestValidationMiddleware answers.

Every route of every route group, with path, query and body values both valid and not: the same validated
arguments or the same errors, from both middlewares. A Powertools upgrade that changes the helpers
RequestValidation builds on fails here rather than in production.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from pydantic import BaseModel

from functions._http import lambda_entry, make_resolver
from functions._validation import RequestValidation
from shared import routes
from shared.errors import AppError, NotFoundError

PATH_VALUES = [str(uuid.UUID(int=7)), "42", "not-an-id", "%F0%9F%91%8D", "0"]
QUERY_VALUES: list[list[str]] = [["5"], ["0"], ["-3"], ["abc"], [""], ["a,b"], ["1", "2"], ["x" * 1100], ["true"]]
BODIES: list[str | None] = [
    None,
    "{}",
    "[]",
    '"text"',
    "{not json",
    json.dumps({"content": "hello", "title": "t", "emoji": "👍", "rating": 3, "kind": "group"}),
    json.dumps({"content": 5, "rating": "high", "unknown": True}),
]


def _powertools_routes() -> Iterator[tuple[str, Any]]:
    for group in routes.ROUTE_GROUPS:
        app = importlib.import_module(group.module).app
        for route in app._static_routes + app._dynamic_routes:
            yield f"{route.method} {route.path}", route


ROUTES = dict(_powertools_routes())


Case = tuple[dict[str, str], dict[str, list[str]], dict[str, list[str]], str | None]


def _cases(route: Any) -> Iterator[Case]:
    """(path arguments, query parameters, headers, body): each part varied with the others valid or absent."""
    dependant = route.dependant
    path_names = [param.alias for param in dependant.path_params]
    bodies = BODIES if dependant.body_params else [None]
    valid_body = BODIES[5] if dependant.body_params else None
    for value in PATH_VALUES:
        yield dict.fromkeys(path_names, value), {}, {}, valid_body
    base_path = dict.fromkeys(path_names, PATH_VALUES[0])
    for param in dependant.query_params:
        for values in QUERY_VALUES:
            yield base_path, {param.alias: values}, {}, valid_body
    for param in dependant.header_params:
        for values in QUERY_VALUES:
            yield base_path, {}, {param.alias: values}, valid_body
    for body in bodies:
        yield base_path, {}, {}, body


def _event(query: dict[str, list[str]], headers: dict[str, list[str]], body: str | None) -> APIGatewayProxyEvent:
    headers = {"content-type": ["application/json"], **headers}
    return APIGatewayProxyEvent(
        {
            "httpMethod": "GET",
            "path": "/",
            "headers": {name: values[-1] for name, values in headers.items()},
            "multiValueHeaders": headers,
            "queryStringParameters": {name: values[-1] for name, values in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "body": body,
            "isBase64Encoded": False,
            "requestContext": {},
        }
    )


def _outcome(middleware: Any, route: Any, case: Case) -> Any:
    path, query, headers, body = case
    app = SimpleNamespace(
        context={"_route": route, "_route_args": dict(path)}, current_event=_event(query, headers, body)
    )

    def captured(app: Any) -> Any:
        return {
            name: value.model_dump(mode="json") if isinstance(value, BaseModel) else repr(value)
            for name, value in app.context["_route_args"].items()
        }

    try:
        return "ok", middleware.handler(app, captured)
    except RequestValidationError as exc:
        return "invalid", json.dumps(exc.errors(), default=repr, sort_keys=True)
    except AppError as exc:  # a path id that names nothing is a 404 from its validator
        return "raised", type(exc).__name__, str(exc)


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_request_validation_answers_what_powertools_answers(name: str) -> None:
    route = ROUTES[name]
    ours, theirs = RequestValidation(), OpenAPIRequestValidationMiddleware()  # type: ignore[no-untyped-call]
    for case in _cases(route):
        assert _outcome(ours, route, case) == _outcome(theirs, route, case), case


def test_every_route_takes_the_short_way() -> None:
    """No route declares cookie or model-typed query or header parameters (Powertools' own path would serve
    them, correctly but at its per-request cost): a new one should be a decision, not an accident."""
    middleware = RequestValidation()
    for name, route in ROUTES.items():
        app = SimpleNamespace(context={"_route": route, "_route_args": {}}, current_event=_event({}, {}, None))
        with contextlib.suppress(RequestValidationError, AppError):
            middleware.handler(app, lambda app: None)  # type: ignore[arg-type]
        assert middleware._short_way[id(route)], name


def test_a_string_body_passes_the_response_side_unchanged_and_models_are_still_serialized() -> None:
    from aws_lambda_powertools.event_handler import Response

    from functions._validation import ResponseValidation

    middleware = ResponseValidation()
    page = ROUTES["GET /v1/conversations/<id>/messages"]
    body = '{"items":[],"next_cursor":null}'
    response = middleware._handle_response(route=page, response=Response(200, "application/json", body))
    assert response.body == body
    feedback = ROUTES["GET /v1/messages/<id>/feedback"]
    with pytest.raises(RequestValidationError):  # a body that is not the declared model is still refused
        middleware._handle_response(route=feedback, response=Response(200, "application/json", {"rating": "x"}))


class Item(BaseModel):
    name: str
    size: int


def _small_api() -> Any:
    """A resolver of five routes that cover every kind of answer: a JSON string, a model the response side
    serializes, a dict, a domain error, and a body that is not the declared model."""
    app = make_resolver()

    @app.get("/v1/raw")
    def raw(n: Annotated[int, Query()] = 1) -> Response[str]:
        return Response(200, "application/json", json.dumps({"n": n}))

    @app.get("/v1/item")
    def item() -> Item:
        return Item(name="x", size=3)

    @app.post("/v1/items")
    def create(body: Item) -> dict[str, Any]:
        return {"made": body.name}

    @app.get("/v1/missing")
    def missing() -> Item:
        raise NotFoundError()

    @app.get("/v1/wrong")
    def wrong() -> Item:
        return {"name": "x", "size": "not a size"}  # type: ignore[return-value]

    return lambda_entry(app)


def test_routes_answer_the_same_when_called_directly_as_through_powertools_frames(monkeypatch) -> None:
    """RequestValidation calls a plain route and the response side itself; Powertools' frames must give the
    same responses, and a request that fails validation the same 422."""
    import functions._validation as validation
    from tests.helpers import FakeLambdaContext, load_event

    requests = [
        ("GET", "/v1/raw", {"n": "5"}, None),
        ("GET", "/v1/raw", {"n": "five"}, None),
        ("GET", "/v1/item", None, None),
        ("POST", "/v1/items", None, json.dumps({"name": "a", "size": 1})),
        ("POST", "/v1/items", None, json.dumps({"name": "a"})),
        ("GET", "/v1/missing", None, None),
        ("GET", "/v1/wrong", None, None),
    ]

    def answers() -> list[tuple[int, str | None, str]]:
        handler = _small_api()
        out = []
        for method, path, query, body in requests:
            event = load_event(
                "health_get", httpMethod=method, path=path, resource=path, body=body, queryStringParameters=query
            )
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in (query or {}).items()} or None
            response = handler(event, FakeLambdaContext())
            out.append((response["statusCode"], (response.get("headers") or {}).get("Content-Type"), response["body"]))
        return out

    direct = answers()
    monkeypatch.setattr(validation, "_plain", lambda app, route: False)
    framed = answers()
    assert direct == framed
    assert [status for status, _, _ in direct] == [200, 422, 200, 200, 422, 404, 422]
