"""POST /v1/anonymous/conversations: a conversation with no owner and a token that reaches it only."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from functions._http import lambda_entry, make_resolver
from functions._replies import credentials_json, replies
from shared.bootstrap import container
from shared.models.conversations import AnonymousConversation, AnonymousConversationCreate
from shared.services.anonymous import create_anonymous_conversation

app = make_resolver()


@app.post(
    "/v1/anonymous/conversations",
    tags=["conversations"],
    summary="Start an anonymous conversation",
    responses=replies(AnonymousConversation, 201),
)
def create(body: AnonymousConversationCreate | None = None) -> Response[str]:
    # No body at all is a conversation without a title, as `{}` is: a chat widget starts one with a bare POST.
    built = container()
    address = app.current_event.request_context.identity.source_ip or "unknown"
    chosen = body or AnonymousConversationCreate()
    # The answer shows the conversation's token once: credentials_json keeps it out of every cache.
    return credentials_json(create_anonymous_conversation(built.db, built.settings, address, chosen), status_code=201)


lambda_handler = lambda_entry(app, body_limited=True)
