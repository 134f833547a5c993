"""User files: a record plus a presigned upload; downloads through presigned URLs.

The owner reads and deletes a file; a participant of a conversation where it is attached to a message may
read it (and download it) but not delete it; anyone else gets the same 404 as for a random id.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from uuid import UUID, uuid4

from shared.auth.principal import Principal
from shared.db import Database, UnitOfWork
from shared.errors import (
    ConflictError,
    ForbiddenError,
    PayloadTooLargeError,
    RateLimitedError,
    RetryableError,
    UnprocessableError,
)
from shared.models.conversations import FileCreate, FileDownload, FileUpload, UserFile
from shared.observability import logger
from shared.pagination import Page, decode_cursor, page_limit, page_of
from shared.repositories.files import FilesRepository, StoredFile
from shared.services.access import not_found
from shared.settings import Settings
from shared.storage import FileStorage, storage_key


def create_file(
    db: Database, settings: Settings, storage: FileStorage, principal: Principal, body: FileCreate
) -> FileUpload:
    owner_id = principal.require_user()
    if body.size > settings.file_max_bytes:
        raise PayloadTooLargeError(f"A file holds at most {settings.file_max_bytes} bytes.")
    content_type = body.content_type.split(";")[0].strip().lower()
    if content_type not in settings.file_content_types:
        raise UnprocessableError(
            "This content type is not accepted.",
            errors=[{"loc": ["body", "content_type"], "type": "value_error", "msg": "content type not accepted"}],
        )
    file_id = uuid4()
    key = storage_key(owner_id, file_id)
    values = {
        "id": file_id,
        "owner_id": owner_id,
        "original_name": body.name,
        "content_type": content_type,
        "size": body.size,
        "storage_key": key,
        "sha256": body.sha256,
    }

    def create(uow: UnitOfWork) -> UserFile:
        repo = FilesRepository(uow.conn)
        in_progress = repo.uploads_in_progress(owner_id, settings.file_url_ttl_s)
        if len(in_progress) >= settings.file_uploads_in_progress_max:
            # Each upload URL lets its holder store up to FILE_MAX_BYTES: without a bound, one account could
            # take as much storage as it liked. A slot frees when an upload is confirmed or its URL expires.
            frees_at = in_progress[len(in_progress) - settings.file_uploads_in_progress_max]
            raise RateLimitedError(
                f"At most {settings.file_uploads_in_progress_max} uploads may be in progress at once.",
                retry_after=max(1, math.ceil((frees_at - datetime.now(UTC)).total_seconds())),
            )
        same = repo.owned_by_sha256(owner_id, body.sha256) if body.sha256 else None
        if same is not None:
            # Checked under the owner's lock, so racing creates see each other. Naming the file lets a client whose
            # upload URL was lost find the pending record (to delete it and start again) or reuse an uploaded one.
            raise ConflictError(
                "You already have a file with this sha256: use it, or delete it first.", file_id=str(same)
            )
        return repo.insert(values)

    record = db.transact(create)
    return FileUpload(
        file=record, upload=storage.upload_target(key, content_type, body.size, settings.file_url_ttl_s, body.sha256)
    )


def list_files(db: Database, principal: Principal, cursor: str | None, limit: int | None) -> Page[UserFile]:
    owner_id = principal.require_user()
    size = page_limit(limit)
    after = decode_cursor(cursor, (datetime, UUID))
    rows = db.read(lambda uow: FilesRepository(uow.conn).list_owned(owner_id, after, size + 1))
    return page_of(rows, size, lambda f: (f.created_at, f.id))


def get_file(
    db: Database, settings: Settings, storage: FileStorage, principal: Principal, file_id: UUID
) -> FileDownload:
    """The file and a download URL once its bytes are stored (a pending upload is checked on the way)."""
    user_id = principal.require_user()

    def work(uow: UnitOfWork) -> tuple[UserFile, str | None]:
        repo = FilesRepository(uow.conn)
        found = repo.get_readable(file_id, user_id)
        if found is None:
            raise not_found()
        record: UserFile = found
        if found.status == "pending":
            size = storage.stored_size(found.storage_key)
            if size is None:
                return record, None
            # Storage is asked outside any row lock, so the owner may have deleted the file meanwhile.
            uploaded = repo.mark_uploaded(file_id, size)
            if uploaded is None:
                raise not_found()
            record = uploaded
        return record, found.storage_key

    record, key = db.transact(work)
    download = storage.download_target(key, record.original_name, settings.file_url_ttl_s) if key else None
    return FileDownload(file=UserFile.model_validate(record.model_dump()), download=download)


def delete_with_copies(uow: UnitOfWork, file_id: UUID, ttl_s: int) -> bool:
    """Delete a file's row and its copies in the messages that attached it, each an 'edited' change of its
    conversation; its key is kept for maintenance until its upload URL (`ttl_s` long) has expired. The conversations
    it is attached in are locked first, then the file: the order a send takes them in. False when it was gone
    already. A RetryableError when it was attached in another conversation meanwhile: the unit of work starts again
    and locks that one too."""
    repo = FilesRepository(uow.conn)
    locked = repo.lock_attaching_conversations(file_id)
    if not repo.seal(file_id):
        return False
    if not repo.delete(file_id, ttl_s, locked):
        raise RetryableError("The file was attached again while it was being deleted; retry.")
    return True


def delete_file(db: Database, settings: Settings, storage: FileStorage, principal: Principal, file_id: UUID) -> None:
    """The owner's file: its record, its copies in the messages that attached it (each an 'edited' change of its
    conversation), then its bytes."""
    owner_id = principal.require_user()

    def work(uow: UnitOfWork) -> StoredFile:
        repo = FilesRepository(uow.conn)
        found = repo.get_owned(file_id, owner_id)
        if found is None:
            # A participant who can read the file knows it exists: a 403 for them, a 404 for everyone else.
            if repo.get_readable(file_id, owner_id) is not None:
                raise ForbiddenError("Only the owner may delete a file.")
            raise not_found()
        delete_with_copies(uow, file_id, settings.file_url_ttl_s)
        return found

    removed = db.transact(work)
    # After the commit: an object left behind by a failure here is harmless, a row without bytes is not. The file
    # is deleted either way, so the caller hears so; maintenance deletes the key again once its upload URL has
    # expired (bytes may still arrive through it until then).
    try:
        storage.delete(removed.storage_key)
    except Exception:
        logger.exception("file bytes left behind", extra={"storage_key": removed.storage_key})
