"""OpenAI's chat-completions and models shapes, translated to and from the completion service."""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal
from urllib.parse import unquote
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.db import Database, UnitOfWork
from shared.errors import NotFoundError, UnprocessableError
from shared.providers.base import ChatMessage
from shared.repositories.catalog import CatalogRepository, ModelRow
from shared.services.completions import CompletionService


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None

    @field_validator("content")
    @classmethod
    def _utf8(cls, content: str | list[ContentPart] | None) -> str | list[ContentPart] | None:
        # JSON's "\ud800" decodes to a lone surrogate, which no UTF-8 text holds. A plain `str` field refuses it
        # (pydantic's string_unicode); inside this union it got through, and the cost estimate's encode() was a 500.
        texts = [content] if isinstance(content, str) else [part.text or "" for part in content or ()]
        for text in texts:
            try:
                text.encode()
            except UnicodeEncodeError:
                raise ValueError("must be Unicode text (it holds a lone surrogate)") from None
        return content


OPENAI_DEFAULT_TEMPERATURE = 1.0


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = False


StopSequence = Annotated[str, Field(min_length=1, max_length=1000)]


class ChatCompletionRequest(BaseModel):
    """The fields Confab honours; others OpenAI defines are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00]*$")  # no catalog id holds a NUL
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=1000)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    # At most four, as OpenAI takes (Bedrock's models take four to a few thousand); none may be empty.
    stop: StopSequence | Annotated[list[StopSequence], Field(max_length=4)] | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None  # the deprecated form of tools
    tool_choice: Any = None
    function_call: Any = None  # the deprecated form of tool_choice
    n: int | None = Field(1, ge=1, le=1)


class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: ChoiceMessage
    finish_reason: str
    logprobs: None = None


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def _text(index: int, message: OpenAIMessage) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    if any(part.type != "text" for part in message.content):
        raise UnprocessableError(
            "Only text content parts are supported.", errors=[{"loc": ["body", "messages", str(index), "content"]}]
        )
    return "".join(part.text or "" for part in message.content)


def create_chat_completion(
    service: CompletionService, user_id: UUID, body: ChatCompletionRequest
) -> ChatCompletionResponse:
    """POST /v1/chat/completions: the whole answer (sent as it is, or as an event stream by `event_stream`)."""
    if (body.tools and body.tool_choice != "none") or (body.functions and body.function_call != "none"):
        # Answering without them would look like a model that chose not to call a tool: an agent would go on
        # as if it had. Refused, as OpenAI-compatible servers refuse tools for a model that cannot call them.
        raise UnprocessableError(
            "Tool calling is not supported; send no tools (or tool_choice 'none').",
            errors=[{"loc": ["body", "tools" if body.tools else "functions"]}],
        )
    messages = [
        ChatMessage("system" if m.role in ("system", "developer") else m.role, _text(i, m))  # type: ignore[arg-type]
        for i, m in enumerate(body.messages)
    ]
    answer = service.chat(
        user_id,
        model_id=body.model,
        messages=messages,
        # OpenAI's default is 1: a client that leaves it out asks for sampling, and gets a fresh answer each time
        # (a "regenerate"), not the cached greedy one. Thread completions default to 0 (docs/ai.md).
        temperature=OPENAI_DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        stop=[body.stop] if isinstance(body.stop, str) else body.stop or (),
        streaming=bool(body.stream),
    )
    usage = answer.usage
    response = ChatCompletionResponse(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=body.model,
        choices=[Choice(message=ChoiceMessage(content=answer.text), finish_reason=answer.finish_reason)],
        usage=Usage(
            prompt_tokens=usage.tokens_input,
            completion_tokens=usage.tokens_output,
            total_tokens=usage.tokens_input + usage.tokens_output,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.tokens_cached),
        ),
    )
    return response


def event_stream(answer: ChatCompletionResponse, *, include_usage: bool) -> str:
    """A finished answer as OpenAI's `stream: true` body: server-sent `chat.completion.chunk` events (the role,
    the content, the finish reason, with `include_usage` a last chunk with no choices and the usage), then
    `[DONE]`. The answer is complete before the first event is sent (API Gateway's Lambda proxy integration
    hands a response over whole), so a streaming client reads every chunk at once rather than token by token.
    """
    choice = answer.choices[0]
    usage = {"usage": None} if include_usage else {}

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        event = {
            "id": answer.id,
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.model,
            "system_fingerprint": answer.system_fingerprint,
            "choices": choices,
            **usage,
            **extra,
        }
        return f"data: {json.dumps(event, separators=(',', ':'))}\n\n"

    def delta(fields: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": fields, "logprobs": None, "finish_reason": finish_reason}]

    events = [
        chunk(delta({"role": "assistant", "content": "", "refusal": None})),
        chunk(delta({"content": choice.message.content})),
        chunk(delta({}, choice.finish_reason)),
    ]
    if include_usage:
        events.append(chunk([], usage=answer.usage.model_dump(mode="json")))
    return "".join(events) + "data: [DONE]\n\n"


def _card(row: ModelRow) -> ModelCard:
    return ModelCard(id=row.model_id, created=int(row.created_at.timestamp()), owned_by=row.provider)


def retrieve_model(db: Database, model_id: str) -> ModelCard:
    """GET /v1/models/{id}: an active model. The openai package percent-encodes the id as one path segment
    (`meta%2Fllama-3.1-8b-instruct`); a catalog id holds no "%", so decoding an id that arrived decoded is harmless.
    """
    model_id = unquote(model_id)
    # No catalog id holds a NUL (PostgreSQL text cannot): looked up, it was a 422 "cannot be stored" for a read.
    row = None if "\x00" in model_id else db.read(lambda uow: CatalogRepository(uow.conn).model_by_model_id(model_id))
    if row is None or not row.is_active:
        raise NotFoundError("No such model.")
    return _card(row)


def list_models(db: Database) -> dict[str, Any]:
    """GET /v1/models: the active catalog entries."""

    def work(uow: UnitOfWork) -> ModelList:
        rows = CatalogRepository(uow.conn).list_models(active_only=True, after=None, limit=1000)
        return ModelList(data=[_card(r) for r in rows])

    return db.read(work).model_dump(mode="json")
