"""The OpenAI-compatible provider against a fake chat-completions server on loopback."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from shared.providers.base import ChatMessage, ProviderError, ProviderRequest, TokenUsage
from shared.providers.endpoints import check_endpoint_url
from shared.providers.openai_compatible import OpenAICompatibleProvider

CANARY = "sk-canary-77aa01"

REQUEST = ProviderRequest(
    model="meta/llama3-8b", messages=(ChatMessage("system", "S"), ChatMessage("user", "Q")), max_tokens=16
)


class FakeUpstream:
    """Answers each POST with the next scripted (status, headers, body, delay)."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], bytes, float]] = []
        self.requests: list[dict[str, Any]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                upstream.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(self.rfile.read(length))}
                )
                status, headers, body, delay = upstream.script.pop(0)
                time.sleep(delay)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, status: int, body: Any, *, headers: dict[str, str] | None = None, delay: float = 0) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.script.append((status, {"Content-Type": "application/json", **(headers or {})}, raw, delay))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    yield fake
    fake.close()


OK_BODY = {
    "id": "cmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}},
}


def test_posts_chat_completion_with_bearer_key_and_reads_usage_when_upstream_answers(upstream):
    upstream.answer(200, OK_BODY)
    result = OpenAICompatibleProvider(upstream.url, api_key="k-123").complete(REQUEST)
    assert result.text == "A" and result.usage == TokenUsage(input=12, output=3, cached=4)
    sent = upstream.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == "Bearer k-123"
    assert sent["body"]["model"] == "meta/llama3-8b" and sent["body"]["stream"] is False
    assert sent["body"]["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]


def test_posts_stop_sequences_only_when_given(upstream):
    from dataclasses import replace

    upstream.answer(200, OK_BODY)
    upstream.answer(200, OK_BODY)
    provider = OpenAICompatibleProvider(upstream.url)
    provider.complete(REQUEST)
    provider.complete(replace(REQUEST, stop=("###",)))
    assert "stop" not in upstream.requests[0]["body"] and upstream.requests[1]["body"]["stop"] == ["###"]


@pytest.mark.parametrize(("upstream_status", "status"), [(500, 502), (401, 502), (429, 503), (503, 503), (504, 504)])
def test_error_status_maps_without_the_upstream_body_when_upstream_fails(upstream, upstream_status, status, capsys):
    upstream.answer(upstream_status, {"error": {"message": f"invalid key {CANARY}"}})
    with pytest.raises(ProviderError) as caught:
        OpenAICompatibleProvider(upstream.url, api_key=CANARY).complete(REQUEST)
    assert caught.value.status == status
    assert CANARY not in str(caught.value) and CANARY not in json.dumps(caught.value.extra)
    assert CANARY not in capsys.readouterr().out


def test_redirect_is_not_followed_when_upstream_answers_302(upstream):
    upstream.answer(302, b"", headers={"Location": "http://169.254.169.254/latest/meta-data"})
    with pytest.raises(ProviderError) as caught:
        OpenAICompatibleProvider(upstream.url).complete(REQUEST)
    assert caught.value.status == 502 and len(upstream.requests) == 1


def test_times_out_with_504_when_upstream_is_slow(upstream):
    upstream.answer(200, OK_BODY, delay=1.5)
    with pytest.raises(ProviderError) as caught:
        OpenAICompatibleProvider(upstream.url, timeout_s=0.3).complete(REQUEST)
    assert caught.value.status == 504


@contextlib.contextmanager
def trickling_upstream(answer: bytes, *, sent_at_once: int, gap_s: float) -> Iterator[str]:
    """A server that reads one request, sends the first `sent_at_once` bytes of `answer`, then one byte per `gap_s`."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(answer[:sent_at_once])
            for i in range(sent_at_once, len(answer)):
                if done.wait(gap_s):
                    return
                conn.sendall(answer[i : i + 1])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        done.set()
        thread.join(5)
        listener.close()


TRICKLED_BODY = json.dumps(OK_BODY).encode()
TRICKLED_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: "
    + b"p" * 40
    + f"\r\nContent-Length: {len(TRICKLED_BODY)}\r\n\r\n".encode()
    + TRICKLED_BODY
)


@pytest.mark.parametrize(
    "sent_at_once",
    [len(TRICKLED_ANSWER) - len(TRICKLED_BODY), 20],
    ids=["body-trickles", "headers-trickle"],
)
def test_times_out_with_504_near_the_deadline_when_upstream_sends_a_byte_at_a_time(sent_at_once):
    # Each byte comes well inside the socket timeout; together they would take 10 s or more.
    with trickling_upstream(TRICKLED_ANSWER, sent_at_once=sent_at_once, gap_s=0.1) as url:
        started = time.monotonic()
        with pytest.raises(ProviderError) as caught:
            OpenAICompatibleProvider(url, timeout_s=0.5).complete(REQUEST)
        elapsed = time.monotonic() - started
    assert caught.value.status == 504
    assert elapsed < 1.5, f"deadline 0.5 s, the call took {elapsed:.1f} s"


def test_answer_is_read_when_upstream_trickles_it_within_the_deadline():
    with trickling_upstream(TRICKLED_ANSWER, sent_at_once=len(TRICKLED_ANSWER) - 10, gap_s=0.01) as url:
        result = OpenAICompatibleProvider(url, timeout_s=5).complete(REQUEST)
    assert result.text == "A"


def test_body_over_the_cap_is_502_when_upstream_answers_too_much(upstream):
    upstream.answer(200, b"x" * 200_000)
    with pytest.raises(ProviderError) as caught:
        OpenAICompatibleProvider(upstream.url, max_response_bytes=10_000).complete(REQUEST)
    assert caught.value.status == 502


def test_malformed_json_is_502_when_upstream_answers_garbage(upstream):
    upstream.answer(200, b"<html>oops</html>")
    with pytest.raises(ProviderError) as caught:
        OpenAICompatibleProvider(upstream.url).complete(REQUEST)
    assert caught.value.status == 502


def test_guard_refuses_a_loopback_base_url_before_connecting_when_private_endpoints_are_off(upstream):
    with pytest.raises(ProviderError) as caught:
        OpenAICompatibleProvider(upstream.url, guard=check_endpoint_url).complete(REQUEST)
    assert caught.value.status == 502 and upstream.requests == []


def test_a_lookup_that_hangs_for_one_endpoint_holds_up_no_other_endpoints_call(upstream):
    # A lookup cut off at the deadline keeps running until the resolver gives up. They shared four threads: a few
    # calls to an endpoint whose name server does not answer left every later call, to any endpoint, queued
    # behind them until its own deadline (a 504 for a URL that needs no lookup at all).
    upstream.answer(200, OK_BODY)
    released = threading.Event()

    def hanging_lookup(url: str) -> list[str]:
        released.wait(10)
        return ["127.0.0.1"]

    try:
        for _ in range(8):
            with pytest.raises(ProviderError) as caught:
                OpenAICompatibleProvider("http://hangs.example/v1", timeout_s=0.1, guard=hanging_lookup).complete(
                    REQUEST
                )
            assert caught.value.status == 504
        result = OpenAICompatibleProvider(upstream.url, timeout_s=1, guard=lambda url: ["127.0.0.1"]).complete(REQUEST)
        assert result.text == "A"
    finally:
        released.set()


def test_a_name_lookup_that_hangs_is_cut_off_at_the_deadline_with_504(upstream):
    # getaddrinfo takes no timeout: a resolver that does not answer held the call for as long as it liked.
    upstream.answer(200, OK_BODY)

    def slow_lookup(url: str) -> list[str]:
        time.sleep(2)
        return ["127.0.0.1"]

    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        OpenAICompatibleProvider(upstream.url, timeout_s=0.3, guard=slow_lookup).complete(REQUEST)
    assert caught.value.status == 504 and time.monotonic() - started < 1.5
    assert upstream.requests == []


def test_the_next_address_is_tried_when_the_first_cannot_be_reached(upstream):
    # A host with an AAAA and an A record, from a subnet without IPv6: the first address looked up fails at once.
    upstream.answer(200, OK_BODY)
    result = OpenAICompatibleProvider(upstream.url, guard=lambda url: ["::1", "127.0.0.1"]).complete(REQUEST)
    assert result.text == "A" and len(upstream.requests) == 1


def test_refused_connection_is_503_when_nothing_listens():
    with pytest.raises(ProviderError) as caught:
        OpenAICompatibleProvider("http://127.0.0.1:1/v1", timeout_s=2).complete(REQUEST)
    assert caught.value.status == 503
