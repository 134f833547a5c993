"""The AI route groups through their Lambda handlers, with real API Gateway events and the authorizer context."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest

from shared import bootstrap
from tests.ai_helpers import FakePublisher, add_model, add_thread, add_user, api_event, context_for
from tests.conversations_helpers import call as call_route
from tests.conversations_helpers import jwt_principal, make_user
from tests.helpers import FakeLambdaContext, body_of, header
from tests.integration.test_openai_compatible_provider import FakeUpstream

CANARY = "sk-canary-9d8e7f6a5b4c"


@pytest.fixture
def ai_app(app_container, monkeypatch):
    publisher = FakePublisher()
    bootstrap.completion_service.cache_clear()
    bootstrap.model_providers.cache_clear()
    monkeypatch.setattr(bootstrap, "_usage_publisher", lambda built: publisher)
    yield publisher
    bootstrap.completion_service.cache_clear()
    bootstrap.model_providers.cache_clear()


def call(module: str, event):
    handler = __import__(f"functions.{module}", fromlist=["lambda_handler"]).lambda_handler
    return handler(event, FakeLambdaContext())


def complete(user, thread, body):
    return call(
        "completions",
        api_event(
            "POST",
            "/v1/threads/{id}/completions",
            f"/v1/threads/{thread}/completions",
            principal=context_for(user),
            path_parameters={"id": str(thread)},
            body=body,
        ),
    )


def test_completion_answers_the_ai_message_with_usage_when_a_participant_asks(ai_app, db):
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    response = complete(user, thread, {"content": "Hello there"})
    assert response["statusCode"] == 200, response["body"]
    body = body_of(response)
    assert body["message"]["sender_kind"] == "ai" and "Hello there" in body["message"]["content"]
    assert body["usage"]["cache_hit"] is False and float(body["usage"]["cost_usd"]) > 0
    assert len(ai_app.events) == 1 and ai_app.events[0].message_id == body["message"]["id"]
    # Both stored messages start with their "sent" time, as a sent message does.
    times = db.execute(
        "SELECT status_timestamps->>'sent' FROM messages WHERE id IN (%s, %s)",
        (body["user_message_id"], body["message"]["id"]),
    ).fetchall()
    assert len(times) == 2 and all(t[0] and t[0].endswith("Z") for t in times)


def test_a_cache_hits_costs_read_with_the_scale_of_every_other_cost_when_answered(ai_app, db):
    # "0" beside "0.00000000" read as two kinds of number to a client that compares or formats them.
    add_model(db)
    user = add_user(db)
    for _ in range(2):
        _, thread = add_thread(db, user, model_id="local-echo")
        usage = body_of(complete(user, thread, {"content": "Same question", "temperature": 0}))["usage"]
    assert usage["cache_hit"] is True
    assert usage["cost_usd"] == "0.00000000" and len(usage["cost_avoided_usd"].split(".")[1]) == 8


def test_completion_content_is_held_to_a_messages_limit_422_before_the_provider_storing_nothing(
    ai_app, app_container, db
):
    # The user's turn is stored as a message: a send's bound holds (pages' size bound counts on it).
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    limit = app_container.settings.message_max_chars
    refused = complete(user, thread, {"content": "x" * (limit + 1)})
    assert refused["statusCode"] == 422 and header(refused, "Content-Type") == "application/problem+json"
    assert [item["loc"] for item in body_of(refused)["errors"]] == [["body", "content"]]
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0 and ai_app.events == []
    answered = complete(user, thread, {"content": "x" * limit, "max_tokens": 10})
    assert answered["statusCode"] == 200, answered["body"]


def test_completion_is_409_problem_storing_nothing_when_its_idempotency_key_was_used_for_other_content(ai_app, db):
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")

    def ask(content):
        event = api_event(
            "POST",
            "/v1/threads/{id}/completions",
            f"/v1/threads/{thread}/completions",
            principal=context_for(user),
            path_parameters={"id": str(thread)},
            body={"content": content, "temperature": 0.5},
        )
        event["headers"]["Idempotency-Key"] = "k-1"
        event["multiValueHeaders"]["Idempotency-Key"] = ["k-1"]
        return call("completions", event)

    first = ask("lunch at noon?")
    assert first["statusCode"] == 200, first["body"]
    other = ask("dinner at eight?")
    assert other["statusCode"] == 409 and header(other, "Content-Type") == "application/problem+json"
    assert body_of(other)["type"] == "https://confab.dev/problems/conflict"
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 2 and len(ai_app.events) == 1
    retry = ask("lunch at noon?")
    assert retry["statusCode"] == 200 and body_of(retry)["message"]["id"] == body_of(first)["message"]["id"]


def test_an_empty_idempotency_key_header_is_422_storing_nothing_as_a_sends_is(ai_app, db):
    # An HTTP client that sends the header with an unset value: the empty key was stored, and the user's next,
    # different question was a 409 (the same question a replay of the first answer).
    add_model(db)
    user = make_user(db)
    conversation, thread = add_thread(db, user, model_id="local-echo")
    path = f"/v1/threads/{thread}/completions"
    for content in ("one", "two"):
        refused = call_route(
            "POST", path, jwt_principal(user), body={"content": content}, headers={"Idempotency-Key": ""}
        )
        assert refused.status == 422, refused.body
        assert [item["loc"] for item in refused.body["errors"]] == [["header", "idempotency-key"]]
    assert db.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation,)).fetchone()[0] == 0
    assert ai_app.events == []


def test_a_model_id_or_key_with_a_nul_is_422_naming_the_field_and_a_model_read_404(ai_app, db):
    # Looked up as they came, they were refused by the database: a 422 saying the value "cannot be stored", naming
    # no field, and for GET /v1/models/{id} (a read, where no such model is a 404).
    add_model(db)
    user = make_user(db)
    conversation, thread = add_thread(db, user, model_id="local-echo")
    me, path = jwt_principal(user), f"/v1/threads/{thread}/completions"
    chat = {"model": "local\x00echo", "messages": [{"role": "user", "content": "hi"}]}
    refusals = {
        ("body", "model"): call_route("POST", "/v1/chat/completions", me, body=chat),
        ("body", "model_id"): call_route("POST", path, me, body={"content": "hi", "model_id": "local\x00echo"}),
        ("body", "idempotency_key"): call_route("POST", path, me, body={"content": "hi", "idempotency_key": "k\x00"}),
        ("header", "idempotency-key"): call_route(
            "POST", path, me, body={"content": "hi"}, headers={"Idempotency-Key": "k\x00"}
        ),
    }
    for loc, reply in refusals.items():
        assert reply.status == 422, reply.body
        assert [item["loc"] for item in reply.body["errors"]] == [list(loc)]
    assert call_route("GET", "/v1/models/local%00echo", me).status == 404
    assert db.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation,)).fetchone()[0] == 0
    assert ai_app.events == []


def test_completion_is_the_same_404_as_a_random_id_when_the_caller_is_not_a_participant(ai_app, db):
    add_model(db)
    owner, stranger = add_user(db), add_user(db)
    _, thread = add_thread(db, owner, model_id="local-echo")
    hidden = complete(stranger, thread, {"content": "peek"})
    random = complete(stranger, uuid.uuid4(), {"content": "peek"})
    assert hidden["statusCode"] == random["statusCode"] == 404
    assert hidden["body"] == random["body"]


def test_a_completion_in_a_direct_conversation_the_other_user_left_still_answers(ai_app, db):
    # A send there is 409 (nobody would read it); a turn with the model needs nobody else and stays allowed.
    add_model(db)
    ann, bob = add_user(db), add_user(db)
    body = {"kind": "direct", "participant_ids": [str(bob)]}
    direct = call_route("POST", "/v1/conversations", jwt_principal(ann), body=body).body["id"]
    thread = call_route(
        "POST", f"/v1/conversations/{direct}/threads", jwt_principal(ann), body={"model_id": "local-echo"}
    )
    assert call_route("DELETE", f"/v1/conversations/{direct}/participants/{bob}", jwt_principal(bob)).status == 204
    sent = call_route("POST", f"/v1/conversations/{direct}/messages", jwt_principal(ann), body={"content": "hi"})
    assert sent.status == 409
    response = complete(ann, thread.body["id"], {"content": "Hello there"})
    assert response["statusCode"] == 200, response["body"]
    assert db.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (direct,)).fetchone()[0] == 2


def test_provider_error_is_502_problem_without_the_canary_in_response_or_logs_when_upstream_leaks_a_key(
    app_env, monkeypatch, db, capsys, caplog
):
    monkeypatch.setenv("ALLOW_PRIVATE_MODEL_ENDPOINTS", "true")
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", CANARY)
    bootstrap.get_settings.cache_clear()
    bootstrap.container.cache_clear()
    bootstrap.completion_service.cache_clear()
    bootstrap.model_providers.cache_clear()
    upstream = FakeUpstream()
    try:
        add_model(db, "nim-model", provider="openai-compatible", base_url=upstream.url)
        user = add_user(db)
        _, thread = add_thread(db, user, model_id="nim-model")
        upstream.answer(500, {"error": {"message": f"Incorrect API key provided: {CANARY}"}})
        caplog.set_level(logging.DEBUG)
        response = complete(user, thread, {"content": "hi"})
        upstream.answer(429, {"error": f"rate limited for {CANARY}"})
        throttled = complete(user, thread, {"content": "again"})
    finally:
        upstream.close()
        bootstrap.completion_service.cache_clear()
        bootstrap.model_providers.cache_clear()
        bootstrap.container().db.close()
        bootstrap.container.cache_clear()
        bootstrap.get_settings.cache_clear()
    assert upstream.requests[0]["headers"]["Authorization"] == f"Bearer {CANARY}"  # the key did go upstream
    assert response["statusCode"] == 502 and throttled["statusCode"] == 503
    assert header(response, "Content-Type") == "application/problem+json"
    assert body_of(response)["type"].endswith("/upstream-error")
    logs = capsys.readouterr()
    for text in (response["body"], throttled["body"], json.dumps(response), logs.out, logs.err, caplog.text):
        assert CANARY not in text
    # Every log record, with its structured extras, is free of the canary; the failure itself was logged.
    assert all(CANARY not in repr(vars(record)) for record in caplog.records)
    assert any(record.getMessage() == "model provider failed" for record in caplog.records)


def models_event(method, principal, body=None, path="/v1/model-configurations", resource=None, params=None):
    return api_event(method, resource or path, path, principal=principal, body=body, path_parameters=params)


def test_system_prompts_are_shown_to_admins_only_when_listing_models(ai_app, db):
    add_model(db, system_prompt="secret house style")
    user, admin = add_user(db), add_user(db, role="admin")
    as_user = body_of(call("catalog", models_event("GET", context_for(user))))
    as_admin = body_of(call("catalog", models_event("GET", context_for(admin, role="admin"))))
    assert as_user["items"][0]["model_id"] == "local-echo" and as_user["items"][0]["system_prompt"] is None
    assert as_admin["items"][0]["system_prompt"] == "secret house style"
    assert "secret house style" not in json.dumps(as_user)


def test_catalog_writes_are_403_when_the_caller_is_not_an_admin(ai_app, db):
    user = add_user(db)
    response = call("catalog", models_event("POST", context_for(user), {"model_id": "m1", "provider": "local"}))
    assert response["statusCode"] == 403


def _create_model_and_resource(db: Any, model: dict[str, Any], url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An admin's POST of the model configuration `model` and of a NIM resource at `url`: the two answers."""
    principal = context_for(add_user(db, role="admin"), role="admin")
    resource = {"resource_name": "r", "resource_type": "nvidia-nim", "endpoint_url": url}
    return (
        call("catalog", models_event("POST", principal, model)),
        call("catalog", models_event("POST", principal, resource, path="/v1/deployed-resources")),
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/v1",
        "https://127.0.0.1/v1",
        "https://localhost:8443/v1",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.8/v1",
        "https://192.168.0.10/v1",
        "https://[::1]/v1",
    ],
)
def test_endpoint_urls_are_422_when_not_https_or_not_public(ai_app, db, url):
    model, resource = _create_model_and_resource(
        db, {"model_id": "nim", "provider": "openai-compatible", "base_url": url}, url
    )
    assert model["statusCode"] == 422 and resource["statusCode"] == 422
    assert db.execute("SELECT count(*) FROM model_configurations").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM deployed_resources").fetchone()[0] == 0


@pytest.mark.parametrize("url", ["https://api..example.com/v1", f"https://{'a' * 64}.example.com/v1"])
def test_endpoint_urls_are_422_naming_the_field_when_the_host_is_no_dns_name(ai_app, db, url):
    # IDNA cannot encode an empty label or one over 63 characters: getaddrinfo raised UnicodeError, not an
    # OSError, before any lookup, and the catalog answered 500.
    model, resource = _create_model_and_resource(db, {"model_id": "nim", "base_url": url}, url)
    for response, field in ((model, "base_url"), (resource, "endpoint_url")):
        assert response["statusCode"] == 422, response["body"]
        assert [item["loc"] for item in body_of(response)["errors"]] == [["body", field]]
    assert db.execute("SELECT count(*) FROM model_configurations").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM deployed_resources").fetchone()[0] == 0


def test_a_model_whose_output_fills_its_context_window_is_422_and_nothing_changes(ai_app, db):
    # A turn asks for max_output_tokens of answer and gives the context the window less that: such a model was
    # stored, and then refused every completion a client sent without a smaller max_tokens.
    admin = add_user(db, role="admin")
    principal = context_for(admin, role="admin")
    model = {"model_id": "m1", "context_window_tokens": 8192, "max_output_tokens": 8192}
    refused = call("catalog", models_event("POST", principal, model))
    assert refused["statusCode"] == 422, refused["body"]
    assert [item["loc"] for item in body_of(refused)["errors"]] == [["body", "max_output_tokens"]]
    assert db.execute("SELECT count(*) FROM model_configurations").fetchone()[0] == 0
    created = body_of(call("catalog", models_event("POST", principal, {**model, "max_output_tokens": 4096})))
    path = f"/v1/model-configurations/{created['id']}"
    patch = dict(path=path, resource="/v1/model-configurations/{id}", params={"id": created["id"]})
    for change in ({"context_window_tokens": 4096}, {"max_output_tokens": 9000, "display_name": "x"}):
        refused = call("catalog", models_event("PATCH", principal, change, **patch))
        assert refused["statusCode"] == 422, refused["body"]
        assert [item["loc"] for item in body_of(refused)["errors"]] == [["body", "max_output_tokens"]]
    row = db.execute("SELECT context_window_tokens, max_output_tokens, display_name FROM model_configurations")
    assert row.fetchone() == (8192, 4096, None)
    changed = call("catalog", models_event("PATCH", principal, {"context_window_tokens": 4097}, **patch))
    assert changed["statusCode"] == 200 and body_of(changed)["context_window_tokens"] == 4097
    # A model stored before the check can still be deactivated without being mended first.
    db.execute("UPDATE model_configurations SET max_output_tokens = 5000")
    deactivated = call("catalog", models_event("PATCH", principal, {"is_active": False}, **patch))
    assert deactivated["statusCode"] == 200 and body_of(deactivated)["is_active"] is False


def test_admin_creates_and_patches_a_model_and_a_resource_when_endpoints_are_public(ai_app, db):
    admin = add_user(db, role="admin")
    principal = context_for(admin, role="admin")
    created = call(
        "catalog",
        models_event(
            "POST",
            principal,
            {
                "model_id": "nim-llama",
                "provider": "openai-compatible",
                "base_url": "https://93.184.216.34/v1",
                "per_1k_input_tokens_usd": "0.000150",
                "per_1k_output_tokens_usd": "0.000600",
            },
        ),
    )
    assert created["statusCode"] == 201, created["body"]
    model = body_of(created)
    assert model["per_1k_output_tokens_usd"] == "0.000600"
    patched = call(
        "catalog",
        models_event(
            "PATCH",
            principal,
            {"is_active": False},
            path=f"/v1/model-configurations/{model['id']}",
            resource="/v1/model-configurations/{id}",
            params={"id": model["id"]},
        ),
    )
    assert patched["statusCode"] == 200 and body_of(patched)["is_active"] is False
    resource = call(
        "catalog",
        models_event(
            "POST",
            principal,
            {
                "resource_name": "nim-1",
                "resource_type": "nvidia-nim",
                "endpoint_url": "https://93.184.216.34",
                "estimated_hourly_cost": "1.2500",
                "region": "us-east-1",
            },
            path="/v1/deployed-resources",
        ),
    )
    assert resource["statusCode"] == 201 and body_of(resource)["estimated_hourly_cost"] == "1.2500"
    rid = body_of(resource)["id"]
    deep: list = []
    for _ in range(300):
        deep = [deep]
    too_deep = models_event(
        "PATCH",
        principal,
        {"deployment_config": {"layers": deep}},
        path=f"/v1/deployed-resources/{rid}",
        resource="/v1/deployed-resources/{id}",
        params={"id": rid},
    )
    assert call("catalog", too_deep)["statusCode"] == 422  # free JSON nested past what a response can carry
    one = f"/v1/deployed-resources/{rid}"
    ev = models_event("DELETE", principal, path=one, resource="/v1/deployed-resources/{id}", params={"id": rid})
    assert call("catalog", ev)["statusCode"] == 204
    ev = models_event("GET", principal, path=one, resource="/v1/deployed-resources/{id}", params={"id": rid})
    assert call("catalog", ev)["statusCode"] == 404


def chat_event(user, body):
    return api_event("POST", "/v1/chat/completions", "/v1/chat/completions", principal=context_for(user), body=body)


def test_chat_completions_answer_in_openai_shape_with_usage_and_record_usage_when_asked(ai_app, db):
    add_model(db)
    user = add_user(db)
    body = {"model": "local-echo", "messages": [{"role": "user", "content": "2+2?"}], "temperature": 0}
    first, second = call("openai", chat_event(user, body)), call("openai", chat_event(user, body))
    assert first["statusCode"] == 200, first["body"]
    answer = body_of(first)
    assert answer["object"] == "chat.completion" and answer["model"] == "local-echo"
    assert (
        answer["choices"][0]["message"]["role"] == "assistant" and "2+2?" in answer["choices"][0]["message"]["content"]
    )
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert body_of(second)["choices"][0]["message"]["content"] == answer["choices"][0]["message"]["content"]
    assert [e.cache_hit for e in ai_app.events] == [False, True]
    assert ai_app.events[1].cost_avoided_usd == ai_app.events[0].cost_usd > 0


def test_an_answer_cut_at_max_tokens_is_length_again_when_answered_from_the_cache(ai_app, db):
    # A client continues an answer whose finish_reason is "length" (OpenAI's clients, agents): a cache hit on such
    # an answer said "stop", so the truncated answer read as whole.
    add_model(db)
    user = add_user(db)
    body = {"model": "local-echo", "messages": [{"role": "user", "content": "tell me more"}], "max_tokens": 1}
    chat = [body_of(call("openai", chat_event(user, {**body, "temperature": 0}))) for _ in range(2)]
    assert [answer["choices"][0]["finish_reason"] for answer in chat] == ["length", "length"]
    turns = []
    for _ in range(2):  # a first question in a fresh thread: the second is answered from the first's entry
        _, thread = add_thread(db, user, model_id="local-echo")
        turns.append(body_of(complete(user, thread, {"content": "go on", "max_tokens": 1})))
    assert [(t["finish_reason"], t["usage"]["cache_hit"]) for t in turns] == [("length", False), ("length", True)]
    assert [e.cache_hit for e in ai_app.events] == [False, True, False, True]


def test_a_retried_turn_answers_the_finish_reason_it_was_answered_with(ai_app, db):
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    turn = {"content": "tell me more", "max_tokens": 1, "idempotency_key": "turn-1"}
    first, retried = (body_of(complete(user, thread, turn)) for _ in range(2))
    assert retried["message"] == first["message"] and len(ai_app.events) == 1
    assert (first["finish_reason"], retried["finish_reason"]) == ("length", "length")


def test_a_cache_entry_stored_before_finish_reasons_were_kept_is_not_answered_from(ai_app, db):
    # Entries from before migration 0630 may hold a cut answer under no finish_reason: asked again, not reused.
    add_model(db)
    user = add_user(db)
    body = {"model": "local-echo", "messages": [{"role": "user", "content": "tell me more"}], "max_tokens": 1}
    body["temperature"] = 0
    call("openai", chat_event(user, body))
    db.execute("UPDATE ai_cache SET finish_reason = NULL")
    again = body_of(call("openai", chat_event(user, body)))
    assert again["choices"][0]["finish_reason"] == "length"
    assert [e.cache_hit for e in ai_app.events] == [False, False]
    assert db.execute("SELECT finish_reason FROM ai_cache").fetchall() == [("length",)]


def _events(response) -> list[str]:
    """The `data:` payloads of a server-sent event stream, in order."""
    assert response["body"].endswith("\n\n")
    return [block.removeprefix("data: ") for block in response["body"].split("\n\n") if block]


def test_chat_completion_with_stream_true_answers_openai_chunks_then_done_and_is_recorded_once(ai_app, db):
    add_model(db)
    user = add_user(db)
    body = {"model": "local-echo", "messages": [{"role": "user", "content": "2+2?"}], "temperature": 0}
    whole = body_of(call("openai", chat_event(user, body)))
    streamed = call("openai", chat_event(user, {**body, "stream": True}))
    assert streamed["statusCode"] == 200, streamed["body"]
    assert header(streamed, "Content-Type") == "text/event-stream"
    assert header(streamed, "Cache-Control") == "no-cache"
    *payloads, done = _events(streamed)
    assert done == "[DONE]"
    chunks = [json.loads(p) for p in payloads]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert all("usage" not in c for c in chunks)  # only asked for with stream_options.include_usage
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert [e.cache_hit for e in ai_app.events] == [False, True]  # one call each, the stream like any other
    assert [e.streaming for e in ai_app.events] == [False, True]  # the usage event's streaming flag

    with_usage = call("openai", chat_event(user, {**body, "stream": True, "stream_options": {"include_usage": True}}))
    *payloads, done = _events(with_usage)
    chunks = [json.loads(p) for p in payloads]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]


def test_chat_completion_with_stream_true_is_a_problem_not_a_stream_when_refused(ai_app, db):
    user = add_user(db)
    body = {"model": "nope", "messages": [{"role": "user", "content": "x"}], "stream": True}
    response = call("openai", chat_event(user, body))
    assert response["statusCode"] == 422
    assert header(response, "Content-Type") == "application/problem+json"


def test_chat_completion_with_tools_is_422_unless_none_may_be_called(ai_app, db):
    add_model(db)
    user = add_user(db)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    body = {"model": "local-echo", "messages": [{"role": "user", "content": "weather?"}]}
    refused = call("openai", chat_event(user, {**body, "tools": [tool]}))
    assert refused["statusCode"] == 422 and "Tool calling" in body_of(refused)["detail"]
    assert call("openai", chat_event(user, {**body, "functions": [tool["function"]]}))["statusCode"] == 422
    assert ai_app.events == []  # refused before the provider
    assert call("openai", chat_event(user, {**body, "tools": [tool], "tool_choice": "none"}))["statusCode"] == 200
    assert call("openai", chat_event(user, {**body, "tools": []}))["statusCode"] == 200
    legacy = {**body, "functions": [tool["function"]], "function_call": "none"}
    assert call("openai", chat_event(user, legacy))["statusCode"] == 200


def test_chat_completion_stops_at_a_stop_sequence_and_caches_it_apart(ai_app, db):
    add_model(db)
    user = add_user(db)
    body = {"model": "local-echo", "messages": [{"role": "user", "content": "2+2?"}], "temperature": 0}
    whole = body_of(call("openai", chat_event(user, body)))["choices"][0]["message"]["content"]
    cut = body_of(call("openai", chat_event(user, {**body, "stop": "said"})))["choices"][0]
    assert whole.startswith("[local-echo] You said: 2+2?") and cut["message"]["content"] == "[local-echo] You "
    assert cut["finish_reason"] == "stop"
    again = body_of(call("openai", chat_event(user, {**body, "stop": ["said"]})))["choices"][0]["message"]
    assert again["content"] == cut["message"]["content"]
    assert [e.cache_hit for e in ai_app.events] == [False, False, True]  # its own entry, not the whole answer's
    for bad in ([""], ["a", "b", "c", "d", "e"], 7):
        assert call("openai", chat_event(user, {**body, "stop": bad}))["statusCode"] == 422


def test_chat_completion_without_a_temperature_samples_at_openais_default_and_is_not_cached(ai_app, db, monkeypatch):
    # It was sent at 0 and cached: a client relying on OpenAI's default of 1 got the same answer to every
    # "regenerate", from the cache.
    from shared.providers.local import LocalProvider

    sent = []
    complete = LocalProvider.complete
    monkeypatch.setattr(
        LocalProvider, "complete", lambda self, request: sent.append(request) or complete(self, request)
    )
    add_model(db)
    user = add_user(db)
    body = {"model": "local-echo", "messages": [{"role": "user", "content": "a poem"}]}
    assert [call("openai", chat_event(user, body))["statusCode"] for _ in range(2)] == [200, 200]
    assert [r.temperature for r in sent] == [1.0, 1.0]
    assert [e.cache_hit for e in ai_app.events] == [False, False]


def test_models_lists_active_models_in_openai_shape_when_signed_in(ai_app, db):
    add_model(db)
    add_model(db, "retired")
    db.execute("UPDATE model_configurations SET is_active = false WHERE model_id = 'retired'")
    user = add_user(db)
    response = call("openai", api_event("GET", "/v1/models", "/v1/models", principal=context_for(user, kind="api_key")))
    body = body_of(response)
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["local-echo"]
    assert body["data"][0]["object"] == "model" and body["data"][0]["owned_by"] == "local"


def test_a_model_is_retrieved_by_id_in_openai_shape_and_an_inactive_or_unknown_one_is_404(ai_app, db):
    from shared import routes

    add_model(db)
    add_model(db, "meta/llama-3.1-8b-instruct")
    add_model(db, "retired")
    db.execute("UPDATE model_configurations SET is_active = false WHERE model_id = 'retired'")
    principal = context_for(add_user(db), kind="api_key")

    def retrieve(raw_id: str):
        path = f"/v1/models/{raw_id}"
        _, route, params = routes.match("GET", path)  # type: ignore[misc]
        return call("openai", api_event("GET", route.path, path, principal=principal, path_parameters=params))

    card = body_of(retrieve("local-echo"))
    assert card == {"id": "local-echo", "object": "model", "created": card["created"], "owned_by": "local"}
    # As the openai package sends an id with a "/": percent-encoded, one path segment.
    assert body_of(retrieve("meta%2Fllama-3.1-8b-instruct"))["id"] == "meta/llama-3.1-8b-instruct"
    for missing in ("retired", "nope"):
        answer = retrieve(missing)
        assert answer["statusCode"] == 404 and header(answer, "Content-Type") == "application/problem+json"


def test_chat_completion_is_422_when_the_model_is_unknown(ai_app, db):
    user = add_user(db)
    response = call("openai", chat_event(user, {"model": "nope", "messages": [{"role": "user", "content": "x"}]}))
    assert response["statusCode"] == 422


def test_a_models_api_key_secret_outside_the_functions_readable_prefix_is_422(db, database_url, app_env, monkeypatch):
    from shared.auth.principal import Principal
    from shared.db import ConnectionProvider, Database
    from shared.errors import UnprocessableError
    from shared.services.catalog import ModelIn, create_model
    from shared.settings import Settings

    prefix = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:confab/prod/providers/"
    monkeypatch.setenv("PROVIDER_SECRET_ARN_PREFIX", prefix)
    monkeypatch.setenv("ALLOW_PRIVATE_MODEL_ENDPOINTS", "true")  # the model's base_url below, never called
    settings = Settings()
    database = Database(ConnectionProvider(lambda: {"conninfo": database_url}))
    admin = Principal(kind="jwt", user_id=add_user(db, role="admin"), role="admin")

    def model(arn: str) -> ModelIn:
        return ModelIn(
            model_id=f"m{len(arn)}",
            provider="openai-compatible",
            base_url="http://127.0.0.1:9/v1",
            api_key_secret_arn=arn,
        )

    try:
        with pytest.raises(UnprocessableError):
            create_model(
                database, admin, model("arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds-master"), settings
            )
        created = create_model(database, admin, model(f"{prefix}nim-key-AbCdEf"), settings)
    finally:
        database.close()
    assert created.api_key_secret_arn == f"{prefix}nim-key-AbCdEf"


def test_every_422_item_has_loc_type_and_msg_as_a_schema_error_has(ai_app, db):
    # A client shows errors[].msg beside the field errors[].loc names, whatever refused the request: pydantic's
    # schema errors carry all three, and so must the services' own 422s (an unknown model, a disabled template).
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    refusals = [
        complete(user, thread, {"content": "hi", "model_id": "no-such-model"}),
        complete(user, thread, {"content": "hi", "temperature": 9}),  # pydantic's, for comparison
    ]
    for response in refusals:
        assert response["statusCode"] == 422, response["body"]
        for item in body_of(response)["errors"]:
            assert isinstance(item["loc"], list) and item["loc"], item
            assert isinstance(item["type"], str) and item["type"], item
            assert isinstance(item["msg"], str) and item["msg"], item


def test_every_services_422_names_the_body_field_the_client_sent_as_a_schema_error_does(ai_app, db):
    # A form maps errors[].loc to its fields: ["body", <the request's own field>, ...] as pydantic's errors read.
    # The services' own refusals named fields the request does not have (["model"] for a thread's `model_id`) or
    # left out "body" and the message's index.
    add_model(db)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    chat = {"model": "local-echo", "messages": [{"role": "user", "content": "hi"}]}
    refusals = {
        ("body", "model_id"): complete(user, thread, {"content": "hi", "model_id": "no-such-model"}),
        ("body", "model"): call("openai", chat_event(user, {**chat, "model": "no-such-model"})),
        ("body", "messages", "1", "content"): call(
            "openai",
            chat_event(user, {**chat, "messages": [chat["messages"][0], {"role": "user", "content": [image]}]}),
        ),
        ("body", "tools"): call("openai", chat_event(user, {**chat, "tools": [tool]})),
        ("body", "functions"): call("openai", chat_event(user, {**chat, "functions": [tool["function"]]})),
    }
    for loc, response in refusals.items():
        assert response["statusCode"] == 422, response["body"]
        assert [item["loc"] for item in body_of(response)["errors"]] == [list(loc)]


def test_a_request_past_the_models_context_window_is_422_naming_the_field_it_refused(ai_app, db):
    # The one refusal of the request's content that named no field: a form could not show it beside the input.
    add_model(db, context_window=64, max_output=16)
    user = add_user(db)
    _, thread = add_thread(db, user, model_id="local-echo")
    chat = {"model": "local-echo", "messages": [{"role": "user", "content": "word " * 100}]}
    refusals = {
        ("body", "content"): complete(user, thread, {"content": "word " * 100}),
        ("body", "messages"): call("openai", chat_event(user, chat)),
    }
    for loc, response in refusals.items():
        assert response["statusCode"] == 422, response["body"]
        assert [item["loc"] for item in body_of(response)["errors"]] == [list(loc)]
    assert ai_app.events == []


def test_chat_content_with_a_lone_surrogate_is_422_before_the_provider_not_a_500(ai_app, db):
    # JSON's "\ud800" decodes to a lone surrogate, which no UTF-8 text holds: a send's content is refused by its
    # schema, but the OpenAI message's content (a string or text parts) passed and broke the cost estimate (500).
    add_model(db)
    user = add_user(db)
    for content in ("a\ud800b", [{"type": "text", "text": "\udfff"}]):
        body = {"model": "local-echo", "messages": [{"role": "user", "content": content}]}
        refused = call("openai", chat_event(user, body))
        assert refused["statusCode"] == 422, refused["body"]
        assert header(refused, "Content-Type") == "application/problem+json"
        assert [item["loc"][:4] for item in body_of(refused)["errors"]] == [["body", "messages", "0", "content"]]
    assert ai_app.events == []


def test_an_openai_compatible_model_without_an_endpoint_is_422_on_create_and_patch(ai_app, db):
    # Called at its base_url, else at its deployed resource's endpoint_url: one with neither was stored, and every
    # completion on it was a 502 (no_base_url). A PATCH that leaves it so is refused too; one that touches neither
    # field (a deactivation) goes through.
    admin = context_for(add_user(db, role="admin"), role="admin")
    bare = {"model_id": "nim-bare", "provider": "openai-compatible"}
    refused = call("catalog", models_event("POST", admin, bare))
    assert refused["statusCode"] == 422, refused["body"]
    assert [error["loc"] for error in body_of(refused)["errors"]] == [["body", "base_url"]]
    resource = call(
        "catalog",
        models_event(
            "POST", admin, {"resource_name": "r", "resource_type": "nvidia-nim"}, path="/v1/deployed-resources"
        ),
    )
    assert resource["statusCode"] == 201, resource["body"]
    resource_id = body_of(resource)["id"]
    on_bare_resource = call("catalog", models_event("POST", admin, {**bare, "deployed_resource_id": resource_id}))
    assert on_bare_resource["statusCode"] == 422
    assert db.execute("SELECT count(*) FROM model_configurations WHERE model_id = 'nim-bare'").fetchone() == (0,)
    model_id = str(add_model(db, model_id="nim-old", provider="openai-compatible"))  # stored before the check
    patch = dict(
        path=f"/v1/model-configurations/{model_id}", resource="/v1/model-configurations/{id}", params={"id": model_id}
    )
    renamed = call(
        "catalog", models_event("PATCH", admin, {"provider": "openai-compatible", "display_name": "x"}, **patch)
    )
    assert renamed["statusCode"] == 422, renamed["body"]
    deactivated = call("catalog", models_event("PATCH", admin, {"is_active": False}, **patch))
    assert deactivated["statusCode"] == 200, deactivated["body"]


def test_a_resource_whose_endpoint_models_are_called_at_is_not_deleted_nor_emptied(ai_app, db):
    # A model with no base_url of its own is called at its resource's endpoint_url: deleting the resource (the
    # foreign key sets the model's link null) or removing its endpoint left a model every completion answered 502.
    admin = context_for(add_user(db, role="admin"), role="admin")
    resource_id = str(
        db.execute(
            "INSERT INTO deployed_resources (resource_name, resource_type, endpoint_url) "
            "VALUES ('nim', 'nvidia-nim', 'http://127.0.0.1:9/v1') RETURNING id"
        ).fetchone()[0]
    )
    linked = {"model_id": "nim-served", "provider": "openai-compatible", "deployed_resource_id": resource_id}
    assert call("catalog", models_event("POST", admin, linked))["statusCode"] == 201
    one = dict(
        path=f"/v1/deployed-resources/{resource_id}", resource="/v1/deployed-resources/{id}", params={"id": resource_id}
    )
    deleted = call("catalog", models_event("DELETE", admin, **one))
    emptied = call("catalog", models_event("PATCH", admin, {"endpoint_url": None}, **one))
    for reply in (deleted, emptied):
        assert reply["statusCode"] == 409, reply["body"]
        assert body_of(reply)["reason"] == "resource_in_use" and "nim-served" in body_of(reply)["detail"]
    assert db.execute("SELECT endpoint_url FROM deployed_resources").fetchone() == ("http://127.0.0.1:9/v1",)
    # Once the model has a base_url of its own, the resource goes.
    db.execute("UPDATE model_configurations SET base_url = 'http://127.0.0.1:9/v1' WHERE model_id = 'nim-served'")
    assert call("catalog", models_event("DELETE", admin, **one))["statusCode"] == 204


def test_an_idempotency_key_in_both_the_header_and_the_body_must_be_the_same(ai_app, db):
    # As on a send: the same key in both is one key; two different keys are a 422 naming the header, and nothing is
    # stored or asked (the body's key used to win silently).
    add_model(db)
    user = make_user(db)
    conversation, thread = add_thread(db, user, model_id="local-echo")
    me, path = jwt_principal(user), f"/v1/threads/{thread}/completions"
    same = call_route(
        "POST", path, me, body={"content": "hi", "idempotency_key": "k"}, headers={"Idempotency-Key": "k"}
    )
    assert same.status == 200, same.body
    differ = call_route(
        "POST", path, me, body={"content": "hi again", "idempotency_key": "b"}, headers={"Idempotency-Key": "h"}
    )
    assert differ.status == 422 and [item["loc"] for item in differ.body["errors"]] == [["header", "idempotency-key"]]
    assert db.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation,)).fetchone()[0] == 2
    assert len(ai_app.events) == 1
