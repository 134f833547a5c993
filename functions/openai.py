"""The OpenAI-compatible API: POST /v1/chat/completions and GET /v1/models (API key or JWT)."""

from __future__ import annotations

from typing import Any

from functions._http import lambda_entry, make_resolver, principal_of
from shared.bootstrap import completion_service, container
from shared.services.openai_api import ChatCompletionRequest, create_chat_completion, list_models

app = make_resolver()


@app.post("/v1/chat/completions", summary="Create a chat completion (OpenAI-compatible)", tags=["openai"])
def post_chat_completion(body: ChatCompletionRequest) -> dict[str, Any]:
    user_id = principal_of(app).require_user()
    return create_chat_completion(completion_service(), user_id, body)


@app.get("/v1/models", summary="List models (OpenAI-compatible)", tags=["openai"])
def get_models() -> dict[str, Any]:
    principal_of(app).require_user()
    return list_models(container().db)


lambda_handler = lambda_entry(app)
