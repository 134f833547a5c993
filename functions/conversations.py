"""Conversations, participants, read cursors, threads, panels and data references."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from functions._http import lambda_entry, make_resolver, principal_of
from functions._params import Cursor, Limit
from functions._replies import created, created_or_ok, no_content, replies
from shared.bootstrap import container
from shared.models.conversations import (
    Conversation,
    ConversationCreate,
    ConversationUpdate,
    DataRef,
    DataRefCreate,
    Panel,
    PanelCreate,
    PanelUpdate,
    Participant,
    ParticipantAdd,
    ParticipantUpdate,
    ReadCursor,
    ReadMark,
    Thread,
    ThreadCreate,
)
from shared.models.ids import PathId
from shared.pagination import Page
from shared.services import conversations as service
from shared.services.messages import mark_read

app = make_resolver()
TAGS = ["conversations"]
# One value, the kinds separated by commas (a scalar, as every Confab query parameter is; a repeated kind is a 422).
Kind = Annotated[
    str | None,
    Query(
        description="Only conversations of these kinds, comma-separated: direct, group, room, assistant, anonymous "
        "(e.g. group,room). A next_cursor goes on only with the same kinds.",
        examples=["direct", "group,room"],
    ),
]


@app.get(
    "/v1/conversations",
    tags=TAGS,
    summary="Your conversations by last activity",
    # Documented as Powertools documents a route answering the model.
    responses={
        200: {"description": "Successful Response", "content": {"application/json": {"model": Page[Conversation]}}}
    },
)
def list_conversations(cursor: Cursor = None, limit: Limit = None, kind: Kind = None) -> Response[str]:
    page = service.list_conversations(container().db, principal_of(app), cursor, limit, kind)
    return Response(status_code=200, content_type="application/json", body=page.to_json())


@app.post(
    "/v1/conversations",
    tags=TAGS,
    summary="Create a conversation (a direct one is found if it exists)",
    responses=replies(Conversation, 201, 200),
)
def create_conversation(body: ConversationCreate) -> Response[Conversation]:
    conversation, is_new = service.create_conversation(container().db, principal_of(app), body)
    return created_or_ok(conversation, is_new)


@app.get("/v1/conversations/<id>", tags=TAGS, summary="A conversation")
def get_conversation(id: PathId) -> Conversation:
    return service.get_conversation(container().db, principal_of(app), id)


@app.patch("/v1/conversations/<id>", tags=TAGS, summary="Change a conversation (admins)")
def update_conversation(id: PathId, body: ConversationUpdate) -> Conversation:
    return service.update_conversation(container().db, principal_of(app), id, body)


@app.delete("/v1/conversations/<id>", tags=TAGS, summary="Delete a conversation (admins)")
def delete_conversation(id: PathId) -> Response[None]:
    service.delete_conversation(container().db, principal_of(app), id)
    return no_content()


@app.get("/v1/conversations/<id>/participants", tags=TAGS, summary="Participants")
def list_participants(id: PathId, cursor: Cursor = None, limit: Limit = None) -> Page[Participant]:
    return service.list_participants(container().db, principal_of(app), id, cursor, limit)


@app.post(
    "/v1/conversations/<id>/participants",
    tags=TAGS,
    summary="Add a participant (admins)",
    responses=replies(Participant, 201),
)
def add_participant(id: PathId, body: ParticipantAdd) -> Response[Participant]:
    return created(service.add_participant(container().db, principal_of(app), id, body))


@app.patch("/v1/conversations/<id>/participants/<user_id>", tags=TAGS, summary="Change a role (admins)")
def update_participant(id: PathId, user_id: PathId, body: ParticipantUpdate) -> Participant:
    db, principal = container().db, principal_of(app)
    return service.update_participant(db, principal, id, user_id, body)


@app.delete("/v1/conversations/<id>/participants/<user_id>", tags=TAGS, summary="Remove a participant, or leave")
def remove_participant(id: PathId, user_id: PathId) -> Response[None]:
    service.remove_participant(container().db, principal_of(app), id, user_id)
    return no_content()


@app.post(
    "/v1/conversations/<id>/read",
    tags=TAGS,
    summary="Mark messages up to one read (moving your read cursor) or delivered: a change in the feed",
)
def read(id: PathId, body: ReadMark) -> ReadCursor:
    return mark_read(container().db, principal_of(app), id, body)


@app.get("/v1/conversations/<id>/threads", tags=TAGS, summary="Threads of a conversation")
def list_threads(id: PathId, cursor: Cursor = None, limit: Limit = None) -> Page[Thread]:
    return service.list_threads(container().db, principal_of(app), id, cursor, limit)


@app.post("/v1/conversations/<id>/threads", tags=TAGS, summary="Start a thread", responses=replies(Thread, 201))
def create_thread(id: PathId, body: ThreadCreate) -> Response[Thread]:
    built = container()
    return created(service.create_thread(built.db, built.settings, principal_of(app), id, body))


@app.get("/v1/threads/<id>", tags=TAGS, summary="A thread with its usage totals")
def get_thread(id: PathId) -> Thread:
    return service.get_thread(container().db, principal_of(app), id)


@app.get("/v1/conversations/<id>/panels", tags=TAGS, summary="Dashboard panels")
def list_panels(id: PathId, cursor: Cursor = None, limit: Limit = None) -> Page[Panel]:
    return service.list_panels(container().db, principal_of(app), id, cursor, limit)


@app.post("/v1/conversations/<id>/panels", tags=TAGS, summary="Add a dashboard panel", responses=replies(Panel, 201))
def create_panel(id: PathId, body: PanelCreate) -> Response[Panel]:
    return created(service.create_panel(container().db, principal_of(app), id, body))


@app.patch("/v1/panels/<id>", tags=TAGS, summary="Change a panel (its creator or an admin)")
def update_panel(id: PathId, body: PanelUpdate) -> Panel:
    return service.update_panel(container().db, principal_of(app), id, body)


@app.delete("/v1/panels/<id>", tags=TAGS, summary="Delete a panel (its creator or an admin)")
def delete_panel(id: PathId) -> Response[None]:
    service.delete_panel(container().db, principal_of(app), id)
    return no_content()


@app.get("/v1/conversations/<id>/data-refs", tags=TAGS, summary="Files referenced by a room")
def list_data_refs(id: PathId, cursor: Cursor = None, limit: Limit = None) -> Page[DataRef]:
    return service.list_data_refs(container().db, principal_of(app), id, cursor, limit)


@app.post(
    "/v1/conversations/<id>/data-refs",
    tags=TAGS,
    summary="Reference one of your files in a room",
    responses=replies(DataRef, 201),
)
def create_data_ref(id: PathId, body: DataRefCreate) -> Response[DataRef]:
    return created(service.create_data_ref(container().db, principal_of(app), id, body))


@app.delete("/v1/data-refs/<id>", tags=TAGS, summary="Remove a data reference (its creator or an admin)")
def delete_data_ref(id: PathId) -> Response[None]:
    service.delete_data_ref(container().db, principal_of(app), id)
    return no_content()


lambda_handler = lambda_entry(app, body_limited=True)
