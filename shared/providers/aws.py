"""Amazon Bedrock (Converse API) and SageMaker endpoints through boto3 clients handed in by the registry."""

from __future__ import annotations

import json
from typing import Any

from shared.providers.base import (
    ProviderError,
    ProviderRequest,
    ProviderResult,
    TokenUsage,
    alternating,
    estimate_tokens,
    provider_failed,
)

# AWS error codes that mean "try again later" or "took too long"; every other client error is a 502.
UNAVAILABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "ModelNotReadyException",
        "TooManyRequestsException",
        "InternalServerException",
    }
)
TIMEOUT_CODES = frozenset({"ModelTimeoutException", "RequestTimeout", "RequestTimeoutException"})


def translate_aws_error(provider: str, exc: Exception) -> ProviderError:
    """A botocore failure as a ProviderError; the message (which may echo the model's body) is dropped."""
    from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return provider_failed(provider, 504, type(exc).__name__)
    if isinstance(exc, EndpointConnectionError):
        return provider_failed(provider, 503, type(exc).__name__)
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "unknown"))
        if code in TIMEOUT_CODES:
            return provider_failed(provider, 504, code)
        if code in UNAVAILABLE_CODES:
            return provider_failed(provider, 503, code)
        return provider_failed(provider, 502, code)
    return provider_failed(provider, 502, type(exc).__name__)


class BedrockProvider:
    """Bedrock's Converse API: one request shape for every model family Bedrock hosts."""

    name = "bedrock"

    def __init__(self, client: Any):
        self._client = client

    def complete(self, request: ProviderRequest) -> ProviderResult:
        from botocore.exceptions import BotoCoreError, ClientError

        params: dict[str, Any] = {
            "modelId": request.model,
            "messages": [{"role": m.role, "content": [{"text": m.content}]} for m in alternating(request.turns)],
            "inferenceConfig": {
                "maxTokens": request.max_tokens,
                "temperature": request.temperature,
                **({"stopSequences": list(request.stop)} if request.stop else {}),
            },
        }
        if request.system:
            params["system"] = [{"text": request.system}]
        try:
            response = self._client.converse(**params)
        except (ClientError, BotoCoreError) as exc:
            raise translate_aws_error(self.name, exc) from None
        try:
            blocks = response["output"]["message"]["content"]
            text = "".join(block.get("text", "") for block in blocks)
            usage = response.get("usage", {})
            tokens = TokenUsage(
                input=int(usage.get("inputTokens", 0)) + int(usage.get("cacheReadInputTokens", 0)),
                output=int(usage.get("outputTokens", 0)),
                cached=int(usage.get("cacheReadInputTokens", 0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise provider_failed(self.name, 502, "malformed_response") from None
        return ProviderResult(text=text, usage=tokens, finish_reason=_finish(response.get("stopReason")))


# Converse's stop reasons in OpenAI's words: a client continues a "length" answer and shows a "content_filter"
# one as withheld, so neither may read as a whole answer ("stop").
BEDROCK_FINISH = {
    "max_tokens": "length",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}
# The finish reasons an OpenAI-compatible server sends that Confab passes on ("tool_calls" cannot come: no tools).
OPENAI_FINISH = frozenset({"length", "content_filter"})


def _finish(stop_reason: Any) -> str:
    return BEDROCK_FINISH.get(str(stop_reason), "stop")


class SageMakerProvider:
    """A SageMaker real-time endpoint serving a chat-messages JSON API (TGI, LMI, NIM on SageMaker)."""

    name = "sagemaker"

    def __init__(self, client: Any, *, max_response_bytes: int = 1_048_576):
        self._client = client
        self._max_response_bytes = max_response_bytes

    def complete(self, request: ProviderRequest) -> ProviderResult:
        from botocore.exceptions import BotoCoreError, ClientError

        payload = {
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            **({"stop": list(request.stop)} if request.stop else {}),
        }
        try:
            response = self._client.invoke_endpoint(
                EndpointName=request.model,
                ContentType="application/json",
                Accept="application/json",
                Body=json.dumps(payload).encode(),
            )
            raw = response["Body"].read(self._max_response_bytes + 1)
        except (ClientError, BotoCoreError) as exc:
            raise translate_aws_error(self.name, exc) from None
        if len(raw) > self._max_response_bytes:
            raise provider_failed(self.name, 502, "response_too_large")
        try:
            return parse_sagemaker_body(json.loads(raw), request)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise provider_failed(self.name, 502, "malformed_response") from None


def parse_sagemaker_body(body: Any, request: ProviderRequest) -> ProviderResult:
    """Chat-completions JSON (choices/usage) or the text-generation list shape [{generated_text}]."""
    if isinstance(body, dict) and "choices" in body:
        return parse_chat_completion(body)
    first = body[0] if isinstance(body, list) else body
    text = str(first["generated_text"])
    prompt = sum(estimate_tokens(m.content) for m in request.messages)
    return ProviderResult(text=text, usage=TokenUsage(input=prompt, output=estimate_tokens(text)))


def parse_chat_completion(body: dict[str, Any]) -> ProviderResult:
    """An OpenAI chat-completions response body as a ProviderResult."""
    choice = body["choices"][0]
    text = choice["message"]["content"] or ""
    usage = body.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    tokens = TokenUsage(
        input=int(usage.get("prompt_tokens", 0)),
        output=int(usage.get("completion_tokens", 0)),
        cached=int(details.get("cached_tokens") or 0),
    )
    finish = choice.get("finish_reason") if choice.get("finish_reason") in OPENAI_FINISH else "stop"
    return ProviderResult(text=str(text), usage=tokens, finish_reason=finish)
