"""Where file bytes live: S3 through presigned URLs in AWS, a folder served by the local server in local mode.

Both hand out the same thing, a short-lived signed upload form (S3's presigned POST, or the local server's copy
of it) and signed download URLs, so clients follow one flow: create the file record, POST `upload.fields` and
then the file to `upload.url`, then read the bytes back from `download.url`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from shared.errors import UnavailableError
from shared.models.conversations import Transfer
from shared.settings import Settings

LOCAL_PREFIX = "/local-files/"
KEY_PATTERN = re.compile(r"^users/[0-9a-f-]{36}/[0-9a-f-]{36}$")
NUMBER = re.compile(r"[0-9]{1,20}")
# A process without CONFAB_FILES_SECRET signs with a key of its own, which the local server hands to its
# worker processes (shared/local/workers.py), so URLs stay valid for as long as the server runs.
_PROCESS_SECRET = secrets.token_urlsafe(32)


def storage_key(owner_id: Any, file_id: Any) -> str:
    return f"users/{owner_id}/{file_id}"


def _expiry(ttl_s: int) -> tuple[int, datetime]:
    expires = int(time.time()) + ttl_s
    return expires, datetime.fromtimestamp(expires, UTC)


def upload_fields(content_type: str, sha256: str | None) -> dict[str, str]:
    """The form fields both storages pin in an upload's policy besides the key: the type, and the checksum."""
    fields = {"Content-Type": content_type}
    if sha256:
        # S3 computes the checksum of what it receives and refuses the upload (400 BadDigest) when it differs.
        fields |= {
            "x-amz-checksum-algorithm": "SHA256",
            "x-amz-checksum-sha256": base64.b64encode(bytes.fromhex(sha256)).decode(),
        }
    return fields


@dataclass(frozen=True)
class UploadPolicy:
    """What a signed upload form allows: until when, exactly which fields (names as signed), how many bytes."""

    expires: int
    fields: dict[str, str]
    max_size: int

    def expired(self) -> bool:
        return self.expires < time.time()


class FileStorage(Protocol):
    def upload_target(self, key: str, content_type: str, size: int, ttl_s: int, sha256: str | None) -> Transfer:
        """Where the bytes go; with `sha256` (hex), storage refuses bytes of another digest."""
        ...

    def download_target(self, key: str, name: str, ttl_s: int) -> Transfer: ...

    def stored_size(self, key: str) -> int | None: ...

    def delete(self, key: str) -> None: ...


def attachment(name: str) -> str:
    """The Content-Disposition a download is answered with: saved under the file's own name.

    RFC 8187: every character outside attr-char percent-encoded, "/" included."""
    return f"attachment; filename*=UTF-8''{quote(name, safe='')}"


class LocalStorage:
    """Files in a folder; URLs point at the local server, signed with HMAC and expiring like presigned ones.

    An upload is a form POSTed to `/local-files/`, shaped like S3's presigned POST: the same `key`, `Content-Type`
    and checksum fields, and a signed `policy` (expiry, those fields, the size) the local server holds the form to.
    """

    def __init__(self, folder: Path, secret: str, origin: str):
        self.folder = folder
        self.secret = secret.encode()
        self.origin = origin.rstrip("/")

    def signature(self, op: str, key: str, expires: int, max_size: int, disposition: str = "") -> str:
        message = f"{op}\n{key}\n{expires}\n{max_size}\n{disposition}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def policy_signature(self, policy: str) -> str:
        # Its own first line, so no URL's signature is ever a policy's.
        return hmac.new(self.secret, f"post-policy\n{policy}".encode(), hashlib.sha256).hexdigest()

    def _url(self, op: str, key: str, ttl_s: int, max_size: int, disposition: str = "") -> tuple[str, datetime]:
        expires, at = _expiry(ttl_s)
        query: dict[str, str | int] = {"op": op, "expires": expires, "max": max_size}
        if disposition:
            # S3's name for it: the Content-Disposition the download is answered with.
            query["response-content-disposition"] = disposition
        query["sig"] = self.signature(op, key, expires, max_size, disposition)
        return f"{self.origin}{LOCAL_PREFIX}{quote(key)}?{urlencode(query)}", at

    def upload_target(self, key: str, content_type: str, size: int, ttl_s: int, sha256: str | None) -> Transfer:
        _, at = _expiry(ttl_s)
        fields = {"key": key, **upload_fields(content_type, sha256)}
        document = {
            "expiration": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "conditions": [*({name: value} for name, value in fields.items()), ["content-length-range", 0, size]],
        }
        policy = base64.b64encode(json.dumps(document).encode()).decode()
        fields |= {"policy": policy, "signature": self.policy_signature(policy)}
        return Transfer(method="POST", url=f"{self.origin}{LOCAL_PREFIX}", fields=fields, expires_at=at)

    def read_policy(self, policy: str, signature: str) -> UploadPolicy | None:
        """The policy of a form this storage signed, or None when the signature does not hold (constant-time)."""
        # As bytes: compare_digest refuses a str with characters outside ASCII, which a form may send.
        if not hmac.compare_digest(self.policy_signature(policy).encode(), signature.encode()):
            return None
        document = json.loads(base64.b64decode(policy))
        expires = datetime.strptime(document["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        fields: dict[str, str] = {}
        max_size = 0
        for condition in document["conditions"]:
            if isinstance(condition, dict):
                fields |= condition
            else:  # ["content-length-range", 0, max]
                max_size = int(condition[2])
        return UploadPolicy(expires=int(expires.timestamp()), fields=fields, max_size=max_size)

    def download_target(self, key: str, name: str, ttl_s: int) -> Transfer:
        url, at = self._url("get", key, ttl_s, 0, attachment(name))
        return Transfer(method="GET", url=url, expires_at=at)

    def verify(self, op: str, key: str, expires: str, max_size: str, signature: str, disposition: str = "") -> bool:
        """Whether a URL's signature holds and it has not expired (constant-time comparison)."""
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        if not KEY_PATTERN.match(key) or not NUMBER.fullmatch(expires) or not NUMBER.fullmatch(max_size):
            return False
        expected = self.signature(op, key, int(expires), int(max_size), disposition)
        # Compared as bytes: compare_digest raises TypeError for a str holding anything but ASCII.
        return hmac.compare_digest(expected.encode(), signature.encode()) and int(expires) >= time.time()

    def path(self, key: str) -> Path:
        if not KEY_PATTERN.match(key):
            raise ValueError("not a storage key")
        return self.folder / key

    def _content_type_path(self, key: str) -> Path:
        # Beside the bytes under a name no key can have, as S3 keeps an object's Content-Type with it.
        path = self.path(key)
        return path.with_name(f".{path.name}.content-type")

    def store(self, key: str, data: bytes, content_type: str) -> None:
        """The bytes and their Content-Type, each written whole (as S3 stores an object whole or not at all)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _replace_whole(self._content_type_path(key), content_type.encode())
        _replace_whole(path, data)

    def content_type(self, key: str) -> str:
        """The Content-Type the bytes were uploaded with (application/octet-stream for bytes stored without one)."""
        try:
            return self._content_type_path(key).read_text()
        except FileNotFoundError:
            return "application/octet-stream"

    def stored_size(self, key: str) -> int | None:
        path = self.path(key)
        return path.stat().st_size if path.is_file() else None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
        self._content_type_path(key).unlink(missing_ok=True)


def _replace_whole(path: Path, data: bytes) -> None:
    # Written beside it and renamed into place: a read meanwhile, or a write that fails part-way (a full disk),
    # never sees a partial file that would count as uploaded.
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@cache
def _s3_client(region: str) -> Any:
    import boto3  # only the files routes pay for the import

    from shared.aws_calls import bounded_config

    # A storage that does not answer is stored_size's 503 with Retry-After, inside the function's time.
    return boto3.client("s3", region_name=region, config=bounded_config(signature_version="s3v4"))


class S3Storage:
    """Presigned POST (size and type enforced by S3, and the SHA-256 when the file has one) for uploads,
    presigned GET for downloads."""

    def __init__(self, bucket: str, region: str):
        self.bucket = bucket
        self.region = region

    @property
    def client(self) -> Any:
        return _s3_client(self.region)

    def upload_target(self, key: str, content_type: str, size: int, ttl_s: int, sha256: str | None) -> Transfer:
        _, at = _expiry(ttl_s)
        fields = upload_fields(content_type, sha256)
        post = self.client.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields=fields,
            # Every field is pinned by the signed policy, so the client can neither drop the checksum nor swap it.
            Conditions=[*({name: value} for name, value in fields.items()), ["content-length-range", 0, size]],
            ExpiresIn=ttl_s,
        )
        return Transfer(method="POST", url=post["url"], fields=post["fields"], expires_at=at)

    def download_target(self, key: str, name: str, ttl_s: int) -> Transfer:
        _, at = _expiry(ttl_s)
        url = self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": attachment(name),
            },
            ExpiresIn=ttl_s,
        )
        return Transfer(method="GET", url=url, expires_at=at)

    def stored_size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            # S3 busy (503 SlowDown) or failing after botocore's retries: the caller may retry, as for a lost
            # database. Anything else (403: a missing grant) is a fault to be logged with its stack.
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                raise UnavailableError("File storage is not answering; retry.") from exc
            raise
        except (ConnectionError, HTTPClientError) as exc:
            raise UnavailableError("File storage cannot be reached; retry.") from exc
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


def local_files_secret(settings: Settings) -> str:
    """The key local storage signs and verifies URLs with: CONFAB_FILES_SECRET, or this process's own."""
    return settings.local_files_secret or _PROCESS_SECRET


def local_storage(settings: Settings, origin: str = "http://127.0.0.1:8000") -> LocalStorage:
    return LocalStorage(settings.files_dir, local_files_secret(settings), origin)


def storage_for(settings: Settings, origin: str = "http://127.0.0.1:8000") -> FileStorage:
    """S3 when a bucket is configured, else the local folder (URLs on `origin`, the local server)."""
    if settings.files_bucket:
        return S3Storage(settings.files_bucket, settings.aws_region)
    return local_storage(settings, origin)
