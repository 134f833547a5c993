"""The local API: each HTTP request becomes the API Gateway event AWS would send, runs through the same
authorizer and the same handler module, and the handler's proxy response is written back."""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import ModuleType
from typing import Any

from shared import routes
from shared.errors import problem_body
from shared.local.events import LocalContext, authorizer_event, proxy_event
from shared.observability import logger

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
LOCAL_FILES_PREFIX = "/local-files/"  # signed upload/download URLs of local file storage (shared/storage.py)
PROBLEM_JSON = "application/problem+json"

SWAGGER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Confab API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>
"""


@dataclass
class LocalResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _problem(status: int, slug: str, title: str, detail: str = "") -> LocalResponse:
    body = json.dumps(problem_body(status, slug, title, detail)).encode()
    return LocalResponse(status, [("Content-Type", PROBLEM_JSON)], body)


@dataclass
class LocalApi:
    """Routes requests by the route table; independent of the HTTP server so tests can drive it directly."""

    modules: dict[str, ModuleType] = field(default_factory=dict)
    # Powertools keeps the current event on the resolver class (BaseRouter.current_event) and the Logger
    # keeps per-invocation keys on a shared instance: two handler calls at once would read each other's
    # event, principal included. One invocation at a time, as in a Lambda container.
    invoke_lock: threading.Lock = field(default_factory=threading.Lock)

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
        return merged

    def handle(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> LocalResponse:
        path = raw_path.split("?", 1)[0]
        if method == "GET" and path == "/openapi.json":
            return LocalResponse(200, [("Content-Type", "application/json")], json.dumps(self.openapi()).encode())
        if method == "GET" and path in ("/docs", "/docs/"):
            return LocalResponse(200, [("Content-Type", "text/html; charset=utf-8")], SWAGGER_PAGE.encode())
        if path.startswith(LOCAL_FILES_PREFIX):
            from shared.local.files import serve_file

            return LocalResponse(*serve_file(method, raw_path, body))
        found = routes.match(method, path)
        if found is None:
            if routes.path_exists(path):
                return _problem(405, "method-not-allowed", "Method not allowed")
            return _problem(404, "not-found", "Not found")
        if len(body) > MAX_BODY_BYTES:
            return _problem(413, "payload-too-large", "Payload too large")
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
        context = LocalContext(
            function_name=f"confab-{group.name}", aws_request_id=event["requestContext"]["requestId"]
        )
        with self.invoke_lock:
            if route.auth != "public":
                denied = self._authorize(event)
                if denied is not None:
                    return denied
            result = self._module(group.module).lambda_handler(event, context)
        return _to_local(result)

    def _authorize(self, event: dict[str, Any]) -> LocalResponse | None:
        authorizer = self._module(routes.AUTHORIZER_MODULE)
        request = authorizer_event(event)
        context = LocalContext(function_name="confab-authorizer", aws_request_id=event["requestContext"]["requestId"])
        try:
            policy = authorizer.lambda_handler(request, context)
        except Exception as exc:
            # API Gateway answers 401 when the authorizer raises "Unauthorized"; anything else is a 500 there.
            if str(exc) == "Unauthorized":
                return _problem(401, "unauthorized", "Unauthorized")
            logger.exception("authorizer failed")
            return _problem(500, "internal-error", "Internal server error")
        statements = policy.get("policyDocument", {}).get("Statement", [])
        if not statements or any(s.get("Effect") != "Allow" for s in statements):
            return _problem(403, "forbidden", "Forbidden")
        event["requestContext"]["authorizer"] = {"principalId": policy.get("principalId"), **policy.get("context", {})}
        return None


def _to_local(result: dict[str, Any]) -> LocalResponse:
    headers: list[tuple[str, str]] = list((result.get("headers") or {}).items())
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((key, v) for v in values if (key, v) not in headers)
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
    return LocalResponse(int(result.get("statusCode", 200)), headers, body)


class PooledHTTPServer(HTTPServer):
    """Requests on a small fixed pool of threads, so each thread keeps its one database connection."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], workers: int = 8):
        super().__init__(address, handler)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="confab-http")
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        self.pool.submit(self._process, request, client_address)

    def _process(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        # Idle keep-alive connections would hold their worker (and the exit) until the client hangs up.
        with self._open_lock:
            for request in self._open:
                with contextlib.suppress(OSError):
                    request.shutdown(socket.SHUT_RDWR)
        self.pool.shutdown(wait=False, cancel_futures=True)


def make_server(api: LocalApi, host: str, port: int) -> PooledHTTPServer:
    """An HTTP server on host:port serving `api`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._write(_problem(413, "payload-too-large", "Payload too large"))
                self.close_connection = True
                return
            body = self.rfile.read(length) if length else b""
            try:
                response = api.handle(self.command, self.path, list(self.headers.items()), body, self.client_address[0])
            except Exception:
                logger.exception("local server failed")
                response = _problem(500, "internal-error", "Internal server error")
            self._write(response)

        def _write(self, response: LocalResponse) -> None:
            self.send_response(response.status)
            for key, value in response.headers:
                if key.lower() not in ("content-length", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def __getattr__(self, name: str) -> Any:
            # Any other method (TRACE, QUERY, made-up ones) gets the route table's 404/405 problem, as API
            # Gateway answers them, instead of http.server's HTML 501.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("http", extra={"request": self.requestline, "client": self.client_address[0]})

    return PooledHTTPServer((host, port), Handler)
