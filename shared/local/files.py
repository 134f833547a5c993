"""The local server's stand-in for S3: the upload form POSTed to /local-files/ (S3's presigned POST) and GET on
signed, expiring /local-files/<key> URLs (a presigned GET).

Not routes of the API (API Gateway never sees them); only the local server answers them. A form is held to the
rules S3 holds a presigned POST to, and refused with S3's statuses (as problem+json): 403 when its policy does not
allow it (a signed field missing or changed, a field the policy does not name, a bad signature, an expired
policy), 400 when it is no well-formed form with a key and a file, when the file is over the signed size
(EntityTooLarge) or when its bytes have another checksum than the signed one (BadDigest).
"""

from __future__ import annotations

import base64
import hashlib
import json
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import HTTP
from email.utils import collapse_rfc2231_value
from urllib.parse import parse_qs, unquote, urlsplit

from shared.errors import problem_body
from shared.settings import get_settings
from shared.storage import LOCAL_PREFIX, LocalStorage, local_storage

Answer = tuple[int, list[tuple[str, str]], bytes]

# Fields a form carries that its policy does not name (S3 also skips those named x-ignore-*).
UNSIGNED_FIELDS = frozenset({"policy", "signature", "file"})


class MalformedForm(Exception):
    """The body is not the multipart/form-data it says it is (S3: 400 MalformedPOSTRequest)."""


def _problem(status: int, slug: str, title: str, detail: str = "") -> Answer:
    body = json.dumps(problem_body(status, slug, title, detail)).encode()
    return status, [("Content-Type", "application/problem+json")], body


def _forbidden(detail: str) -> Answer:
    return _problem(403, "forbidden", "Forbidden", detail)


def serve_file(method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
    """Store an upload form's file (POST) or return the bytes behind a signed URL (GET)."""
    split = urlsplit(raw_path)
    storage = local_storage(get_settings())
    if method == "POST" and split.path == LOCAL_PREFIX:
        content_type = next((value for name, value in headers if name.lower() == "content-type"), "")
        return _store_form(storage, content_type, body)
    if method != "GET":
        return _problem(405, "method-not-allowed", "Method not allowed")
    key = unquote(split.path[len(LOCAL_PREFIX) :])
    query = {k: v[-1] for k, v in parse_qs(split.query).items()}
    disposition = query.get("response-content-disposition", "")
    if query.get("op") != "get" or not storage.verify(
        "get", key, query.get("expires", ""), query.get("max", ""), query.get("sig", ""), disposition
    ):
        return _problem(403, "forbidden", "Forbidden")
    path = storage.path(key)
    if not path.is_file():
        return _problem(404, "not-found", "Not found")
    headers = [("Content-Type", storage.content_type(key))]
    if disposition:
        headers.append(("Content-Disposition", disposition))  # as S3 answers a presigned GET that names one
    return 200, headers, path.read_bytes()


def _store_form(storage: LocalStorage, content_type: str, body: bytes) -> Answer:
    try:
        fields, data = parse_form(content_type, body)
    except MalformedForm as malformed:
        return _problem(400, "malformed-post-request", "Malformed POST request", str(malformed))
    if "key" not in fields:
        return _problem(400, "invalid-argument", "Invalid argument", "The form must have a field named 'key'.")
    if data is None:
        return _problem(400, "invalid-argument", "Invalid argument", "The form must end with one file named 'file'.")
    policy = storage.read_policy(fields.get("policy", ""), fields.get("signature", ""))
    if policy is None:
        return _forbidden("The form's policy is missing or its signature does not match.")
    if policy.expired():
        return _forbidden("Invalid according to Policy: Policy expired.")
    signed = {name.lower(): value for name, value in policy.fields.items()}
    for name, value in signed.items():
        if fields.get(name) != value:
            return _forbidden(f"Invalid according to Policy: Policy Condition failed: the field {name!r}.")
    extra = sorted(
        name
        for name in fields
        if name not in signed and name not in UNSIGNED_FIELDS and not name.startswith("x-ignore-")
    )
    if extra:
        return _forbidden(f"Invalid according to Policy: Extra input fields: {', '.join(extra)}.")
    if len(data) > policy.max_size:
        return _problem(
            400, "entity-too-large", "Entity too large", f"The file may hold at most {policy.max_size} bytes."
        )
    checksum = signed.get("x-amz-checksum-sha256")
    if checksum and base64.b64encode(hashlib.sha256(data).digest()).decode() != checksum:
        # As S3 answers a checksum that does not match (BadDigest): nothing is stored.
        return _problem(400, "bad-digest", "Bad digest", "The bytes do not match the file's sha256.")
    storage.store(signed["key"], data, signed["content-type"])
    return 204, [], b""  # S3's answer to a POST upload without success_action_status


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], bytes | None]:
    """The fields before the part named `file` (names lower-cased, as S3 reads them) and that part's bytes.

    Parts after the file are ignored, as S3 ignores them. The framing (RFC 2046: each part after CRLF "--"
    boundary) is cut with bytes.find, so the file is copied once; each part's headers go through email's parser."""
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_boundary()
    if header.get_content_type() != "multipart/form-data" or not boundary or not boundary.isascii():
        raise MalformedForm("The body must be multipart/form-data with a boundary.")
    delimiter = b"\r\n--" + boundary.encode()
    # The first boundary line may open the body, with no line break before it.
    if body.startswith(delimiter[2:]):
        position = len(delimiter) - 2
    elif (opening := body.find(delimiter)) >= 0:
        position = opening + len(delimiter)  # after a preamble, which is ignored
    else:
        raise MalformedForm("The body has no boundary line.")
    fields: dict[str, str] = {}
    while not body.startswith(b"--", position):  # the closing boundary: there was no file
        line_end = body.find(b"\r\n", position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise MalformedForm("A boundary line has more than the boundary on it.")
        end = body.find(delimiter, line_end + 2)
        if end < 0:
            raise MalformedForm("The form ends without its closing boundary.")
        name, value = _part(body, line_end + 2, end)
        if name == "file":
            return fields, value
        if name in fields:
            raise MalformedForm(f"The field {name!r} appears twice.")
        try:
            fields[name] = value.decode()
        except UnicodeDecodeError:
            raise MalformedForm(f"The field {name!r} is not UTF-8.") from None
        position = end + len(delimiter)
    return fields, None


def _part(body: bytes, start: int, end: int) -> tuple[str, bytes]:
    """A part's field name (lower-cased) and its content."""
    headers_end = body.find(b"\r\n\r\n", start - 2, end)  # from start - 2: a part with no headers
    if headers_end < 0:
        raise MalformedForm("A part has no blank line after its headers.")
    headers = BytesHeaderParser(policy=HTTP).parsebytes(body[start : headers_end + 4])
    name = headers.get_param("name", header="content-disposition")
    if headers.get_content_disposition() != "form-data" or not name:
        raise MalformedForm("A part has no Content-Disposition: form-data with a name.")
    return collapse_rfc2231_value(name).lower(), body[headers_end + 4 : end]
