"""Provider request and response shapes: Bedrock Converse and SageMaker through botocore's Stubber."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from shared.providers.aws import BedrockProvider, SageMakerProvider, parse_chat_completion
from shared.providers.base import (
    MESSAGE_OVERHEAD_TOKENS,
    ChatMessage,
    ProviderError,
    ProviderRequest,
    TokenUsage,
    alternating,
    most_tokens,
)
from shared.providers.local import LocalProvider

CANARY = "sk-canary-4f1c9e0b7d"

REQUEST = ProviderRequest(
    model="anthropic.claude-3-haiku",
    messages=(
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello"),
        ChatMessage("user", "What is 2+2?"),
    ),
    temperature=0.0,
    max_tokens=64,
)


def _client(service: str):
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")


def _converse_answer(text: str, *, stop_reason: str = "end_turn", **usage: int) -> dict:
    """A Converse response as Bedrock sends it: one text block, the stop reason, usage, metrics."""
    totals = {"totalTokens": usage.get("inputTokens", 0) + usage.get("outputTokens", 0)}
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": stop_reason,
        "usage": {**usage, **totals},
        "metrics": {"latencyMs": 100},
    }


def test_bedrock_sends_converse_shape_and_reads_usage_when_the_model_answers():
    client = _client("bedrock-runtime")
    stubber = Stubber(client)
    stubber.add_response(
        "converse",
        _converse_answer("4", inputTokens=20, outputTokens=1, cacheReadInputTokens=5),
        expected_params={
            "modelId": "anthropic.claude-3-haiku",
            "system": [{"text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [{"text": "Hi"}]},
                {"role": "assistant", "content": [{"text": "Hello"}]},
                {"role": "user", "content": [{"text": "What is 2+2?"}]},
            ],
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.0},
        },
    )
    with stubber:
        result = BedrockProvider(client).complete(REQUEST)
    assert result.text == "4"
    assert result.usage == TokenUsage(input=25, output=1, cached=5)
    assert result.finish_reason == "stop"


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("content_filtered", "content_filter"),
        ("guardrail_intervened", "content_filter"),
    ],
)
def test_bedrock_stop_reasons_read_as_openais_finish_reasons_a_filtered_answer_never_as_stop(
    stop_reason, finish_reason
):
    # A filtered answer read as "stop" looks whole to a client, which shows OpenAI's "content_filter" as withheld.
    client = _client("bedrock-runtime")
    stubber = Stubber(client)
    stubber.add_response("converse", _converse_answer("", stop_reason=stop_reason, inputTokens=20, outputTokens=0))
    with stubber:
        assert BedrockProvider(client).complete(REQUEST).finish_reason == finish_reason


@pytest.mark.parametrize(
    ("upstream", "finish_reason"),
    [("stop", "stop"), ("length", "length"), ("content_filter", "content_filter"), (None, "stop"), ("eos", "stop")],
)
def test_an_openai_shaped_answers_finish_reason_passes_on_length_and_content_filter(upstream, finish_reason):
    body = {"choices": [{"message": {"content": "x"}, "finish_reason": upstream}], "usage": {"prompt_tokens": 1}}
    assert parse_chat_completion(body).finish_reason == finish_reason


def test_bedrock_gets_turns_alternating_from_a_user_turn_when_the_context_has_neither():
    # Converse refuses a conversation that starts with an answer or has two turns of one role in a row.
    client = _client("bedrock-runtime")
    stubber = Stubber(client)
    stubber.add_response(
        "converse",
        _converse_answer("ok", inputTokens=9, outputTokens=1),
        expected_params={
            "modelId": "m",
            "messages": [
                {"role": "user", "content": [{"text": "one\n\ntwo"}]},
                {"role": "assistant", "content": [{"text": "three"}]},
                {"role": "user", "content": [{"text": "four"}]},
            ],
            "inferenceConfig": {"maxTokens": 8, "temperature": 0.0},
        },
    )
    turns = [("assistant", "zero"), ("user", "one"), ("user", "two"), ("assistant", "three"), ("user", "four")]
    request = ProviderRequest(model="m", messages=tuple(ChatMessage(r, c) for r, c in turns), max_tokens=8)  # type: ignore[arg-type]
    with stubber:
        assert BedrockProvider(client).complete(request).text == "ok"


def test_stop_sequences_go_to_bedrock_and_sagemaker_when_given():
    from dataclasses import replace

    request = replace(REQUEST, stop=("\n\n", "END"))
    bedrock = _client("bedrock-runtime")
    stubber = Stubber(bedrock)
    stubber.add_response(
        "converse",
        _converse_answer("4", stop_reason="stop_sequence", inputTokens=20, outputTokens=1),
        expected_params={
            "modelId": "anthropic.claude-3-haiku",
            "system": [{"text": "Be brief."}],
            "messages": [{"role": m.role, "content": [{"text": m.content}]} for m in REQUEST.turns],
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.0, "stopSequences": ["\n\n", "END"]},
        },
    )
    with stubber:
        assert BedrockProvider(bedrock).complete(request).finish_reason == "stop"
    sagemaker = _client("sagemaker-runtime")
    stubber = Stubber(sagemaker)
    expected_body = {
        "messages": [{"role": m.role, "content": m.content} for m in REQUEST.messages],
        "max_tokens": 64,
        "temperature": 0.0,
        "stop": ["\n\n", "END"],
    }
    stubber.add_response(
        "invoke_endpoint",
        {"Body": _streaming(b'[{"generated_text": "four"}]'), "ContentType": "application/json"},
        expected_params={
            "EndpointName": "anthropic.claude-3-haiku",
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body": json.dumps(expected_body).encode(),
        },
    )
    with stubber:
        assert SageMakerProvider(sagemaker).complete(request).text == "four"


def test_local_provider_ends_its_answer_before_the_first_stop_sequence():
    from dataclasses import replace

    whole = LocalProvider().complete(REQUEST).text
    assert whole.startswith("[anthropic.claude-3-haiku] You said: What is 2+2?")
    cut = LocalProvider().complete(replace(REQUEST, stop=("2?", "said")))
    assert cut.text == "[anthropic.claude-3-haiku] You " and cut.finish_reason == "stop"
    assert LocalProvider().complete(replace(REQUEST, stop=("nowhere",))).text == whole


def test_most_tokens_bounds_any_tokenizer_by_utf8_bytes_and_format_tokens_per_message():
    messages = [ChatMessage("user", "好好"), ChatMessage("assistant", "ab")]
    assert most_tokens(messages) == (6 + MESSAGE_OVERHEAD_TOKENS) + (2 + MESSAGE_OVERHEAD_TOKENS)
    assert alternating([ChatMessage("assistant", "x")]) == ()


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 503), ("ModelTimeoutException", 504), ("ValidationException", 502)],
)
def test_bedrock_error_maps_to_status_without_the_provider_message_when_the_call_fails(code, status, capsys):
    client = _client("bedrock-runtime")
    stubber = Stubber(client)
    stubber.add_client_error("converse", service_error_code=code, service_message=f"bad key {CANARY}")
    with stubber, pytest.raises(ProviderError) as caught:
        BedrockProvider(client).complete(REQUEST)
    assert caught.value.status == status
    assert caught.value.__cause__ is None
    assert CANARY not in str(caught.value) and CANARY not in repr(caught.value.extra)
    assert CANARY not in capsys.readouterr().out


def _streaming(payload: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(payload), len(payload))


def test_sagemaker_sends_messages_json_and_reads_chat_completion_usage_when_the_endpoint_answers():
    client = _client("sagemaker-runtime")
    stubber = Stubber(client)
    body = {
        "choices": [{"message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 10}},
    }
    expected_body = json.dumps(
        {
            "messages": [{"role": m.role, "content": m.content} for m in REQUEST.messages],
            "max_tokens": 64,
            "temperature": 0.0,
        }
    ).encode()
    stubber.add_response(
        "invoke_endpoint",
        {"Body": _streaming(json.dumps(body).encode()), "ContentType": "application/json"},
        expected_params={
            "EndpointName": "anthropic.claude-3-haiku",
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body": expected_body,
        },
    )
    with stubber:
        result = SageMakerProvider(client).complete(REQUEST)
    assert result.text == "4"
    assert result.usage == TokenUsage(input=30, output=2, cached=10)


def test_sagemaker_reads_text_generation_list_shape_when_the_container_is_tgi():
    client = _client("sagemaker-runtime")
    stubber = Stubber(client)
    stubber.add_response(
        "invoke_endpoint", {"Body": _streaming(b'[{"generated_text": "four"}]'), "ContentType": "application/json"}
    )
    with stubber:
        result = SageMakerProvider(client).complete(REQUEST)
    assert result.text == "four" and result.usage.output > 0 and result.usage.input > 0


@pytest.mark.parametrize("prompt_tokens", [-30, 2**31])
def test_sagemaker_answer_is_a_502_when_the_container_reports_a_token_count_out_of_range(prompt_tokens):
    client = _client("sagemaker-runtime")
    stubber = Stubber(client)
    body = {
        "choices": [{"message": {"content": "4"}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2},
    }
    stubber.add_response(
        "invoke_endpoint", {"Body": _streaming(json.dumps(body).encode()), "ContentType": "application/json"}
    )
    with stubber, pytest.raises(ProviderError) as caught:
        SageMakerProvider(client).complete(REQUEST)
    assert caught.value.status == 502


def test_sagemaker_answer_is_a_502_when_the_container_reports_more_cached_tokens_than_a_usage_event_holds():
    # Accepted, the count reached the usage event only after the answer was stored: building the event failed in
    # the completion's `finally`, so the caller got a 500 for a stored answer and its usage was never recorded.
    client = _client("sagemaker-runtime")
    stubber = Stubber(client)
    body = {
        "choices": [{"message": {"content": "4"}}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 2**31}},
    }
    stubber.add_response(
        "invoke_endpoint", {"Body": _streaming(json.dumps(body).encode()), "ContentType": "application/json"}
    )
    with stubber, pytest.raises(ProviderError) as caught:
        SageMakerProvider(client).complete(REQUEST)
    assert caught.value.status == 502


def test_sagemaker_model_error_is_502_without_its_body_when_the_container_fails(capsys):
    client = _client("sagemaker-runtime")
    stubber = Stubber(client)
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message=f"upstream said {CANARY}",
        http_status_code=424,
    )
    with stubber, pytest.raises(ProviderError) as caught:
        SageMakerProvider(client).complete(REQUEST)
    assert caught.value.status == 502
    assert CANARY not in str(caught.value) and CANARY not in capsys.readouterr().out


def test_sagemaker_refuses_a_body_over_the_cap_when_the_endpoint_answers_too_much():
    client = _client("sagemaker-runtime")
    stubber = Stubber(client)
    stubber.add_response("invoke_endpoint", {"Body": _streaming(b"[" + b" " * 5000 + b"]")})
    with stubber, pytest.raises(ProviderError) as caught:
        SageMakerProvider(client, max_response_bytes=1024).complete(REQUEST)
    assert caught.value.status == 502


def test_local_provider_is_deterministic_and_counts_tokens_when_asked_twice():
    provider = LocalProvider()
    first, second = provider.complete(REQUEST), provider.complete(REQUEST)
    assert first == second
    assert "What is 2+2?" in first.text
    assert first.usage.input > 0 and first.usage.output > 0 and first.usage.cached == 0
    other = provider.complete(ProviderRequest(model="m", messages=(ChatMessage("user", "What is 2+2?"),)))
    assert other.text != first.text
