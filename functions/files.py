"""User files: POST /v1/files answers a presigned upload; GET /v1/files/{id} a presigned download."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from functions._http import lambda_entry, make_resolver, principal_of
from functions._params import Cursor, Limit
from functions._replies import created, no_content, replies
from shared.bootstrap import container
from shared.models.conversations import FileCreate, FileDownload, FileUpload, UserFile
from shared.models.ids import PathId
from shared.pagination import Page
from shared.services import files as service
from shared.storage import FileStorage, storage_for

app = make_resolver()
TAGS = ["files"]


def _storage() -> FileStorage:
    # Local mode: the local server serves the signed URLs, on the host the client used to reach it.
    headers = app.current_event.headers or {}
    host = next((v for k, v in headers.items() if k.lower() == "host"), "127.0.0.1:8000")
    return storage_for(container().settings, origin=f"http://{host}")


@app.post(
    "/v1/files", tags=TAGS, summary="Create a file record and a presigned upload", responses=replies(FileUpload, 201)
)
def create_file(body: FileCreate) -> Response[FileUpload]:
    built = container()
    return created(service.create_file(built.db, built.settings, _storage(), principal_of(app), body))


@app.get("/v1/files", tags=TAGS, summary="Your files")
def list_files(cursor: Cursor = None, limit: Limit = None) -> Page[UserFile]:
    return service.list_files(container().db, principal_of(app), cursor, limit)


@app.get("/v1/files/<id>", tags=TAGS, summary="A file with a presigned download")
def get_file(id: PathId) -> FileDownload:
    built = container()
    return service.get_file(built.db, built.settings, _storage(), principal_of(app), id)


@app.delete("/v1/files/<id>", tags=TAGS, summary="Delete a file and its bytes")
def delete_file(id: PathId) -> Response[None]:
    built = container()
    service.delete_file(built.db, built.settings, _storage(), principal_of(app), id)
    return no_content()


lambda_handler = lambda_entry(app, body_limited=True)
