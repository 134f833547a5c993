"""POST /v1/threads/{id}/completions: ask the thread's model, with the thread as context (a participant, or an
anonymous conversation's token in a thread of its own conversation when ANONYMOUS_AI_MODEL_ID is set)."""

from __future__ import annotations

from uuid import UUID

from aws_lambda_powertools.event_handler import Response
from pydantic import Field

from functions._http import lambda_entry, make_resolver, principal_of
from functions._params import IdempotencyKeyHeader, idempotency_key_of
from functions._replies import json_body
from shared.bootstrap import completion_service
from shared.models.ids import PathId
from shared.models.strict import Strict
from shared.services.completions import ThreadCompletion

app = make_resolver()


class CompletionRequest(Strict):
    content: str = Field(min_length=1)  # at most MESSAGE_MAX_CHARS, as a message's (the service checks)
    model_id: str | None = Field(None, min_length=1, max_length=255)
    template_id: UUID | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


@app.post(
    "/v1/threads/<id>/completions",
    summary="Ask the model in a thread",
    tags=["completions"],
    responses={200: {"description": "The answer", "content": {"application/json": {"model": ThreadCompletion}}}},
)
def post_completion(
    id: PathId,
    body: CompletionRequest,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response[str]:
    principal = principal_of(app)
    key = idempotency_key_of(body.idempotency_key, idempotency_key)
    if principal.is_anonymous:
        assert principal.conversation_id is not None
        address = app.current_event.request_context.identity.source_ip or "unknown"
        anonymous = completion_service().complete_anonymously(
            principal.conversation_id,
            id,
            address=address,
            content=body.content,
            model_id=body.model_id,
            template_id=body.template_id,
            temperature=body.temperature,
            max_tokens=body.max_tokens,
            idempotency_key=key,
        )
        return json_body(anonymous, 200)
    user_id = principal.require_user()
    answer = completion_service().complete_in_thread(
        user_id,
        id,
        content=body.content,
        model_id=body.model_id,
        template_id=body.template_id,
        temperature=body.temperature,
        max_tokens=body.max_tokens,
        idempotency_key=key,
    )
    return json_body(answer, 200)


lambda_handler = lambda_entry(app)
