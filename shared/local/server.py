"""The local API: each HTTP request becomes the API Gateway event AWS would send, runs through the same
authorizer and the same handler module, and the handler's proxy response is written back."""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import BufferedIOBase
from types import ModuleType
from typing import Any, ClassVar

from shared import cors, routes
from shared.local.events import proxy_event
from shared.local.invocations import Invocation, LocalResponse, invoke, problem
from shared.local.workers import WorkerPool
from shared.observability import logger
from shared.pagination import BIGINT_RANGE
from shared.settings import get_settings

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
LOCAL_FILES_PREFIX = "/local-files/"  # signed upload/download URLs of local file storage (shared/storage.py)
# Room for an upload form's other fields and boundaries beside a file of FILE_MAX_BYTES (the local form's: < 1 KiB).
UPLOAD_FORM_FIELDS_MAX_BYTES = 64 * 1024
# An HTTP thread waits this long for the next request on a kept-alive connection, or for the next bytes of a
# request, before dropping it: eight idle or stalled clients would otherwise hold every thread.
IDLE_TIMEOUT_S = 2.0
WRITE_SLICE_BYTES = 64 * 1024
# http.server's limits on a request line or header line (414, 431): it reads one more byte to tell.
HEAD_LINE_READ_BYTES = 65537
# A request head over http.server's limits is read on this far for its Origin: past the longest URL a browser sends
# (2 MB in Chrome) and its headers.
OVERSIZED_HEAD_READ_BYTES = 4 * 1024 * 1024
DIGITS = re.compile(r"[0-9]+")
CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")

SWAGGER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Confab API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>
"""


def with_cors(response: LocalResponse, origin: str | None) -> LocalResponse:
    """`response` with the CORS headers that let `origin` read it, unless it carries its own (a handler's)."""
    if not any(name.lower() == "access-control-allow-origin" for name, _ in response.headers):
        response.headers.extend(cors.origin_headers(origin, get_settings().cors_origin_list).items())
    return response


@dataclass
class LocalApi:
    """Routes requests by the route table; independent of the HTTP server so tests can drive it directly."""

    modules: dict[str, ModuleType] = field(default_factory=dict)
    # Worker processes (LOCAL_WORKERS), each running one invocation at a time. Without them, invocations run here,
    # one at a time: Powertools keeps the current event on the resolver class (BaseRouter.current_event) and the
    # Logger keeps per-invocation keys on a shared instance, so two handler calls at once in one process would read
    # each other's event, principal included.
    workers: WorkerPool | None = None
    invoke_lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def _module(self, name: str) -> ModuleType:
        if name not in self.modules:
            self.modules[name] = importlib.import_module(name)
        return self.modules[name]

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI documents of every route group merged into one."""
        merged: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {"title": "Confab API", "version": "1"},
            "paths": {},
            "components": {"schemas": {}},
        }
        for group in routes.ROUTE_GROUPS:
            app = self._module(group.module).app
            doc = json.loads(app.get_openapi_json_schema(title="Confab API", version="1"))
            for path, operations in doc.get("paths", {}).items():
                merged["paths"].setdefault(path, {}).update(operations)
            merged["components"]["schemas"].update(doc.get("components", {}).get("schemas", {}))
        return _with_auth_and_problems(merged)

    def handle(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> LocalResponse:
        origin = next((value for name, value in headers if name.lower() == "origin"), None)
        allowed = get_settings().cors_origin_list
        path = raw_path.split("?", 1)[0]
        if method == "OPTIONS" and path.startswith(LOCAL_FILES_PREFIX):
            # A browser's preflight of an upload or download, answered as the files bucket's CORS rule answers it
            # (infra/storage.py: PUT, POST, GET and HEAD, any request header).
            requested = next(
                (value for name, value in headers if name.lower() == "access-control-request-headers"), None
            )
            return LocalResponse(204, list(cors.file_preflight_headers(origin, allowed, requested).items()), b"")
        # The handlers add CORS headers to their own answers (functions/_http.py); the rest (the authorizer's 401,
        # an unknown path's 404, the file URLs' answers) get them here, as API Gateway's gateway responses and the
        # files bucket's CORS rule give them in AWS: without them a browser could not read a 401 and refresh.
        return with_cors(self._answer(method, raw_path, path, headers, body, source_ip), origin)

    def _answer(
        self, method: str, raw_path: str, path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> LocalResponse:
        if method == "GET" and path == "/openapi.json":
            return LocalResponse(200, [("Content-Type", "application/json")], json.dumps(self.openapi()).encode())
        if method == "GET" and path in ("/docs", "/docs/"):
            return LocalResponse(200, [("Content-Type", "text/html; charset=utf-8")], SWAGGER_PAGE.encode())
        if path.startswith(LOCAL_FILES_PREFIX):
            from shared.local.files import serve_file

            return LocalResponse(*serve_file(method, raw_path, headers, body))
        if method == "OPTIONS" and routes.path_exists(path):
            # A browser's preflight, answered as API Gateway's default_cors_preflight_options answer it.
            origin = next((value for name, value in headers if name.lower() == "origin"), None)
            return LocalResponse(
                204, list(cors.preflight_headers(origin, get_settings().cors_origin_list).items()), b""
            )
        found = routes.match(method, path)
        if found is None:
            allowed = routes.methods_of(path)
            if allowed:
                refused = problem(405, "method-not-allowed", "Method not allowed")
                refused.headers.append(("Allow", ", ".join(allowed)))  # a 405 must say them (RFC 9110, 15.5.6)
                return refused
            return problem(404, "not-found", "Not found")
        if len(body) > MAX_BODY_BYTES:
            return problem(413, "payload-too-large", "Payload too large")
        group, route, params = found
        event = proxy_event(
            method=method,
            raw_path=raw_path,
            resource=route.path,
            path_parameters=params,
            headers=headers,
            body=body,
            source_ip=source_ip,
        )
        invocation = Invocation(
            module=group.module, function_name=f"confab-{group.name}", event=event, authorize=route.auth != "public"
        )
        if self.workers is not None:
            return self.workers.invoke(invocation)
        with self.invoke_lock:
            if self.closed:
                return problem(503, "unavailable", "Service unavailable", "The local server is stopping.")
            return invoke(invocation, self._module)

    def close(self) -> None:
        """Stop running invocations, once those in flight are answered (their usage events published)."""
        if self.workers is not None:
            self.workers.close()
            return
        # The invocation in flight in this process publishes its usage events at its end, into the queue that
        # `confab serve` drains once this returns (Container.close): were that drained first, the events would be
        # queued behind its end, or to a thread that the interpreter's exit kills, and lost. A thread cannot be
        # stopped, so the wait has no bound but the invocation's own timeouts (the process would wait for the
        # thread at exit anyway); a second Ctrl-C ends it.
        with self.invoke_lock:
            self.closed = True


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": (
        "Every error (RFC 9457, application/problem+json); `type` is stable. A 422 names what failed in `errors`, "
        "some problems carry more members (`file_id`, `limit`, `constraint`, `licenses_seating_others`, `reason`, the "
        "change feed's `resume_after`), and a 429 or 503 comes with a Retry-After header."
    ),
    "type": "object",
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "type": {"type": "string"},
                    "msg": {"type": "string"},
                },
            },
        },
    },
    "required": ["type", "title", "status"],
}
BEARER_SCHEME: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "description": (
        "An access token (JWT) from /v1/auth/login, signup or refresh, or an API key (cfb_...); on the routes an "
        "anonymous conversation may use, its token (anon_...) too (docs/auth.md)."
    ),
}


# Powertools' OpenAPI model holds every numeric bound as a float (`Schema.maximum: float | None` in its
# event_handler/openapi/models.py), so an integer's `ge=1` reads `1.0`, and the bigint bound of a message position
# (2**63 - 1, functions/messages.py) reads 9.223372036854776e+18: a float that is 2**63, one past the bigint, which a
# client generator types as a double and a fuzzer sends (and gets a 422 for). Integers below 2**53 survive the float
# exactly; the bigint bounds the API declares (shared/pagination.BIGINT_RANGE) are restored by value. Any other bound
# of 2**53 or more would stay a float, and tests/e2e/test_local_server_http.py fails on it.
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_EXACT_BOUNDS = {float(bound): bound for bound in (BIGINT_RANGE.start, BIGINT_RANGE.stop - 1)}


def _exact_integer_bounds(node: Any) -> None:
    """Every bound of an integer schema under `node` as the integer declared (in place)."""
    if isinstance(node, list):
        for item in node:
            _exact_integer_bounds(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "integer":
        for name in _BOUNDS:
            value = node.get(name)
            if isinstance(value, float) and value.is_integer():
                if value in _EXACT_BOUNDS:
                    node[name] = _EXACT_BOUNDS[value]
                elif abs(value) < 2**53:
                    node[name] = int(value)
    for child in node.values():
        _exact_integer_bounds(child)


RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
}


def _problem_response(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if retry_after:
        response["headers"] = RETRY_AFTER
    return response


_CONSTRAINTS = {"maxLength", "minLength", "pattern", "enum", *_BOUNDS}


# The statuses a route names in the route table (shared/routes.Route.problems), as each reads on any route; a route's
# own `responses=` may describe one more closely (the change feed's 410, a login's 401), and that stays.
DECLARED_PROBLEMS: dict[int, str] = {
    401: "The credentials given do not sign in",
    403: "The credentials are valid but do not allow this",
    404: "The caller's account no longer exists (deleted while its credentials' check is still cached)",
    409: "The request conflicts with the current state (a duplicate, a rule about what may change)",
    410: "What the request asks for is no longer kept",
    502: "The model provider failed or answered something unusable",
    504: "The model provider did not answer in time",
}


def _problem_replies(
    method: str, operation: dict[str, Any], credentials: bool, declared: tuple[int, ...] = ()
) -> dict[str, dict[str, Any]]:
    """The problem+json replies an operation can give: those any route of its shape can give, told from what the
    document shows of it (a request body, its parameters) and whether it takes credentials, and those its route
    declares in the route table (`declared`, read from its code paths: a 403, 409, 410, 502 or 504 that only its
    services raise). A reply a client that follows the document cannot get is left out."""
    parameters = operation.get("parameters", [])
    body = "requestBody" in operation
    query = {parameter["name"] for parameter in parameters if parameter["in"] == "query"}
    # A path id that is malformed is a 404 (shared/models/ids.py); only a path parameter the schema bounds is a 422.
    takes_input = body or any(
        parameter["in"] in ("query", "header") or set(parameter.get("schema", {})) & _CONSTRAINTS
        for parameter in parameters
    )
    replies: dict[str, dict[str, Any]] = {}
    # Read by Confab rather than by the schema: a JSON body (its syntax, UTF-8, nesting, number lengths) and the
    # shared page parameters (an opaque cursor, a positive limit); shared/pagination.py and functions/_http.py.
    if body or query & {"cursor", "limit"}:
        replies["400"] = _problem_response("The request cannot be read: a malformed body, cursor or limit")
    if credentials:
        replies["401"] = _problem_response("No credentials, or credentials no longer valid")
    # An id in the path the caller may not see is a 404 like a random one; a write by an account deleted while API
    # Gateway still holds its authorizer's answer finds no account (docs/auth.md, "Deleting an account").
    if any(parameter["in"] == "path" for parameter in parameters) or (credentials and method != "get"):
        replies["404"] = _problem_response("Not found, or not visible to the caller (one body for both)")
    if body:
        replies["413"] = _problem_response("The request body is over its limit")
        replies["415"] = _problem_response("The request body is not application/json")
    if takes_input:
        replies["422"] = _problem_response("The request does not match the schema or breaks a rule about its content")
    # In AWS the stage throttles every method (infra/api.py); some routes also count their own (logins, uploads).
    replies["429"] = _problem_response("Too many requests", retry_after=True)
    replies["500"] = _problem_response("An unexpected error (logged; the answer says nothing more)")
    replies["503"] = _problem_response(
        "The database, a model provider or another dependency is unavailable", retry_after=True
    )
    for status in declared:
        replies[str(status)] = _problem_response(DECLARED_PROBLEMS[status])
    replies["default"] = _problem_response("Any other error")
    return replies


def _status_order(code: str) -> tuple[int, str]:
    return (1, code) if code == "default" else (0, code)


def _with_auth_and_problems(document: dict[str, Any]) -> dict[str, Any]:
    """The merged document as the API answers: bearer credentials on protected routes, errors as problem+json.

    Powertools documents neither: without a security scheme Swagger UI has no Authorize button, and its 422 is
    FastAPI's `HTTPValidationError` as application/json, which no route answers. A 204 is documented as such.
    Every operation lists the problem replies it can give (_problem_replies), beside what its route declares."""
    table = {(route.method.lower(), route.path): route for _, route in routes.all_routes()}
    schemas = document["components"]["schemas"]
    # Powertools' error shapes, which no route answers; ResponseValidationError's $ref to ValidationError dangled
    # once that was dropped, which made the whole document invalid.
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)
    schemas["Problem"] = PROBLEM_SCHEMA
    document["components"]["securitySchemes"] = {"bearer": BEARER_SCHEME}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            # A route declared `-> Response[None]` answers 204 with no body (functions/_replies.no_content), which
            # Powertools documents as a 200 whose JSON body is null.
            schema = responses.get("200", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("type") == "null":
                del responses["200"]
                responses["204"] = {"description": "No content"}
            # Powertools' own 422 (HTTPValidationError as application/json), on operations that take no input too.
            responses.pop("422", None)
            route = table.get((method, path))
            credentials = route is None or route.auth != "public"
            if credentials:
                operation["security"] = [{"bearer": []}]
            declared = route.problems if route is not None else ()
            for code, reply in _problem_replies(method, operation, credentials, declared).items():
                responses.setdefault(code, reply)  # what the route declares itself stays
            operation["responses"] = dict(sorted(responses.items(), key=lambda item: _status_order(item[0])))
    _exact_integer_bounds(document)
    return document


class PooledHTTPServer(HTTPServer):
    """Requests on a small fixed pool of threads, so each thread keeps its one database connection."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], threads: int = 8):
        # Before binding: a bind that fails (the port is taken) calls server_close(), which needs them.
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="confab-http")
        self._open: set[socket.socket] = set()
        # Connections whose request has been read and is being answered.
        self._answering: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.stopping = False
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        self.pool.submit(self._process, request, client_address)

    def _process(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except (TimeoutError, ConnectionError):
            # A client that stopped reading or hung up mid-answer: nothing to answer, nothing to report.
            logger.debug("http client gone", extra={"client": client_address[0]})
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self.shutdown_request(request)

    @contextlib.contextmanager
    def answering(self, request: socket.socket) -> Iterator[None]:
        """While a read request is answered: server_close() lets its answer be written."""
        with self._open_lock:
            self._answering.add(request)
        try:
            yield
        finally:
            with self._open_lock:
                self._answering.discard(request)

    def server_close(self) -> None:
        super().server_close()
        # Idle keep-alive connections would hold their thread (and the exit) until the client hangs up. One whose
        # request is being answered (an invocation in flight, which the worker pool lets finish) is left to send
        # its answer, and is closed then (`stopping`).
        with self._open_lock:
            self.stopping = True
            for request in self._open - self._answering:
                with contextlib.suppress(OSError):
                    request.shutdown(socket.SHUT_RDWR)
        self.pool.shutdown(wait=False, cancel_futures=True)


class BadFraming(Exception):
    """The request body cannot be delimited; the answer closes the connection."""

    def __init__(self, response: LocalResponse) -> None:
        super().__init__(response.status)
        self.response = response


def _bad_request(detail: str) -> BadFraming:
    return BadFraming(problem(400, "bad-request", "Bad request", detail))


class BodyTooLarge(BadFraming):
    """The body is over the limit for its path; answered without reading it."""


def _too_large() -> BodyTooLarge:
    return BodyTooLarge(problem(413, "payload-too-large", "Payload too large"))


def _body_limit(path: str) -> int:
    # S3 takes a presigned upload up to the signed size (at most FILE_MAX_BYTES), not API Gateway's 10 MB, plus
    # the form's other fields; serve_file enforces the signed size.
    if path.startswith(LOCAL_FILES_PREFIX):
        return get_settings().file_max_bytes + UPLOAD_FORM_FIELDS_MAX_BYTES
    return MAX_BODY_BYTES


def read_body(rfile: BufferedIOBase, headers: Message, limit: int) -> bytes:
    """The request body as API Gateway hands it on: by Content-Length, or de-chunked; BadFraming if neither."""
    codings = [c.strip().lower() for c in ",".join(headers.get_all("Transfer-Encoding") or []).split(",")]
    if codings != [""]:
        if codings != ["chunked"]:
            raise BadFraming(problem(501, "not-implemented", "Transfer coding not supported"))
        if headers.get("Content-Length") is not None:
            # Both at once is how requests are smuggled past a proxy (RFC 9112 section 6.3).
            raise _bad_request("Transfer-Encoding and Content-Length together.")
        return _read_chunked(rfile, limit)
    lengths = {v.strip() for v in headers.get_all("Content-Length") or []}
    if not lengths:
        return b""
    if len(lengths) > 1 or not DIGITS.fullmatch(next(iter(lengths))):
        raise _bad_request("Content-Length must be one non-negative integer.")
    length = int(lengths.pop())
    if length > limit:
        raise _too_large()
    body = rfile.read(length) if length else b""
    if len(body) < length:
        raise _bad_request("The body is shorter than its Content-Length.")
    return body


def _read_chunked(rfile: BufferedIOBase, limit: int) -> bytes:
    body = bytearray()
    while True:
        size_field = rfile.readline(1024).split(b";", 1)[0].strip()
        if not CHUNK_SIZE.fullmatch(size_field):
            raise _bad_request("Malformed chunk size.")
        size = int(size_field, 16)
        if size == 0:
            break
        if len(body) + size > limit:
            raise _too_large()
        chunk = rfile.read(size)
        if len(chunk) < size or rfile.read(2) != b"\r\n":
            raise _bad_request("Malformed chunk.")
        body += chunk
    for _ in range(100):  # trailer fields, dropped as API Gateway drops them
        line = rfile.readline(65537)
        if not line.endswith(b"\n"):
            raise _bad_request("Malformed trailer.")
        if line in (b"\r\n", b"\n"):
            return bytes(body)
    raise _bad_request("Too many trailer fields.")


class HeadReader(BufferedIOBase):
    """A connection's reader that notes the Origin of the request head it is reading.

    http.server answers a malformed request line, or a request line or header over its limits (414, 431), before it
    has parsed the head, and drops the lines it read: the Origin noted on the way lets those answers carry CORS
    headers like the others.
    """

    def __init__(self, raw: BufferedIOBase) -> None:
        super().__init__()
        self._raw = raw
        self.start_head()

    def start_head(self) -> None:
        """The next line read is a request line."""
        self.origin: str | None = None
        self.in_head = True
        self._lines = 0  # complete lines of the head read so far
        self._at_line_start = True

    def readline(self, size: int | None = -1) -> bytes:
        line = self._raw.readline(size)
        if self.in_head:
            if not line:
                self.in_head = False
            elif self._at_line_start and self._lines > 0:
                if line in (b"\r\n", b"\n"):
                    self.in_head = False
                elif self.origin is None and line[:7].lower() == b"origin:":
                    self.origin = line[7:].decode("latin-1").strip()
            self._at_line_start = line.endswith(b"\n")
            self._lines += self._at_line_start
        return line

    def read(self, size: int | None = -1) -> bytes:
        return self._raw.read(size)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()
        super().close()


class LocalRequestHandler(BaseHTTPRequestHandler):
    """One connection: each request's body is read and framed here, then handed to `api`."""

    protocol_version = "HTTP/1.1"
    api: ClassVar[LocalApi]
    server: PooledHTTPServer
    rfile: HeadReader
    timeout = IDLE_TIMEOUT_S  # set on the socket by StreamRequestHandler.setup

    def setup(self) -> None:
        super().setup()
        self.rfile = HeadReader(self.rfile)

    def handle_one_request(self) -> None:
        self.rfile.start_head()
        super().handle_one_request()

    def _serve(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            body = read_body(self.rfile, self.headers, _body_limit(path))
        except BodyTooLarge as bad:
            # An upload over any file's size is what S3 answers a form over its policy's size: 400 EntityTooLarge.
            too_large = problem(400, "entity-too-large", "Entity too large", "The upload is over FILE_MAX_BYTES.")
            self._write(too_large if path.startswith(LOCAL_FILES_PREFIX) else bad.response, close=True)
            return
        except BadFraming as bad:
            self._write(bad.response, close=True)
            return
        except TimeoutError:
            self._write(problem(408, "request-timeout", "Request timeout"), close=True)
            return
        with self.server.answering(self.connection):
            try:
                response = self.api.handle(
                    self.command, self.path, list(self.headers.items()), body, self.client_address[0]
                )
            except Exception:
                logger.exception("local server failed")
                response = problem(500, "internal-error", "Internal server error")
            self._write(response, close=self.server.stopping)
        # Checked once the connection is no longer marked as answering: a server_close() that found it marked has
        # set `stopping` by now; one that comes later finds it unmarked and shuts it down.
        if self.server.stopping:
            self.close_connection = True

    def _write(self, response: LocalResponse, close: bool = False) -> None:
        # The API's answers carry CORS headers already (LocalApi.handle); the server's own (a body it cannot read,
        # a 408, 414 or 431) get the same here, or a browser app could not read them.
        response = with_cors(response, self.rfile.origin)
        self.send_response(response.status)
        for key, value in response.headers:
            if key.lower() not in ("content-length", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")  # also sets close_connection
        self.end_headers()
        if self.command != "HEAD":
            # In slices: the socket's timeout bounds each send whole, so one large body sent at once would be
            # cut off after IDLE_TIMEOUT_S however steadily the client reads. Per slice, only a client that
            # stops reading is dropped.
            body = memoryview(response.body)
            for start in range(0, len(body), WRITE_SLICE_BYTES):
                self.wfile.write(body[start : start + WRITE_SLICE_BYTES])

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own answers (malformed request line, 414, 431) as problem+json, not its HTML page.
        self.log_error("code %d, message %s", code, message)
        if self.rfile.in_head:
            # Given up on before its headers were parsed (a malformed request line, 414, 431): its Origin is read
            # here, so that the answer carries the CORS headers every other answer does.
            self._read_rest_of_head()
        if self.request_version == "HTTP/0.9":
            # Left at the default when the request line is unreadable; an HTTP/0.9 answer has no status line.
            self.request_version = self.protocol_version
        status = HTTPStatus(code)
        slug = status.phrase.lower().replace(" ", "-")
        self._write(problem(code, slug, status.phrase.capitalize(), message or ""), close=True)

    def _read_rest_of_head(self) -> None:
        # The Origin of a head given up on may come after the line that broke it (always, when that is the request
        # line): read on to the end of the head, within bounds, for its answer to name it. The answer closes the
        # connection, so nothing of this request is taken for the next one.
        left = OVERSIZED_HEAD_READ_BYTES
        with contextlib.suppress(OSError):  # a client that stops sending (a timeout) or hangs up: answered as is
            while self.rfile.in_head and left > 0:
                left -= len(self.rfile.readline(min(left, HEAD_LINE_READ_BYTES)))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY, made-up ones) gets the route table's 404/405 problem, as API
        # Gateway answers them, instead of http.server's HTML 501.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http", extra={"request": getattr(self, "requestline", ""), "client": self.client_address[0]})


def make_server(api: LocalApi, host: str, port: int, idle_timeout_s: float = IDLE_TIMEOUT_S) -> PooledHTTPServer:
    """An HTTP server on host:port serving `api`; a connection idle for `idle_timeout_s` is dropped."""
    handler = type("Handler", (LocalRequestHandler,), {"api": api, "timeout": idle_timeout_s})
    return PooledHTTPServer((host, port), handler)
