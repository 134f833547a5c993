"""Files: a record and a presigned upload; local mode serves signed URLs itself, S3 is tested with moto."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from urllib.parse import parse_qs, urlsplit

import boto3
import psycopg
import pytest
from moto import mock_aws

from shared.bootstrap import container
from shared.local.server import LocalApi
from shared.repositories.files import FilesRepository
from shared.settings import get_settings
from shared.storage import LocalStorage
from tests.conversations_helpers import call, jwt_principal, make_user
from tests.helpers import upload_form


@pytest.fixture
def owners(app_container, db):
    return jwt_principal(make_user(db, "alice")), jwt_principal(make_user(db, "bob"))


def _local(url: str) -> str:
    split = urlsplit(url)
    return split.path + (f"?{split.query}" if split.query else "")


def _upload(upload: dict, data: bytes, fields: dict | None = None, file_content_type: str = "text/plain"):
    """What a client does with any upload target, local or S3: POST its fields and then the file as a form."""
    content_type, body = upload_form(upload["fields"] if fields is None else fields, data, file_content_type)
    headers = [("Content-Type", content_type)]
    return LocalApi().handle(upload["method"], _local(upload["url"]), headers, body, "127.0.0.1")


def _is_problem(answer, status: int, slug: str) -> bool:
    body = json.loads(answer.body)
    return (
        answer.status == status
        and ("Content-Type", "application/problem+json") in answer.headers
        and body["type"].endswith("/" + slug)
    )


def test_local_upload_target_is_a_post_form_shaped_like_s3s_presigned_post_when_no_bucket_is_configured(owners):
    # It was a PUT with a Content-Type header, so a client written against `make dev` broke on AWS.
    alice, _ = owners
    digest = hashlib.sha256(b"%PDF-").digest()
    body = {"name": "d.pdf", "content_type": "application/pdf", "size": 5, "sha256": digest.hex()}
    created = call("POST", "/v1/files", alice, body=body).body
    upload = created["upload"]
    assert upload["method"] == "POST" and urlsplit(upload["url"]).path == "/local-files/"
    assert upload["headers"] == {}
    fields = upload["fields"]
    # The fields S3's presigned POST has, with the same names and values (shared/storage.py S3Storage), and a
    # signed policy over them, the size and the expiry.
    assert fields["key"] == f"users/{alice.user_id}/{created['file']['id']}"
    assert fields["Content-Type"] == "application/pdf"
    assert fields["x-amz-checksum-algorithm"] == "SHA256"
    assert fields["x-amz-checksum-sha256"] == base64.b64encode(digest).decode()
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert ["content-length-range", 0, 5] in policy["conditions"] and "signature" in fields
    assert _upload(upload, b"%PDF-").status == 204  # as S3 answers a POST upload
    assert call("GET", f"/v1/files/{created['file']['id']}", alice).body["file"]["status"] == "uploaded"


def test_local_upload_and_download_round_trip_through_signed_urls(owners):
    alice, bob = owners
    data = b"hello, file"
    body = {
        "name": "a.txt",
        "content_type": "text/plain",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    created = call("POST", "/v1/files", alice, body=body)
    assert created.status == 201
    file_id = created.body["file"]["id"]
    pending = call("GET", f"/v1/files/{file_id}", alice).body
    assert pending["file"]["status"] == "pending" and pending["download"] is None
    assert _upload(created.body["upload"], data).status == 204
    got = call("GET", f"/v1/files/{file_id}", alice).body
    assert got["file"]["status"] == "uploaded"
    download = LocalApi().handle("GET", _local(got["download"]["url"]), [], b"", "127.0.0.1")
    assert download.status == 200 and download.body == data
    assert call("GET", f"/v1/files/{file_id}", bob).status == 404
    assert [f["id"] for f in call("GET", "/v1/files", alice).body["items"]] == [file_id]
    assert call("GET", "/v1/files", bob).body["items"] == []


def test_local_download_answers_the_content_type_the_file_was_uploaded_with(owners):
    # As S3 serves an object uploaded with a Content-Type field; it was application/octet-stream whatever the file.
    alice, _ = owners
    created = call("POST", "/v1/files", alice, body={"name": "p.pdf", "content_type": "application/pdf", "size": 5})
    assert _upload(created.body["upload"], b"%PDF-", file_content_type="application/octet-stream").status == 204
    got = call("GET", f"/v1/files/{created.body['file']['id']}", alice).body
    download = LocalApi().handle("GET", _local(got["download"]["url"]), [], b"", "127.0.0.1")
    assert download.status == 200 and ("Content-Type", "application/pdf") in download.headers


def test_local_download_is_an_attachment_under_the_files_name_as_s3s_presigned_get_is(owners):
    alice, _ = owners
    created = call("POST", "/v1/files", alice, body={"name": "résumé 2026.pdf", "size": 4}).body
    assert _upload(created["upload"], b"abcd").status == 204
    url = _local(call("GET", f"/v1/files/{created['file']['id']}", alice).body["download"]["url"])
    download = LocalApi().handle("GET", url, [], b"", "127.0.0.1")
    expected = "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%202026.pdf"
    assert download.status == 200 and ("Content-Disposition", expected) in download.headers
    # The disposition is signed: another name (say one ending in .html) is refused.
    renamed = url.replace("2026.pdf", "2026.html")
    assert renamed != url and LocalApi().handle("GET", renamed, [], b"", "127.0.0.1").status == 403


def _changed(fields: dict, change: str, other_key: str) -> dict:
    changed = dict(fields)
    if change == "content type":
        changed["Content-Type"] = "text/html"
    elif change == "content type dropped":
        del changed["Content-Type"]
    elif change == "checksum dropped":
        del changed["x-amz-checksum-sha256"]
    elif change == "key":
        changed["key"] = other_key
    elif change == "extra field":
        changed["success_action_status"] = "201"
    elif change == "policy":
        changed["policy"] = changed["policy"][:-4] + "AAA="
    elif change == "signature":
        changed["signature"] = "0" * 64
    elif change == "signature dropped":
        del changed["signature"]
    return changed


@pytest.mark.parametrize(
    "change",
    [
        "content type",
        "content type dropped",
        "checksum dropped",
        "key",
        "extra field",
        "policy",
        "signature",
        "signature dropped",
    ],
)
def test_local_upload_is_403_and_stores_nothing_when_the_form_is_not_the_signed_one(owners, change):
    # S3 refuses a form its policy does not allow (403 AccessDenied); the local PUT took any Content-Type.
    alice, bob = owners
    data = b"plain text"
    body = {"name": "t.txt", "content_type": "text/plain", "size": 10, "sha256": hashlib.sha256(data).hexdigest()}
    created = call("POST", "/v1/files", alice, body=body).body
    other_key = f"users/{bob.user_id}/{uuid.uuid4()}"
    refused = _upload(created["upload"], data, fields=_changed(created["upload"]["fields"], change, other_key))
    assert _is_problem(refused, 403, "forbidden")
    assert call("GET", f"/v1/files/{created['file']['id']}", alice).body["file"]["status"] == "pending"
    assert not list(get_settings().files_dir.rglob("*"))  # nothing stored, under either key
    assert _upload(created["upload"], data).status == 204


def test_local_upload_is_403_when_the_form_has_expired(owners, monkeypatch):
    alice, _ = owners
    created = call("POST", "/v1/files", alice, body={"name": "b.bin", "size": 4}).body
    monkeypatch.setattr("shared.storage.time.time", lambda: 4_000_000_000)
    assert _is_problem(_upload(created["upload"], b"abcd"), 403, "forbidden")


def test_local_upload_is_400_entity_too_large_as_on_s3_when_the_file_is_over_the_signed_size(owners):
    alice, _ = owners
    created = call("POST", "/v1/files", alice, body={"name": "b.bin", "size": 4}).body
    assert _is_problem(_upload(created["upload"], b"too long"), 400, "entity-too-large")
    assert _upload(created["upload"], b"abcd").status == 204


def test_local_upload_of_other_bytes_than_the_sha256_given_is_400_and_stores_nothing(owners):
    alice, _ = owners
    data = b"the real bytes"
    body = {"name": "s.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    created = call("POST", "/v1/files", alice, body=body).body
    assert _is_problem(_upload(created["upload"], b"the fake bytes"), 400, "bad-digest")
    got = call("GET", f"/v1/files/{created['file']['id']}", alice).body
    assert got["file"]["status"] == "pending" and got["download"] is None
    # The digest is part of what is signed: a form with another one is not a form we made.
    other = base64.b64encode(hashlib.sha256(b"the fake bytes").digest()).decode()
    forged = {**created["upload"]["fields"], "x-amz-checksum-sha256": other}
    assert _upload(created["upload"], b"the fake bytes", fields=forged).status == 403
    assert _upload(created["upload"], data).status == 204
    assert call("GET", f"/v1/files/{created['file']['id']}", alice).body["file"]["status"] == "uploaded"


def test_local_upload_is_400_when_the_body_is_not_a_form_with_a_key_and_a_file(owners):
    alice, _ = owners
    upload = call("POST", "/v1/files", alice, body={"name": "m.bin", "size": 4}).body["upload"]
    api = LocalApi()
    raw = api.handle("POST", "/local-files/", [("Content-Type", "text/plain")], b"abcd", "ip")
    assert _is_problem(raw, 400, "malformed-post-request")
    content_type, cut = upload_form(upload["fields"], b"abcd")
    truncated = api.handle("POST", "/local-files/", [("Content-Type", content_type)], cut[:-8], "ip")
    assert _is_problem(truncated, 400, "malformed-post-request")
    without_key = {name: value for name, value in upload["fields"].items() if name != "key"}
    assert _is_problem(_upload(upload, b"abcd", fields=without_key), 400, "invalid-argument")
    boundary = "b0undary"
    no_file = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in upload["fields"].items()
    )
    form = [("Content-Type", f"multipart/form-data; boundary={boundary}")]
    answer = api.handle("POST", "/local-files/", form, no_file + f"--{boundary}--\r\n".encode(), "ip")
    assert _is_problem(answer, 400, "invalid-argument")  # S3: "POST requires exactly one file upload"


def test_local_files_refuse_a_put_now_that_uploads_are_post_forms(owners):
    alice, _ = owners
    upload = call("POST", "/v1/files", alice, body={"name": "o.bin", "size": 4}).body["upload"]
    key = upload["fields"]["key"]
    assert LocalApi().handle("PUT", f"/local-files/{key}?op=put", [], b"abcd", "ip").status == 405


def test_local_upload_that_fails_part_way_leaves_the_file_pending_and_no_bytes(owners, monkeypatch):
    # A write that fails part-way (a full disk) left the bytes written so far, which the next GET counted as
    # the upload, with the wrong size.
    from pathlib import Path

    alice, _ = owners
    created = call("POST", "/v1/files", alice, body={"name": "c.bin", "size": 8}).body
    real_write = Path.write_bytes

    def disk_full(self, data):
        if data != b"12345678":  # the file's Content-Type, written first
            return real_write(self, data)
        real_write(self, data[:3])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError):
        _upload(created["upload"], b"12345678")
    monkeypatch.setattr(Path, "write_bytes", real_write)
    got = call("GET", f"/v1/files/{created['file']['id']}", alice).body
    assert got["file"]["status"] == "pending" and got["download"] is None


def test_local_download_urls_refuse_tampering_expiry_and_the_upload_form(owners, monkeypatch):
    alice, _ = owners
    created = call("POST", "/v1/files", alice, body={"name": "b.bin", "size": 4}).body
    assert _upload(created["upload"], b"abcd").status == 204
    url = _local(call("GET", f"/v1/files/{created['file']['id']}", alice).body["download"]["url"])
    api = LocalApi()
    assert api.handle("GET", url.replace("sig=", "sig=0"), [], b"", "ip").status == 403
    assert api.handle("GET", url.replace("op=get", "op=put"), [], b"", "ip").status == 403
    assert api.handle("GET", url, [], b"", "ip").status == 200
    monkeypatch.setattr("shared.storage.time.time", lambda: 4_000_000_000)
    assert api.handle("GET", url, [], b"", "ip").status == 403


# "²" is a digit to str.isdigit() but not to int(); int() refuses a string of more than 4,300 digits.
@pytest.mark.parametrize(
    ("field", "value"),
    [(f, v) for f in ("expires", "max") for v in ("%C2%B2", "9" * 5000)]
    # A signature with a character outside ASCII: hmac.compare_digest raises TypeError on such a str (a 500).
    + [("sig", "%C3%A9" * 32)],
)
def test_local_url_is_403_when_a_signed_number_is_not_a_plain_number(owners, field, value):
    alice, _ = owners
    created = call("POST", "/v1/files", alice, body={"name": "n.bin", "size": 4}).body
    assert _upload(created["upload"], b"abcd").status == 204
    url = _local(call("GET", f"/v1/files/{created['file']['id']}", alice).body["download"]["url"])
    tampered = re.sub(rf"([?&]{field}=)[^&]*", rf"\g<1>{value}", url)
    assert tampered != url
    answer = LocalApi().handle("GET", tampered, [], b"", "ip")
    assert answer.status == 403 and ("Content-Type", "application/problem+json") in answer.headers


def test_size_and_type_limits_answer_413_and_422(owners, app_container):
    alice, _ = owners
    too_big = call("POST", "/v1/files", alice, body={"name": "x", "size": app_container.settings.file_max_bytes + 1})
    assert too_big.status == 413
    assert (
        call("POST", "/v1/files", alice, body={"name": "x", "size": 1, "content_type": "application/x-evil"}).status
        == 422
    )


def test_create_is_409_naming_the_existing_file_when_the_owner_has_one_with_the_same_sha256(owners):
    # One file per owner and digest (user_files_owner_sha256_key). The bare constraint violation named no file, and
    # an upload whose URL was lost (a crashed client) kept its digest pending, with no way to find which file held it.
    alice, bob = owners
    body = {"name": "a.txt", "content_type": "text/plain", "size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    first = call("POST", "/v1/files", alice, body=body).body["file"]["id"]
    again = call("POST", "/v1/files", alice, body={**body, "name": "again.txt"})
    assert again.status == 409 and again.headers["Content-Type"] == "application/problem+json"
    assert again.body["file_id"] == first and "constraint" not in again.body
    assert [f["id"] for f in call("GET", "/v1/files", alice).body["items"]] == [first]
    assert call("POST", "/v1/files", bob, body=body).status == 201  # per owner
    assert call("DELETE", f"/v1/files/{first}", alice).status == 204
    assert call("POST", "/v1/files", alice, body=body).status == 201


def test_delete_removes_the_record_and_the_bytes(owners, app_container):
    alice, bob = owners
    created = call("POST", "/v1/files", alice, body={"name": "c.txt", "content_type": "text/plain", "size": 1}).body
    assert _upload(created["upload"], b"c").status == 204
    stored = app_container.settings.files_dir / "users" / str(alice.user_id) / created["file"]["id"]
    assert stored.is_file()
    assert call("DELETE", f"/v1/files/{created['file']['id']}", bob).status == 404
    assert call("DELETE", f"/v1/files/{created['file']['id']}", alice).status == 204
    assert not stored.exists()


def test_a_file_deleted_while_its_upload_url_is_live_holds_its_slot_and_maintenance_removes_late_bytes(
    owners, monkeypatch, db
):
    # A deleted file's upload URL still stores bytes until it expires. Deleting freed the slot at once and nothing
    # removed what came later: create, delete, upload, again and again stored as much as one liked, untracked.
    from shared.services.maintenance import run_maintenance

    monkeypatch.setenv("FILE_UPLOADS_IN_PROGRESS_MAX", "1")
    get_settings.cache_clear()
    container.cache_clear()
    alice, _ = owners
    created = call("POST", "/v1/files", alice, body={"name": "late.bin", "size": 4}).body
    assert call("DELETE", f"/v1/files/{created['file']['id']}", alice).status == 204
    refused = call("POST", "/v1/files", alice, body={"name": "next.bin", "size": 4})
    assert refused.status == 429 and 890 <= int(refused.headers["Retry-After"]) <= 900
    assert _upload(created["upload"], b"late").status == 204
    stored = container().settings.files_dir / "users" / str(alice.user_id) / created["file"]["id"]
    assert stored.is_file()
    run_maintenance(container().db, container().settings)
    assert stored.is_file()  # the URL is still live: bytes may yet arrive
    db.execute("UPDATE user_file_deletions SET url_expires_at = now() - interval '2 hours'")
    result = run_maintenance(container().db, container().settings)
    assert result.status == "complete" and result.deleted["user_file_bytes"] == 1
    assert not stored.exists() and db.execute("SELECT count(*) FROM user_file_deletions").fetchone() == (0,)
    assert call("POST", "/v1/files", alice, body={"name": "next.bin", "size": 4}).status == 201


def test_get_is_404_when_the_file_is_deleted_while_its_pending_upload_is_checked(owners, monkeypatch):
    alice, _ = owners
    file_id = call("POST", "/v1/files", alice, body={"name": "r.txt", "size": 1}).body["file"]["id"]
    checking, deleted = threading.Event(), threading.Event()

    def stored_size_during_a_delete(self, key):
        checking.set()
        assert deleted.wait(10)
        return 1

    monkeypatch.setattr(LocalStorage, "stored_size", stored_size_during_a_delete)
    got = []
    reader = threading.Thread(target=lambda: got.append(call("GET", f"/v1/files/{file_id}", alice)))
    reader.start()
    assert checking.wait(10)
    assert call("DELETE", f"/v1/files/{file_id}", alice).status == 204
    deleted.set()
    reader.join(10)

    assert got[0].status == 404 and got[0].body == call("GET", f"/v1/files/{uuid.uuid4()}", alice).body


@pytest.fixture
def s3_bucket(owners, monkeypatch):
    """FILES_BUCKET set and the bucket made in moto; yields a boto3 S3 client."""
    monkeypatch.setenv("FILES_BUCKET", "confab-files-test")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    get_settings.cache_clear()
    container.cache_clear()
    with mock_aws():
        from shared.storage import _s3_client

        _s3_client.cache_clear()
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="confab-files-test")
        yield s3
        _s3_client.cache_clear()


def test_s3_presigned_post_and_download_when_a_bucket_is_configured(owners, s3_bucket):
    alice, _ = owners
    created = call(
        "POST", "/v1/files", alice, body={"name": "q3/d é.pdf", "content_type": "application/pdf", "size": 5}
    )
    assert created.status == 201
    upload = created.body["upload"]
    assert (
        upload["method"] == "POST"
        and "policy" in upload["fields"]
        and upload["fields"]["key"].endswith(created.body["file"]["id"])
    )
    file_id = created.body["file"]["id"]
    assert call("GET", f"/v1/files/{file_id}", alice).body["download"] is None
    s3_bucket.put_object(Bucket="confab-files-test", Key=upload["fields"]["key"], Body=b"%PDF-")
    got = call("GET", f"/v1/files/{file_id}", alice).body
    assert got["file"]["status"] == "uploaded" and "X-Amz-Signature" in got["download"]["url"]
    disposition = parse_qs(urlsplit(got["download"]["url"]).query)["response-content-disposition"]
    assert disposition == ["attachment; filename*=UTF-8''q3%2Fd%20%C3%A9.pdf"]  # "/" is no attr-char
    assert call("DELETE", f"/v1/files/{file_id}", alice).status == 204
    assert s3_bucket.list_objects_v2(Bucket="confab-files-test").get("KeyCount") == 0


def test_s3_presigned_post_pins_the_sha256_so_s3_refuses_other_bytes_when_the_file_has_one(owners, s3_bucket):
    import base64
    import json

    alice, _ = owners
    digest = hashlib.sha256(b"%PDF-").digest()
    body = {"name": "d.pdf", "content_type": "application/pdf", "size": 5, "sha256": digest.hex()}
    fields = call("POST", "/v1/files", alice, body=body).body["upload"]["fields"]
    checksum = base64.b64encode(digest).decode()
    assert fields["x-amz-checksum-algorithm"] == "SHA256" and fields["x-amz-checksum-sha256"] == checksum
    conditions = json.loads(base64.b64decode(fields["policy"]))["conditions"]
    assert {"x-amz-checksum-sha256": checksum} in conditions and {"x-amz-checksum-algorithm": "SHA256"} in conditions
    without = call("POST", "/v1/files", alice, body={**body, "sha256": None}).body["upload"]["fields"]
    assert not any(name.startswith("x-amz-checksum") for name in without)


@pytest.mark.parametrize("failure", ["SlowDown", "unreachable"])
def test_get_is_503_with_retry_after_and_the_file_still_pending_when_s3_cannot_answer(
    owners, s3_bucket, monkeypatch, failure
):
    from botocore.exceptions import ClientError, EndpointConnectionError

    from shared.storage import _s3_client

    alice, _ = owners
    created = call("POST", "/v1/files", alice, body={"name": "t.txt", "content_type": "text/plain", "size": 1}).body
    s3_bucket.put_object(Bucket="confab-files-test", Key=created["upload"]["fields"]["key"], Body=b"t")

    def cannot_answer(**_):
        if failure == "SlowDown":
            error = {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}
            raise ClientError(error, "HeadObject")  # type: ignore[arg-type]
        raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")

    client = _s3_client("us-east-1")
    real_head = client.head_object
    monkeypatch.setattr(client, "head_object", cannot_answer)
    got = call("GET", f"/v1/files/{created['file']['id']}", alice)

    # A dependency that is busy or out of reach: the client may retry (as for a lost database), not a bare 500.
    assert (
        got.status == 503 and got.headers["Content-Type"] == "application/problem+json" and "Retry-After" in got.headers
    )
    monkeypatch.setattr(client, "head_object", real_head)
    assert call("GET", f"/v1/files/{created['file']['id']}", alice).body["file"]["status"] == "uploaded"


def test_delete_is_204_and_the_record_gone_when_s3_refuses_to_delete_the_bytes(owners, s3_bucket, monkeypatch, caplog):
    from botocore.exceptions import ClientError

    from shared.storage import _s3_client

    alice, _ = owners
    created = call("POST", "/v1/files", alice, body={"name": "e.txt", "content_type": "text/plain", "size": 1})
    file_id, key = created.body["file"]["id"], created.body["upload"]["fields"]["key"]
    s3_bucket.put_object(Bucket="confab-files-test", Key=key, Body=b"e")

    def refused(**_):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "Delete")

    monkeypatch.setattr(_s3_client("us-east-1"), "delete_object", refused)
    deleted = call("DELETE", f"/v1/files/{file_id}", alice)

    # The record is gone (committed first): the answer says so, and the bytes left behind are logged with their key.
    assert deleted.status == 204
    assert call("GET", f"/v1/files/{file_id}", alice).status == 404
    assert [r.message for r in caplog.records if getattr(r, "storage_key", None) == key] == ["file bytes left behind"]


@pytest.fixture
def shared_file(app_container, db):
    """Alice attaches an uploaded file to a message in a group with Bob and Carol; Dave is an outsider."""
    alice, bob, carol, dave = (jwt_principal(make_user(db, name)) for name in ("alice", "bob", "carol", "dave"))
    data = b"shared bytes"
    created = call("POST", "/v1/files", alice, body={"name": "s.txt", "content_type": "text/plain", "size": len(data)})
    assert _upload(created.body["upload"], data).status == 204
    members = [str(bob.user_id), str(carol.user_id)]
    group = call("POST", "/v1/conversations", alice, body={"kind": "group", "title": "g", "participant_ids": members})
    file_id = created.body["file"]["id"]
    message = {"content": "see", "attachments": [file_id]}
    sent = call("POST", f"/v1/conversations/{group.body['id']}/messages", alice, body=message)
    assert sent.status == 201 and sent.body["attachments"][0]["file_id"] == file_id
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave}, group.body["id"], file_id, data


def test_participant_downloads_an_attachment_when_it_is_on_a_message_in_their_conversation(shared_file):
    people, _, file_id, data = shared_file
    got = call("GET", f"/v1/files/{file_id}", people["bob"])
    assert got.status == 200 and got.body["file"]["owner_id"] == str(people["alice"].user_id)
    download = LocalApi().handle("GET", _local(got.body["download"]["url"]), [], b"", "127.0.0.1")
    assert download.status == 200 and download.body == data
    assert call("GET", f"/v1/files/{file_id}", people["alice"]).status == 200


def test_outsider_gets_the_random_id_404_when_reading_an_attachment(shared_file):
    people, _, file_id, _ = shared_file
    denied = call("GET", f"/v1/files/{file_id}", people["dave"])
    random = call("GET", f"/v1/files/{uuid.uuid4()}", people["dave"])
    assert denied.status == random.status == 404 and denied.body == random.body
    assert call("DELETE", f"/v1/files/{file_id}", people["dave"]).body == random.body


def test_removed_participant_loses_the_attachment_when_removed(shared_file):
    people, group_id, file_id, _ = shared_file
    assert call("GET", f"/v1/files/{file_id}", people["carol"]).status == 200
    removed = call("DELETE", f"/v1/conversations/{group_id}/participants/{people['carol'].user_id}", people["alice"])
    assert removed.status == 204
    gone = call("GET", f"/v1/files/{file_id}", people["carol"])
    assert gone.status == 404 and gone.body == call("GET", f"/v1/files/{uuid.uuid4()}", people["carol"]).body


def test_only_the_owner_deletes_when_a_participant_can_read_the_file(shared_file):
    people, _, file_id, _ = shared_file
    assert call("DELETE", f"/v1/files/{file_id}", people["bob"]).status == 403
    assert call("GET", f"/v1/files/{file_id}", people["bob"]).status == 200
    assert call("DELETE", f"/v1/files/{file_id}", people["alice"]).status == 204
    assert call("GET", f"/v1/files/{file_id}", people["bob"]).status == 404


def _file(who, name: str) -> str:
    created = call("POST", "/v1/files", who, body={"name": name, "content_type": "text/plain", "size": 1})
    assert created.status == 201
    return created.body["file"]["id"]


def _message(conversation_id, who, message_id):
    page = call("GET", f"/v1/conversations/{conversation_id}/messages", who, query={"after": str(message_id - 1)})
    return page.body["items"][0]


def test_deleting_a_file_removes_its_name_type_and_size_from_every_message_that_attached_it(shared_file, db):
    # Only deleting the account did: the file's name stayed in the messages, shown to everyone in the conversations.
    people, group_id, file_id, _ = shared_file
    alice, bob = people["alice"], people["bob"]
    other = _file(alice, "kept.txt")
    direct = call("POST", "/v1/conversations", alice, body={"kind": "direct", "participant_ids": [str(bob.user_id)]})
    both = {"content": "both", "attachments": [file_id, other]}
    sent = call("POST", f"/v1/conversations/{direct.body['id']}/messages", alice, body=both).body
    first = db.execute("SELECT id FROM messages WHERE conversation_id = %s", (group_id,)).fetchone()[0]

    assert call("DELETE", f"/v1/files/{file_id}", alice).status == 204

    assert _message(group_id, bob, first)["attachments"] == []
    left = _message(direct.body["id"], bob, sent["id"])
    assert [a["name"] for a in left["attachments"]] == ["kept.txt"] and left["attachments"] == sent["attachments"][1:]
    assert left["edited_at"] is None and left["content"] == "both"  # its text was not edited
    linked = db.execute("SELECT file_id FROM message_attachments WHERE message_id = ANY(%s)", ([first, sent["id"]],))
    assert [str(row[0]) for row in linked] == [other]
    assert db.execute(
        "SELECT count(*) FROM messages WHERE attachments::text LIKE %s", (f"%{file_id}%",)
    ).fetchone() == (0,)


@pytest.mark.unlisted_problems
def test_a_file_deletion_that_fails_part_way_leaves_the_file_and_every_message_as_they_were(shared_file, db):
    people, _, file_id, _ = shared_file
    before = db.execute("SELECT id, attachments FROM messages ORDER BY id").fetchall()
    # The last write of the deletion's statement refused: the messages' copies and the change log stay as they were.
    db.execute("ALTER TABLE user_file_deletions ADD CONSTRAINT test_refuses_all CHECK (false) NOT VALID")
    assert call("DELETE", f"/v1/files/{file_id}", people["alice"]).status >= 400
    assert db.execute("SELECT id, attachments FROM messages ORDER BY id").fetchall() == before
    assert db.execute("SELECT count(*) FROM message_changes").fetchone() == (0,)
    assert call("GET", f"/v1/files/{file_id}", people["bob"]).status == 200


def test_a_file_attached_in_another_conversation_during_its_deletion_is_deleted_under_that_conversations_lock_too(
    shared_file, db, database_url, monkeypatch
):
    # The deletion locks the conversations the file is attached in, then the file. A send that attached it in another
    # conversation in between commits outside those locks: logged there, its message's change would be drawn without
    # that conversation's lock, below a change some write in flight there commits after it. So the deletion starts
    # again, locking that conversation too: here it waits for the write that holds it.
    people, _, file_id, _ = shared_file
    alice, bob = people["alice"], people["bob"]
    direct = call("POST", "/v1/conversations", alice, body={"kind": "direct", "participant_ids": [str(bob.user_id)]})
    direct_id = direct.body["id"]
    real_seal, sent, done = FilesRepository.seal, [], []

    with psycopg.connect(database_url) as holder:

        def seal_after_a_send(self, sealed_id):
            if not sent:
                message = {"content": "again", "attachments": [file_id]}
                path = f"/v1/conversations/{direct_id}/messages"
                sender = threading.Thread(target=lambda: sent.append(call("POST", path, alice, body=message)))
                sender.start()
                sender.join(10)
                # A write in that conversation, in flight from here on (an edit about to draw its change's position).
                holder.execute("SELECT 1 FROM conversations WHERE id = %s FOR NO KEY UPDATE", (direct_id,))
            return real_seal(self, sealed_id)

        monkeypatch.setattr(FilesRepository, "seal", seal_after_a_send)
        deleter = threading.Thread(target=lambda: done.append(call("DELETE", f"/v1/files/{file_id}", alice).status))
        deleter.start()
        deleter.join(timeout=1.5)
        assert deleter.is_alive() and done == []  # waiting on that conversation's row
        holder.rollback()
    deleter.join(timeout=10)
    assert done == [204] and sent[0].status == 201
    assert _message(direct_id, bob, sent[0].body["id"])["attachments"] == []
    changes = call("GET", f"/v1/conversations/{direct_id}/changes", bob, query={"after": "0"}).body["items"]
    assert [(c["message_id"], c["kind"]) for c in changes] == [(sent[0].body["id"], "edited")]


def test_uploads_in_progress_are_bounded_per_user_and_free_again_when_confirmed_or_expired(owners, monkeypatch, db):
    # Each upload URL lets its holder store up to FILE_MAX_BYTES: without a bound one account took as much
    # storage as it liked by creating files.
    monkeypatch.setenv("FILE_UPLOADS_IN_PROGRESS_MAX", "3")
    get_settings.cache_clear()
    container.cache_clear()
    alice, bob = owners
    made = [call("POST", "/v1/files", alice, body={"name": f"{i}.bin", "size": 2}) for i in range(3)]
    assert [m.status for m in made] == [201, 201, 201]
    refused = call("POST", "/v1/files", alice, body={"name": "4.bin", "size": 2})
    assert refused.status == 429 and 890 <= int(refused.headers["Retry-After"]) <= 900
    assert call("POST", "/v1/files", bob, body={"name": "b.bin", "size": 2}).status == 201  # per user
    # Confirmed: the first upload no longer counts.
    assert _upload(made[0].body["upload"], b"ok").status == 204
    assert call("GET", f"/v1/files/{made[0].body['file']['id']}", alice).body["file"]["status"] == "uploaded"
    assert call("POST", "/v1/files", alice, body={"name": "5.bin", "size": 2}).status == 201
    assert call("POST", "/v1/files", alice, body={"name": "6.bin", "size": 2}).status == 429
    # Expired: its URL no longer stores anything.
    db.execute(
        "UPDATE user_files SET created_at = now() - interval '1 hour' WHERE id = %s", (made[1].body["file"]["id"],)
    )
    assert call("POST", "/v1/files", alice, body={"name": "7.bin", "size": 2}).status == 201


def test_racing_creates_cannot_exceed_the_uploads_in_progress_bound(owners, monkeypatch, db):
    monkeypatch.setenv("FILE_UPLOADS_IN_PROGRESS_MAX", "3")
    get_settings.cache_clear()
    container.cache_clear()
    alice, _ = owners
    statuses: list[int] = []

    def create(i: int) -> None:
        statuses.append(call("POST", "/v1/files", alice, body={"name": f"r{i}.bin", "size": 2}).status)

    workers = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(statuses) == [201] * 3 + [429] * 5
    assert db.execute("SELECT count(*) FROM user_files").fetchone() == (3,)
