"""Messages: send and page, edit and delete, reactions, feedback, thread pages and search."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import unquote
from uuid import UUID

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from functions._http import lambda_entry, make_resolver, principal_of
from functions._params import Cursor, IdempotencyKeyHeader, Limit, idempotency_key_of
from functions._replies import created_or_ok, no_content, replies
from shared.bootstrap import container
from shared.models.conversations import (
    Feedback,
    FeedbackPut,
    Message,
    MessageChange,
    MessageCreate,
    MessageEdit,
    MessageUpdate,
    Reaction,
    ReactionCreate,
    ReactionSummary,
)
from shared.models.ids import MessageId, PathId
from shared.pagination import BIGINT_RANGE, Page
from shared.services import messages as service

app = make_resolver()
TAGS = ["messages"]
Direction = Annotated[
    Literal["backward", "forward"] | None,
    Query(description="backward (the default): newest first; forward: oldest first"),
]


def _position(description: str) -> Query:
    """A message id or a change id (drawn from one sequence): a bigint, so beyond it is a 422 from validation rather
    than an error from the database."""
    return Query(ge=0, le=BIGINT_RANGE.stop - 1, description=description)


After = Annotated[
    int | None,
    _position(
        "Start after this message (the newest one the client has), oldest first: the messages sent since. Not with "
        "cursor, nor with direction=backward."
    ),
]
ChangesAfter = Annotated[
    int | None,
    _position(
        "Changes after this position: the newest change id the client has applied (at first, the newest "
        "message id it has read; 0, the default: every change kept). Hold it apart from the messages' after: one "
        "number for both skips changes (docs/conversations.md). Not with cursor.",
    ),
]


@app.get(
    "/v1/conversations/<id>/messages",
    tags=TAGS,
    summary="A page of messages (backward: newest first)",
    responses={200: {"description": "A page of messages", "content": {"application/json": {"model": Page[Message]}}}},
)
def list_messages(
    id: PathId, cursor: Cursor = None, limit: Limit = None, direction: Direction = None, after: After = None
) -> Response[str]:
    start = service.PageStart.of(cursor, direction, after)
    page = service.list_messages(container().db, principal_of(app), id, start, limit)
    return Response(status_code=200, content_type="application/json", body=page.to_json())


# The change feed's 410 names where to resume; Problem is the merged document's (shared/local/server.py).
CHANGES_GONE: OpenAPIResponse = {
    "description": "The position is older than the changes kept: read the messages again, then poll changes after "
    "resume_after",
    "content": {
        "application/problem+json": {
            "schema": {
                "allOf": [
                    {"$ref": "#/components/schemas/Problem"},
                    {
                        "type": "object",
                        "properties": {
                            "resume_after": {
                                "type": "integer",
                                "description": "The conversation's newest position when the 410 was answered",
                            }
                        },
                        "required": ["resume_after"],
                    },
                ]
            }
        }
    },
}


@app.get(
    "/v1/conversations/<id>/changes",
    tags=TAGS,
    summary="Message, mark and participant changes since a position, oldest first (410: resync)",
    responses={**replies(Page[MessageChange], 200), 410: CHANGES_GONE},
)
def list_changes(id: PathId, after: ChangesAfter = None, cursor: Cursor = None, limit: Limit = None) -> Response[str]:
    page = service.list_changes(container().db, principal_of(app), id, after, cursor, limit)
    return Response(status_code=200, content_type="application/json", body=page.to_json())


@app.post(
    "/v1/conversations/<id>/messages",
    tags=TAGS,
    summary="Send (a retried idempotency key answers 200)",
    responses={
        201: {"description": "Sent", "content": {"application/json": {"model": Message}}},
        200: {
            "description": "The original of a retried idempotency key",
            "content": {"application/json": {"model": Message}},
        },
    },
)
def send_message(
    id: PathId,
    body: MessageCreate,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response[str]:
    key = idempotency_key_of(body.idempotency_key, idempotency_key)  # as a thread completion reads it
    if key != body.idempotency_key:
        body = body.model_copy(update={"idempotency_key": key})
    built = container()
    message_json, is_new = service.send_message(built.db, built.settings, principal_of(app), id, body)
    return Response(status_code=201 if is_new else 200, content_type="application/json", body=message_json)


@app.patch("/v1/messages/<id>", tags=TAGS, summary="Edit your message (earlier versions are kept)")
def edit_message(id: MessageId, body: MessageUpdate) -> Message:
    built = container()
    return service.edit_message(built.db, built.settings, principal_of(app), id, body)


@app.delete("/v1/messages/<id>", tags=TAGS, summary="Delete a message (its sender or an admin)")
def delete_message(id: MessageId) -> Response[None]:
    service.delete_message(container().db, principal_of(app), id)
    return no_content()


@app.get("/v1/messages/<id>/edits", tags=TAGS, summary="Earlier versions of an edited message, latest first")
def list_edits(id: MessageId, cursor: Cursor = None, limit: Limit = None) -> Page[MessageEdit]:
    return service.list_edits(container().db, principal_of(app), id, cursor, limit)


@app.get("/v1/messages/<id>/reactions", tags=TAGS, summary="Reaction counts by emoji")
def list_reactions(id: MessageId) -> ReactionSummary:
    return service.reaction_summary(container().db, principal_of(app), id)


@app.post(
    "/v1/messages/<id>/reactions", tags=TAGS, summary="React (once per emoji)", responses=replies(Reaction, 201, 200)
)
def add_reaction(id: MessageId, body: ReactionCreate) -> Response[Reaction]:
    reaction, is_new = service.add_reaction(container().db, principal_of(app), id, body.emoji)
    return created_or_ok(reaction, is_new)


@app.delete("/v1/messages/<id>/reactions/<emoji>", tags=TAGS, summary="Take a reaction back")
def remove_reaction(id: MessageId, emoji: str) -> Response[None]:
    service.remove_reaction(container().db, principal_of(app), id, unquote(emoji))
    return no_content()


@app.put("/v1/messages/<id>/feedback", tags=TAGS, summary="Rate a message (one rating per user)")
def put_feedback(id: MessageId, body: FeedbackPut) -> Feedback:
    return service.put_feedback(container().db, principal_of(app), id, body)


@app.get("/v1/messages/<id>/feedback", tags=TAGS, summary="Your rating of a message")
def get_feedback(id: MessageId) -> Feedback:
    return service.get_feedback(container().db, principal_of(app), id)


@app.get(
    "/v1/threads/<id>/messages",
    tags=TAGS,
    summary="A page of a thread's messages",
    responses={200: {"description": "A page of messages", "content": {"application/json": {"model": Page[Message]}}}},
)
def list_thread_messages(
    id: PathId, cursor: Cursor = None, limit: Limit = None, direction: Direction = None, after: After = None
) -> Response[str]:
    start = service.PageStart.of(cursor, direction, after)
    page = service.list_thread_messages(container().db, principal_of(app), id, start, limit)
    return Response(status_code=200, content_type="application/json", body=page.to_json())


@app.get(
    "/v1/search/messages",
    tags=TAGS,
    summary="Full-text search over your conversations",
    responses={200: {"description": "A page of messages", "content": {"application/json": {"model": Page[Message]}}}},
)
def search_messages(
    q: Annotated[str | None, Query()] = None,
    conversation_id: Annotated[UUID | None, Query()] = None,
    cursor: Cursor = None,
    limit: Limit = None,
) -> Response[str]:
    page = service.search_messages(container().db, principal_of(app), q, cursor, limit, conversation_id)
    return Response(status_code=200, content_type="application/json", body=page.to_json())


lambda_handler = lambda_entry(app, body_limited=True)
