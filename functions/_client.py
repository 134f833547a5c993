"""Where the current request came from, as API Gateway reports it (for connection logs and login limits)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from shared.services.accounts import Client


def client_of(app: APIGatewayRestResolver) -> Client:
    """The source IP from the request context (not X-Forwarded-For, which the caller controls)."""
    event = app.current_event
    identity = event.request_context.identity
    return Client(address=identity.source_ip or None, user_agent=event.headers.get("user-agent") or identity.user_agent)
