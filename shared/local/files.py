"""The local server's stand-in for S3 presigned URLs: PUT and GET on signed, expiring /local-files/ URLs.

Not routes of the API (API Gateway never sees them); only the local server answers them.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from urllib.parse import parse_qs, unquote, urlsplit

from shared.errors import problem_body
from shared.settings import get_settings
from shared.storage import LOCAL_PREFIX, local_storage

Answer = tuple[int, list[tuple[str, str]], bytes]


def _problem(status: int, slug: str, title: str) -> Answer:
    body = json.dumps(problem_body(status, slug, title)).encode()
    return status, [("Content-Type", "application/problem+json")], body


def serve_file(method: str, raw_path: str, body: bytes) -> Answer:
    """Store (PUT) or return (GET) the bytes behind a signed URL; 403 for a bad or expired signature."""
    split = urlsplit(raw_path)
    key = unquote(split.path[len(LOCAL_PREFIX) :])
    query = {k: v[-1] for k, v in parse_qs(split.query).items()}
    op = {"PUT": "put", "GET": "get"}.get(method)
    storage = local_storage(get_settings())
    if op is None:
        return _problem(405, "method-not-allowed", "Method not allowed")
    sha256 = query.get("sha256", "")
    if query.get("op") != op or not storage.verify(
        op, key, query.get("expires", ""), query.get("max", ""), query.get("sig", ""), sha256
    ):
        return _problem(403, "forbidden", "Forbidden")
    path = storage.path(key)
    if op == "put":
        if len(body) > int(query["max"]):
            return _problem(413, "payload-too-large", "Payload too large")
        if sha256 and hashlib.sha256(body).hexdigest() != sha256:
            # As S3 answers a checksum that does not match (BadDigest): nothing is stored.
            return _problem(400, "bad-digest", "The bytes do not match the file's sha256")
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside it and renamed into place, as S3 stores an object whole or not at all: a read meanwhile,
        # or a write that fails part-way (a full disk), never sees a partial file that would count as uploaded.
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            partial.write_bytes(body)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return 200, [], b""
    if not path.is_file():
        return _problem(404, "not-found", "Not found")
    return 200, [("Content-Type", "application/octet-stream")], path.read_bytes()
