"""Where the current request came from, as API Gateway reports it (for connection logs and login limits)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from pydantic import BaseModel

from functions._replies import json_body
from shared.services.accounts import Client


def client_of(app: APIGatewayRestResolver) -> Client:
    """The source IP from the request context (not X-Forwarded-For, which the caller controls)."""
    event = app.current_event
    identity = event.request_context.identity
    return Client(address=identity.source_ip or None, user_agent=event.headers.get("user-agent") or identity.user_agent)


def created(model: BaseModel) -> Response[str]:
    return json_body(model, 201)


def no_content() -> Response[str]:
    return Response(status_code=204, content_type="application/json", body="")
