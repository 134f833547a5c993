"""The shared resolver: every failure is problem+json with the right status and no leaked detail."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import BaseModel, Field

from functions._http import lambda_entry, make_resolver
from shared.errors import ConflictError
from tests.helpers import FakeLambdaContext, body_of, header, load_event


class Thing(BaseModel):
    name: str = Field(min_length=1, max_length=10)
    password: str


app = make_resolver()


@app.post("/v1/things")
def create_thing(thing: Thing) -> dict[str, str]:
    if thing.name == "dup":
        raise ConflictError("Thing exists.")
    if thing.name == "boom":
        raise RuntimeError("connection string postgresql://secret@db")
    return {"name": thing.name}


handler = lambda_entry(app)


def _post(body: str | None):
    event = load_event("health_get", httpMethod="POST", path="/v1/things", resource="/v1/things", body=body)
    return handler(event, FakeLambdaContext())


def test_valid_body_reaches_the_route():
    response = _post(json.dumps({"name": "ok", "password": "p"}))
    assert response["statusCode"] == 200 and body_of(response) == {"name": "ok"}


def test_schema_violation_is_422_with_field_paths_and_no_values_when_body_is_invalid():
    response = _post(json.dumps({"name": "x" * 50, "password": "hunter2-canary"}))
    assert response["statusCode"] == 422
    assert header(response, "Content-Type") == "application/problem+json"
    body = body_of(response)
    assert body["errors"][0]["loc"] == ["body", "name"]
    assert "hunter2-canary" not in response["body"] and "xxxxxxxxxxxx" not in response["body"]


def test_malformed_json_is_400_when_body_cannot_be_parsed():
    response = _post("{not json")
    assert response["statusCode"] == 400
    assert body_of(response)["type"].endswith("/invalid-request")


def test_json_nested_past_the_parsers_recursion_limit_is_400_when_posted():
    response = _post('{"name": "ok", "password": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert response["statusCode"] == 400
    assert header(response, "Content-Type") == "application/problem+json"
    assert body_of(response)["type"].endswith("/invalid-request")


def test_json_number_past_the_parsers_digit_limit_is_400_when_posted():
    # json.loads refuses an integer of more than 4300 digits with a plain ValueError (CVE-2020-10735), not the
    # JSONDecodeError Powertools turns into a 400: such a body was a 500 on every route that takes one.
    response = _post('{"name": "ok", "password": ' + "9" * 5000 + "}")
    assert response["statusCode"] == 400
    assert header(response, "Content-Type") == "application/problem+json"
    assert body_of(response)["type"].endswith("/invalid-request")


def test_domain_error_maps_through_the_table_when_raised_in_a_route():
    response = _post(json.dumps({"name": "dup", "password": "p"}))
    assert response["statusCode"] == 409 and body_of(response)["detail"] == "Thing exists."


def test_unexpected_error_is_a_generic_500_without_a_stack_when_a_route_crashes(capsys):
    response = _post(json.dumps({"name": "boom", "password": "p"}))
    assert response["statusCode"] == 500
    assert body_of(response) == {
        "type": "https://confab.dev/problems/internal-error",
        "title": "Internal server error",
        "status": 500,
    }
    assert "secret" not in response["body"]


def test_unknown_route_is_a_404_problem_when_resolving():
    event = load_event("health_get", path="/v1/nope", resource="/v1/nope")
    response = handler(event, FakeLambdaContext())
    assert response["statusCode"] == 404 and header(response, "Content-Type") == "application/problem+json"


def test_logs_carry_the_request_id_and_cold_start_when_a_request_is_handled():
    import io
    import logging

    from shared.observability import logger

    @app.post("/v1/loud")
    def loud() -> dict[str, str]:
        logger.warning("inside the route")
        return {}

    fresh = lambda_entry(app)
    sink = io.StringIO()
    capture = logging.StreamHandler(sink)
    capture.setFormatter(logger.registered_formatter)
    logger.addHandler(capture)
    try:
        for request_id in ("req-one", "req-two"):
            event = load_event("health_get", httpMethod="POST", path="/v1/loud", resource="/v1/loud")
            event["requestContext"]["requestId"] = request_id
            assert fresh(event, FakeLambdaContext())["statusCode"] == 200
    finally:
        logger.removeHandler(capture)
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [line["correlation_id"] for line in lines] == ["req-one", "req-two"]
    assert [line["cold_start"] for line in lines] == [True, False]
    assert lines[0]["function_request_id"] == FakeLambdaContext.aws_request_id


def test_undecodable_binary_body_is_a_400_problem_when_it_is_not_utf8_text():
    event = load_event(
        "health_get",
        httpMethod="POST",
        path="/v1/things",
        resource="/v1/things",
        body=base64.b64encode(b"\xb4\xce\xa5").decode(),
        isBase64Encoded=True,
    )
    response = handler(event, FakeLambdaContext())
    assert response["statusCode"] == 400
    assert header(response, "Content-Type") == "application/problem+json"
    assert body_of(response)["type"].endswith("/invalid-request")


def test_utf8_json_sent_base64_encoded_reaches_the_route_when_api_gateway_encodes_it():
    body = base64.b64encode(json.dumps({"name": "ok", "password": "p"}).encode()).decode()
    event = load_event(
        "health_get", httpMethod="POST", path="/v1/things", resource="/v1/things", body=body, isBase64Encoded=True
    )
    assert handler(event, FakeLambdaContext())["statusCode"] == 200


@pytest.mark.parametrize(
    "content_type", ["application/xml", "multipart/form-data", "application/x-www-form-urlencoded", "text/plain"]
)
def test_non_json_body_is_a_415_problem_when_its_content_type_is_not_json(content_type):
    event = load_event(
        "health_get",
        httpMethod="POST",
        path="/v1/things",
        resource="/v1/things",
        body="<thing/>",
        headers={"Content-Type": content_type},
        multiValueHeaders={"Content-Type": [content_type]},
    )
    response = handler(event, FakeLambdaContext())
    assert response["statusCode"] == 415
    assert body_of(response)["type"].endswith("/unsupported-media-type")


def test_json_with_a_charset_reaches_the_route_when_posted():
    for content_type in ("application/json; charset=utf-8", "application/json"):
        event = load_event(
            "health_get",
            httpMethod="POST",
            path="/v1/things",
            resource="/v1/things",
            body=json.dumps({"name": "ok", "password": "p"}),
            headers={"Content-Type": content_type},
        )
        assert handler(event, FakeLambdaContext())["statusCode"] == 200, content_type


def _from_origin(origin: str | None, body: str = '{"name": "ok", "password": "p"}'):
    headers = {"Content-Type": "application/json", **({"Origin": origin} if origin else {})}
    event = load_event(
        "health_get", httpMethod="POST", path="/v1/things", resource="/v1/things", body=body, headers=headers
    )
    return handler(event, FakeLambdaContext())


def test_answers_and_problems_carry_cors_headers_when_the_origin_is_allowed(monkeypatch):
    from shared.settings import get_settings

    monkeypatch.setenv("CORS_ORIGINS", "https://app.example.com,https://admin.example.com")
    get_settings.cache_clear()
    try:
        ok, problem = _from_origin("https://admin.example.com"), _from_origin("https://app.example.com", body="{")
        other, none = _from_origin("https://evil.example.net"), _from_origin(None)
    finally:
        get_settings.cache_clear()
    assert ok["statusCode"] == 200 and problem["statusCode"] == 400
    assert header(ok, "Access-Control-Allow-Origin") == "https://admin.example.com"
    assert header(problem, "Access-Control-Allow-Origin") == "https://app.example.com"
    assert header(ok, "Vary") == "Origin" and "Retry-After" in (header(ok, "Access-Control-Expose-Headers") or "")
    assert header(other, "Access-Control-Allow-Origin") is None and header(none, "Access-Control-Allow-Origin") is None


def test_any_origin_gets_the_wildcard_when_cors_origins_is_star(monkeypatch):
    from shared.settings import get_settings

    monkeypatch.setenv("CORS_ORIGINS", "*")
    get_settings.cache_clear()
    try:
        response = _from_origin("https://anywhere.example.org")
    finally:
        get_settings.cache_clear()
    assert header(response, "Access-Control-Allow-Origin") == "*"
