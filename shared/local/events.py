"""Turn a plain HTTP request into the API Gateway REST proxy event (and authorizer event) AWS would send."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

STAGE = "local"
API_ID = "local"
ACCOUNT_ID = "000000000000"


@dataclass
class LocalContext:
    """The parts of the Lambda context object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    log_group_name: str = "local"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _multi(pairs: list[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    if not pairs:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        single[key] = value  # API Gateway keeps the last value in the single-value map
        multi.setdefault(key, []).append(value)
    return single, multi


def proxy_event(
    *,
    method: str,
    raw_path: str,
    resource: str,
    path_parameters: Mapping[str, str],
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A REST API (v1) proxy integration event, as API Gateway sends it to a Lambda function."""
    split = urlsplit(raw_path)
    query_pairs = [(k, v) for k, values in parse_qs(split.query, keep_blank_values=True).items() for v in values]
    query, multi_query = _multi(query_pairs)
    single_headers, multi_headers = _multi(headers)
    request_id = str(uuid.uuid4())
    user_agent = (single_headers or {}).get("User-Agent") or (single_headers or {}).get("user-agent") or ""
    is_text = _is_text(body)
    return {
        "resource": resource,
        "path": split.path,
        "httpMethod": method,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": dict(path_parameters) or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "path": f"/{STAGE}{split.path}",
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(time.time() * 1000),
            "requestId": request_id,
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            "domainName": "localhost",
            "apiId": API_ID,
            "authorizer": dict(authorizer) if authorizer is not None else None,
        },
        "body": (body.decode() if is_text else base64.b64encode(body).decode()) if body else None,
        "isBase64Encoded": bool(body) and not is_text,
    }


def authorizer_event(proxy: Mapping[str, Any]) -> dict[str, Any]:
    """The REQUEST authorizer event API Gateway sends before the proxy event."""
    context = proxy["requestContext"]
    return {
        "type": "REQUEST",
        "methodArn": (
            f"arn:aws:execute-api:us-east-1:{ACCOUNT_ID}:{API_ID}/{STAGE}/{proxy['httpMethod']}{proxy['path']}"
        ),
        "resource": proxy["resource"],
        "path": proxy["path"],
        "httpMethod": proxy["httpMethod"],
        "headers": proxy["headers"] or {},
        "multiValueHeaders": proxy["multiValueHeaders"] or {},
        "queryStringParameters": proxy["queryStringParameters"] or {},
        "multiValueQueryStringParameters": proxy["multiValueQueryStringParameters"] or {},
        "pathParameters": proxy["pathParameters"] or {},
        "stageVariables": {},
        "requestContext": {k: v for k, v in context.items() if k != "authorizer"},
    }


def _is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
