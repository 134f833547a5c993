"""The OpenAI-compatible API: POST /v1/chat/completions, GET /v1/models[/{id}] (API key or JWT)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from functions._http import lambda_entry, make_resolver, principal_of
from functions._replies import json_body, replies
from shared.bootstrap import completion_service, container
from shared.services.openai_api import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ModelCard,
    create_chat_completion,
    event_stream,
    list_models,
    retrieve_model,
)

app = make_resolver()


@app.post(
    "/v1/chat/completions",
    summary="Create a chat completion (OpenAI-compatible)",
    tags=["openai"],
    responses={
        200: {
            "description": "The answer; with `stream: true`, as server-sent events (chunks, then `data: [DONE]`)",
            "content": {
                "application/json": {"model": ChatCompletionResponse},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        }
    },
)
def post_chat_completion(body: ChatCompletionRequest) -> Response[str]:
    user_id = principal_of(app).require_user()
    answer = create_chat_completion(completion_service(), user_id, body)
    if not body.stream:
        return json_body(answer, 200)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return Response(
        status_code=200,
        content_type="text/event-stream",
        body=event_stream(answer, include_usage=include_usage),
        headers={"Cache-Control": "no-cache"},
    )


@app.get("/v1/models", summary="List models (OpenAI-compatible)", tags=["openai"])
def get_models() -> dict[str, Any]:
    principal_of(app).require_user()
    return list_models(container().db)


@app.get(
    "/v1/models/<id>",
    summary="Retrieve a model (OpenAI-compatible)",
    tags=["openai"],
    responses=replies(ModelCard, 200),
)
def get_model(id: Annotated[str, Path(max_length=1000)]) -> Response[str]:
    principal_of(app).require_user()
    return json_body(retrieve_model(container().db, id), 200)


lambda_handler = lambda_entry(app)
