"""The local server's HTTP layer over a real socket: framing, slow or idle clients, its own errors, large uploads.

Driven in process with a stand-in API (no database), so each case is about the HTTP layer alone.
"""

from __future__ import annotations

import http.client
import importlib
import inspect
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import routes
from shared.local.server import LocalApi, LocalResponse, PooledHTTPServer, make_server
from shared.settings import Settings, get_settings
from shared.storage import local_storage, storage_key
from tests.helpers import upload_form

pytestmark = pytest.mark.e2e

IDLE_TIMEOUT_S = 1.0
HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"


class RecordingApi:
    """Stands in for LocalApi: keeps each body it is handed and answers 200 JSON."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def handle(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> LocalResponse:
        self.bodies.append(body)
        return LocalResponse(200, [("Content-Type", "application/json")], json.dumps({"len": len(body)}).encode())


def _serving(server: PooledHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def api() -> RecordingApi:
    return RecordingApi()


@pytest.fixture
def port(api: RecordingApi) -> Iterator[int]:
    yield from _serving(make_server(api, "127.0.0.1", 0, idle_timeout_s=IDLE_TIMEOUT_S))  # type: ignore[arg-type]


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body off `sock`."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def _exchange(port: int, raw: bytes, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return _read_response(sock)


def _assert_problem(answer: tuple[int, dict[str, str], bytes], status: int) -> None:
    got_status, headers, body = answer
    assert got_status == status, (got_status, body)
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == status


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "+5", " 5 5"])
def test_malformed_content_length_is_400_problem_when_posted(port, api, length):
    raw = f"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{}}".encode()

    _assert_problem(_exchange(port, raw), 400)
    assert api.bodies == []


def test_conflicting_content_lengths_are_400_problem_when_posted(port, api):
    raw = b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"

    _assert_problem(_exchange(port, raw), 400)
    assert api.bodies == []


def test_chunked_body_reaches_the_handler_and_the_connection_stays_usable_when_sent_chunked(port, api):
    body = b'{"login":"a","password":"b"}'
    raw = (
        b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\n" + body[:5] + b"\r\n" + f"{len(body) - 5:x}".encode() + b"\r\n" + body[5:] + b"\r\n"
        b"0\r\nX-Trailer: t\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        status, _, answer = _read_response(sock)
        assert (status, json.loads(answer)) == (200, {"len": len(body)})
        sock.sendall(HEALTH)
        assert _read_response(sock)[0] == 200

    assert api.bodies == [body, b""]


def test_chunked_body_over_the_api_limit_is_413_problem_when_sent_chunked(port, api, monkeypatch):
    monkeypatch.setattr("shared.local.server.MAX_BODY_BYTES", 10)
    raw = (
        b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"8\r\n12345678\r\n8\r\n12345678\r\n"
    )

    _assert_problem(_exchange(port, raw), 413)
    assert api.bodies == []


@pytest.mark.parametrize("chunk", [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n"])
def test_malformed_chunked_body_is_400_problem_when_sent_chunked(port, api, chunk):
    raw = b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk

    _assert_problem(_exchange(port, raw), 400)
    assert api.bodies == []


def test_unknown_transfer_coding_is_501_problem_when_posted(port, api):
    raw = b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"

    _assert_problem(_exchange(port, raw), 501)
    assert api.bodies == []


def test_oversized_header_is_431_problem_not_html_when_sent(port):
    raw = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"

    _assert_problem(_exchange(port, raw), 431)


def test_malformed_request_line_is_400_problem_not_html_when_sent(port):
    _assert_problem(_exchange(port, b"GET /v1/health HTTP/9\r\n\r\n"), 400)


def test_idle_keep_alive_clients_do_not_starve_a_new_client_when_every_worker_served_one(port):
    # One more client than workers, each keeping its HTTP/1.1 connection open after a request (a browser, an
    # SDK's pool): without a socket timeout each idle connection holds its worker for good.
    idle: list[socket.socket] = []
    try:
        for _ in range(9):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            idle[-1].sendall(HEALTH)
            assert _read_response(idle[-1])[0] == 200
        assert _exchange(port, HEALTH, timeout=5)[0] == 200
    finally:
        for sock in idle:
            sock.close()


def test_stalled_request_bodies_are_dropped_and_do_not_starve_a_new_client_when_every_worker_waits(port, api):
    stalled: list[socket.socket] = []
    try:
        for _ in range(9):
            stalled.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            stalled[-1].sendall(b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}")
        assert _exchange(port, HEALTH, timeout=5)[0] == 200
        _assert_problem(_read_response(stalled[0]), 408)
    finally:
        for sock in stalled:
            sock.close()
    assert api.bodies == [b""]


class HeldApi:
    """Answers /v1/slow only once `release` is set, anything else at once."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()

    def handle(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> LocalResponse:
        if raw_path == "/v1/slow":
            self.arrived.set()
            self.release.wait(10)
        return LocalResponse(200, [("Content-Type", "application/json")], b"{}")


def test_a_request_being_answered_gets_its_answer_and_idle_connections_are_closed_when_the_server_closes():
    # `confab serve` closes the server, then waits for the invocations in flight (shared/local/workers.py): their
    # answers must still reach the client, while idle keep-alive connections must not hold the exit.
    api = HeldApi()
    server = make_server(api, "127.0.0.1", 0, idle_timeout_s=5)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as idle,
        socket.create_connection(("127.0.0.1", port), timeout=5) as busy,
    ):
        idle.sendall(HEALTH)
        assert _read_response(idle)[0] == 200
        busy.sendall(b"GET /v1/slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert api.arrived.wait(5)
        server.shutdown()
        server.server_close()
        thread.join(5)

        assert idle.recv(1) == b""
        api.release.set()
        status, headers, _ = _read_response(busy)
        assert (status, headers["connection"]) == (200, "close")
        assert busy.recv(1) == b""


@pytest.fixture
def files_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setenv("CONFAB_STAGE", "test")
    monkeypatch.setenv("CONFAB_FILES_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("CONFAB_FILES_SECRET", "s" * 40)
    get_settings.cache_clear()
    try:
        yield from _serving(make_server(LocalApi(), "127.0.0.1", 0))
    finally:
        get_settings.cache_clear()


def _post_form(port: int, path: str, fields: dict[str, str], size: int) -> tuple[int, bytes]:
    """POSTs `fields` and then a file of `size` bytes as a form, the file sent in slices as a browser sends it."""
    content_type, form = upload_form(fields, b"<the file>")
    head, tail = form.split(b"<the file>")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", path)
    conn.putheader("Content-Type", content_type)
    conn.putheader("Content-Length", str(len(head) + size + len(tail)))
    conn.endheaders()
    try:
        conn.send(head)
        for _ in range(size // 65536):
            conn.send(b"x" * 65536)
        conn.send(b"x" * (size % 65536) + tail)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and hung up before the whole body was sent
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_upload_over_the_api_limit_but_within_file_max_bytes_is_stored_when_posted_to_the_upload_form(files_port):
    settings = Settings()
    size = settings.file_max_bytes  # over API Gateway's 10 MB, and the form's other fields beside it; S3 takes it
    key = storage_key(uuid.uuid4(), uuid.uuid4())
    storage = local_storage(settings, f"http://127.0.0.1:{files_port}")
    upload = storage.upload_target(key, "application/pdf", size, 600, None)

    assert _post_form(files_port, upload.url.split(str(files_port), 1)[1], upload.fields, size)[0] == 204
    assert storage.stored_size(key) == size


def test_upload_over_file_max_bytes_is_400_entity_too_large_without_reading_it_when_posted_to_local_files(
    files_port, monkeypatch
):
    # S3 answers a form over its policy's size 400 EntityTooLarge; the local server mirrors it.
    monkeypatch.setenv("FILE_MAX_BYTES", "1024")
    get_settings.cache_clear()

    status, body = _post_form(files_port, "/local-files/", {"key": "users/a/b"}, 4 * 65536 + 1024 * 1024)
    assert status == 400 and json.loads(body)["type"].endswith("/entity-too-large")


def test_a_preflight_is_answered_as_api_gateway_answers_it_when_the_origin_is_allowed(monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", "https://app.example.com")
    get_settings.cache_clear()
    try:
        local = LocalApi()
        allowed = local.handle("OPTIONS", "/v1/users/me", [("Origin", "https://app.example.com")], b"", "127.0.0.1")
        other = local.handle("OPTIONS", "/v1/users/me", [("Origin", "https://evil.example.net")], b"", "127.0.0.1")
        unknown = local.handle("OPTIONS", "/v1/nowhere", [("Origin", "https://app.example.com")], b"", "127.0.0.1")
    finally:
        get_settings.cache_clear()
    headers = dict(allowed.headers)
    assert allowed.status == 204 and headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert (
        "Authorization" in headers["Access-Control-Allow-Headers"]
        and "PATCH" in headers["Access-Control-Allow-Methods"]
    )
    assert other.status == 204 and "Access-Control-Allow-Origin" not in dict(other.headers)
    assert unknown.status == 404


class LargeBodyApi:
    """Answers every request with a large body, as a local file download does."""

    body = b"x" * (16 * 1024 * 1024)

    def handle(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> LocalResponse:
        return LocalResponse(200, [("Content-Type", "application/octet-stream")], self.body)


def test_a_large_answer_read_steadily_arrives_whole_when_it_takes_longer_than_the_idle_timeout():
    server = make_server(LargeBodyApi(), "127.0.0.1", 0, idle_timeout_s=IDLE_TIMEOUT_S)  # type: ignore[arg-type]
    for port in _serving(server):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(HEALTH)
            received = bytearray()
            started = time.monotonic()
            while (chunk := sock.recv(64 * 1024)) and len(received) < len(LargeBodyApi.body) + 200:
                received += chunk
                time.sleep(0.008)  # about 8 MiB/s: a throttled browser, never idle for long
                if received.find(b"\r\n\r\n") > 0 and len(received) - received.find(b"\r\n\r\n") - 4 >= len(
                    LargeBodyApi.body
                ):
                    break
        assert time.monotonic() - started > IDLE_TIMEOUT_S
        assert len(received) - received.find(b"\r\n\r\n") - 4 == len(LargeBodyApi.body)


APP_ORIGIN = "https://app.example.com"


def test_the_local_servers_own_answers_carry_cors_headers_as_api_gateways_gateway_responses_do(
    app_container, monkeypatch
):
    # A browser app reads a 401 only if it carries CORS headers; without them fetch() fails as a network error and
    # the app cannot tell that its access token expired (AWS: the gateway responses carry them, infra/api.py).
    monkeypatch.setenv("CORS_ORIGINS", APP_ORIGIN)
    get_settings.cache_clear()
    try:
        local = LocalApi()
        answers = {
            "the authorizer's 401": local.handle("GET", "/v1/users/me", [("Origin", APP_ORIGIN)], b"", "127.0.0.1"),
            "an unknown path's 404": local.handle("GET", "/v1/nowhere", [("Origin", APP_ORIGIN)], b"", "127.0.0.1"),
            "a 405": local.handle("PUT", "/v1/health", [("Origin", APP_ORIGIN)], b"", "127.0.0.1"),
        }
        foreign = local.handle("GET", "/v1/users/me", [("Origin", "https://evil.example.net")], b"", "127.0.0.1")
    finally:
        get_settings.cache_clear()
    assert [answer.status for answer in answers.values()] == [401, 404, 405]
    for name, answer in answers.items():
        headers = dict(answer.headers)
        assert headers.get("Access-Control-Allow-Origin") == APP_ORIGIN, name
        assert "Retry-After" in headers.get("Access-Control-Expose-Headers", ""), name
    assert foreign.status == 401 and "Access-Control-Allow-Origin" not in dict(foreign.headers)


SECOND_ORIGIN = "http://localhost:5173"
SLOW_BODY = b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nContent-Length: 100\r\n\r\n{{}}"
LONG_URL = b"GET /v1/health?q=" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\n\r\n"
LONG_HEADER = b"X-Big: " + b"a" * 70_000 + b"\r\n"
MANY_HEADERS = b"".join(b"X-%d: 1\r\n" % n for n in range(120))


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(SLOW_BODY, 408, id="408 a body that stops coming"),
        pytest.param(LONG_URL, 414, id="414 a long URL"),
        pytest.param(
            b"GET /v1/health HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\n" + LONG_HEADER + b"\r\n",
            431,
            id="431 a long header after Origin",
        ),
        pytest.param(
            b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + LONG_HEADER + b"Origin: {origin}\r\n\r\n",
            431,
            id="431 a long header before Origin",
        ),
        pytest.param(
            b"GET /v1/health HTTP/1.1\r\nOrigin: {origin}\r\n" + MANY_HEADERS + b"\r\n",
            431,
            id="431 too many headers after Origin",
        ),
        pytest.param(
            b"GET /v1/health HTTP/1.1\r\n" + MANY_HEADERS + b"Origin: {origin}\r\n\r\n",
            431,
            id="431 too many headers before Origin",
        ),
        pytest.param(
            b"\x16\x03\x01\x02\x00\x01\xfc\x03\x03garbage\r\nHost: x\r\nOrigin: {origin}\r\n\r\n",
            400,
            id="400 garbage for a request line",
        ),
        pytest.param(b"GET /v1/health HTTP/9\r\nOrigin: {origin}\r\n\r\n", 400, id="400 a malformed HTTP version"),
        pytest.param(b"GET /v1/health HTTP/2.0\r\nOrigin: {origin}\r\n\r\n", 505, id="505 an HTTP version past 1"),
        pytest.param(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nContent-Length: x\r\n\r\n",
            400,
            id="400 a malformed Content-Length",
        ),
        pytest.param(
            b"POST /v1/auth/login HTTP/1.1\r\nOrigin: {origin}\r\nContent-Length: 99999999\r\n\r\n",
            413,
            id="413 a body over the limit",
        ),
    ],
)
def test_the_http_layers_own_answers_carry_cors_headers_when_the_origin_is_allowed(port, monkeypatch, raw, status):
    # A browser app reads an answer only if it carries CORS headers: a slow upload's 408, a long query's 414 or a
    # large header's 431 would otherwise be a bare network error. http.server gives up on a malformed request line, a
    # 414 or a 431 before it parses the headers, Origin included.
    monkeypatch.setenv("CORS_ORIGINS", f"{APP_ORIGIN},{SECOND_ORIGIN}")
    get_settings.cache_clear()
    try:
        allowed = _exchange(port, raw.replace(b"{origin}", SECOND_ORIGIN.encode()))
        foreign = _exchange(port, raw.replace(b"{origin}", b"https://evil.example.net"))
    finally:
        get_settings.cache_clear()
    _assert_problem(allowed, status)
    assert allowed[1].get("access-control-allow-origin") == SECOND_ORIGIN
    assert allowed[1].get("vary") == "Origin"
    assert "Retry-After" in allowed[1].get("access-control-expose-headers", "")
    _assert_problem(foreign, status)
    assert "access-control-allow-origin" not in foreign[1]


def test_a_414_names_no_origin_when_an_earlier_request_on_its_connection_did(port, monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", APP_ORIGIN)
    get_settings.cache_clear()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(HEALTH.replace(b"\r\n\r\n", f"\r\nOrigin: {APP_ORIGIN}\r\n\r\n".encode()))
            first = _read_response(sock)
            sock.sendall(LONG_URL.replace(b"Origin: {origin}\r\n", b""))
            second = _read_response(sock)
    finally:
        get_settings.cache_clear()
    assert first[0] == 200 and first[1].get("access-control-allow-origin") == APP_ORIGIN
    _assert_problem(second, 414)
    assert "access-control-allow-origin" not in second[1]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(LONG_URL.split(b" HTTP/1.1")[0], 414, id="414 a long URL"),
        pytest.param(b"GET /v1/health HTTP/9\r\nHost: x\r\n", 400, id="400 a malformed request line"),
    ],
)
def test_a_head_given_up_on_is_answered_when_its_client_stops_sending_before_the_end_of_the_head(port, raw, status):
    # The rest of the head is read for its Origin only until the client stalls for the idle timeout.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        started = time.monotonic()
        _assert_problem(_read_response(sock), status)
    assert time.monotonic() - started < IDLE_TIMEOUT_S + 2


def _request(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, dict(response.getheaders())


def test_a_browser_on_an_allowed_origin_uploads_and_downloads_through_local_file_urls(files_port, monkeypatch):
    # As the files bucket's CORS rule lets it (infra/storage.py). A form POST is a simple request, which a browser
    # sends without a preflight; a client that adds a header of its own is preflighted.
    monkeypatch.setenv("CORS_ORIGINS", APP_ORIGIN)
    get_settings.cache_clear()
    storage = local_storage(Settings(), f"http://127.0.0.1:{files_port}")
    key = storage_key(uuid.uuid4(), uuid.uuid4())
    upload = storage.upload_target(key, "text/plain", 5, 600, None)
    upload_path = upload.url.split(str(files_port), 1)[1]

    status, preflight = _request(
        files_port,
        "OPTIONS",
        upload_path,
        {
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-request-id",
        },
    )
    assert status == 204 and preflight.get("Access-Control-Allow-Origin") == APP_ORIGIN
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    assert "x-request-id" in preflight["Access-Control-Allow-Headers"].lower()

    content_type, form = upload_form(upload.fields, b"hello", "text/plain")
    status, posted = _request(
        files_port, "POST", upload_path, {"Origin": APP_ORIGIN, "Content-Type": content_type}, form
    )
    assert status == 204 and posted.get("Access-Control-Allow-Origin") == APP_ORIGIN

    download_path = storage.download_target(key, "note.txt", 600).url.split(str(files_port), 1)[1]
    status, got = _request(files_port, "GET", download_path, {"Origin": APP_ORIGIN})
    assert status == 200 and got.get("Access-Control-Allow-Origin") == APP_ORIGIN
    assert got.get("Content-Type") == "text/plain"

    content_type, forged = upload_form({**upload.fields, "Content-Type": "text/html"}, b"hello", "text/html")
    status, refused = _request(
        files_port, "POST", upload_path, {"Origin": APP_ORIGIN, "Content-Type": content_type}, forged
    )
    assert status == 403 and refused.get("Access-Control-Allow-Origin") == APP_ORIGIN


def test_the_openapi_document_says_how_to_authenticate_and_that_errors_are_problem_json():
    # Swagger UI at /docs shows an Authorize button only for a declared security scheme, and offers "Try it out"
    # with the credentials only on operations that name it; every error body is problem+json, 422 included.
    document = LocalApi().openapi()
    assert document["components"]["securitySchemes"]["bearer"]["type"] == "http"
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status"} <= set(problem["required"])
    for _, route in routes.all_routes():
        operation = document["paths"][route.path][route.method.lower()]
        if route.auth == "public":
            assert "security" not in operation, route
        else:
            assert operation["security"] == [{"bearer": []}], route
            assert "401" in operation["responses"], route
        for code, reply in operation["responses"].items():
            if not code.startswith("2"):
                assert list(reply["content"]) == ["application/problem+json"], (route, code)
    assert "HTTPValidationError" not in json.dumps(document)
    assert "ValidationError" not in document["components"]["schemas"]


def _answered_statuses(handler: object) -> set[int]:
    """The success statuses a handler answers, read from the helpers it returns through (functions/_replies.py)."""
    source = inspect.getsource(handler)  # type: ignore[arg-type]
    if "created_or_ok(" in source or "201 if" in source:
        return {200, 201}
    if "created(" in source or "created_json(" in source or "status_code=201" in source:
        return {201}
    if "no_content()" in source:
        return {204}
    return {200}


def test_the_openapi_document_names_the_success_status_and_body_each_route_answers():
    # A client generated from /openapi.json (or read from /docs) expects the documented status and body: a create
    # documented as 200, a 204 documented as a JSON body, or a body documented as a bare string breaks it.
    document = LocalApi().openapi()
    wrong = []
    for group in routes.ROUTE_GROUPS:
        app = importlib.import_module(group.module).app
        for route in [*app._static_routes, *app._dynamic_routes]:
            operation = document["paths"][route.openapi_path][route.method.lower()]
            documented = {int(code) for code in operation["responses"] if code.startswith("2")}
            if documented != _answered_statuses(route.func):
                wrong.append((route.method, route.openapi_path, sorted(documented), route.func.__name__))
            for code in documented:
                content = operation["responses"][str(code)].get("content", {})
                if code == 204:
                    if content:
                        wrong.append((route.method, route.openapi_path, "204 with a body"))
                    continue
                schema = content.get("application/json", {}).get("schema", {})
                if schema.get("type") in ("string", "null"):
                    wrong.append((route.method, route.openapi_path, code, f"JSON body documented as {schema}"))
    assert wrong == []


def test_the_openapi_document_names_the_change_feeds_410_and_its_resume_after():
    # A client generated from /openapi.json must handle the change feed's 410 (a position older than the changes
    # kept) and read resume_after from it to resync (docs/conversations.md); a summary's "(410: resync)" types nothing.
    document = LocalApi().openapi()
    gone = document["paths"]["/v1/conversations/{id}/changes"]["get"]["responses"]["410"]
    schema = gone["content"]["application/problem+json"]["schema"]
    assert {"$ref": "#/components/schemas/Problem"} in schema["allOf"]
    extra = next(part for part in schema["allOf"] if "properties" in part)
    assert extra["properties"]["resume_after"]["type"] == "integer" and extra["required"] == ["resume_after"]
    assert "resume_after" in document["components"]["schemas"]["Problem"]["description"]


def _integer_schemas(node: object) -> Iterator[dict]:
    if isinstance(node, list):
        for item in node:
            yield from _integer_schemas(item)
    elif isinstance(node, dict):
        if node.get("type") == "integer":
            yield node
        for child in node.values():
            yield from _integer_schemas(child)


def test_the_openapi_document_states_integer_bounds_as_exact_integers_the_bigint_positions_included():
    # Powertools held every bound as a float: a position's maximum (a bigint, 2**63 - 1) read 9.223372036854776e+18,
    # which is 2**63, past what the API accepts, and typed as a double by a client generator.
    document = LocalApi().openapi()
    for path in ("/v1/conversations/{id}/messages", "/v1/threads/{id}/messages", "/v1/conversations/{id}/changes"):
        after = next(p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "after")
        integer = next(part for part in after["schema"]["anyOf"] if part.get("type") == "integer")
        assert (integer["minimum"], integer["maximum"]) == (0, 9223372036854775807), path
        assert type(integer["minimum"]) is int and type(integer["maximum"]) is int, path
    # As served: the text names the exact integer.
    served = json.dumps(document)
    assert '"maximum": 9223372036854775807' in served and "e+18" not in served
    floats = [
        (name, schema[name])
        for schema in _integer_schemas(document)
        for name in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
        if isinstance(schema.get(name), float)
    ]
    assert floats == []


PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _problem_codes(operation: dict) -> set[str]:
    return {
        code for code, reply in operation["responses"].items() if "application/problem+json" in reply.get("content", {})
    }


def test_every_operation_lists_the_problem_replies_it_can_give_and_none_it_cannot():
    # Client generators type the error replies they are told of. The ones every operation can give are added in one
    # place (shared/local/server.py), each only where the operation's shape allows it: 413 and 415 with a request
    # body, 400 with a body or a cursor or limit, 401 with credentials, 404 with a path id or for a write, 422 with
    # input; 429 (API Gateway throttles every method), 500, 503 and `default` everywhere. The rest (403, 409, 410,
    # 502, 504, a public route's 401) each route declares in the route table (shared/routes.Route.problems).
    document = LocalApi().openapi()
    wrong = []
    for _, route in routes.all_routes():
        method = route.method.lower()
        operation = document["paths"][route.path][method]
        parameters = operation.get("parameters", [])
        body = "requestBody" in operation
        query = {p["name"] for p in parameters if p["in"] == "query"}
        credentials = route.auth != "public"
        expected = {"429", "500", "503", "default"}
        expected |= {"400"} if body or query & {"cursor", "limit"} else set()
        expected |= {"401"} if credentials else set()
        in_path = any(p["in"] == "path" for p in parameters)
        expected |= {"404"} if in_path or (credentials and method != "get") else set()
        expected |= {"413", "415"} if body else set()
        bounded_path = any(p["in"] == "path" and "maxLength" in p["schema"] for p in parameters)
        expected |= {"422"} if body or query or bounded_path or any(p["in"] == "header" for p in parameters) else set()
        expected |= {str(status) for status in route.problems}
        if _problem_codes(operation) != expected:
            wrong.append((route.method, route.path, sorted(_problem_codes(operation) ^ expected)))
        for code in ("429", "503"):
            if "Retry-After" not in operation["responses"][code].get("headers", {}):
                wrong.append((route.method, route.path, code, "no Retry-After"))
    assert wrong == []
    changes = document["paths"]["/v1/conversations/{id}/changes"]["get"]["responses"]
    assert PROBLEM_REF in changes["410"]["content"]["application/problem+json"]["schema"]["allOf"]
    login = document["paths"]["/v1/auth/login"]["post"]["responses"]
    assert login["401"]["description"].startswith("Unknown login") and "200" in login


# Read from the code paths of each: which services raise ForbiddenError, ConflictError (or hit a unique constraint),
# GoneError or a provider's UpstreamError on the route.
EXACT_PROBLEMS = {
    # A participant may read a conversation; nothing it can do here is refused with a 403 or conflicts.
    ("GET", "/v1/conversations/{id}"): {"401", "404", "429", "500", "503"},
    # The thread completion: a premium template (403), an idempotency key reused (409), the provider (502-504).
    ("POST", "/v1/threads/{id}/completions"): {
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "415",
        "422",
        "429",
        "500",
        "502",
        "503",
        "504",
    },
    # A report's status may not go back (409); no 403: someone else's report is a 404.
    ("PATCH", "/v1/analysis-reports/{id}"): {"400", "401", "404", "409", "413", "415", "422", "429", "500", "503"},
    # Admins only (403), whatever the query; a malformed cursor is a 400.
    ("GET", "/v1/admin/usage/monthly"): {"400", "401", "403", "422", "429", "500", "503"},
    # The caller's own usage: never a 403.
    ("GET", "/v1/usage/me"): {"401", "422", "429", "500", "503"},
    ("POST", "/v1/chat/completions"): {"400", "401", "404", "413", "415", "422", "429", "500", "502", "503", "504"},
    ("POST", "/v1/auth/signup"): {"400", "409", "413", "415", "422", "429", "500", "503"},
    ("GET", "/v1/health"): {"429", "500", "503"},
}


def test_representative_operations_list_exactly_the_problems_their_code_paths_answer():
    document = LocalApi().openapi()
    listed = {key: _problem_codes(document["paths"][key[1]][key[0].lower()]) - {"default"} for key in EXACT_PROBLEMS}
    assert listed == EXACT_PROBLEMS


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _refs(item)
    elif isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for child in node.values():
            yield from _refs(child)


def test_the_openapi_document_has_no_dangling_reference_and_every_reply_a_description():
    # Schemathesis (make fuzz) and client generators load the whole document: one $ref to nowhere made it invalid
    # (Powertools' ResponseValidationError pointed at the ValidationError schema this document drops).
    document = LocalApi().openapi()
    for ref in set(_refs(document)):
        assert ref.startswith("#/"), ref
        node: object = document
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, ref
            node = node[part]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code, reply in operation["responses"].items():
                assert code == "default" or (len(code) == 3 and code.isdigit()), (method, path, code)
                assert reply.get("description"), (method, path, code)
