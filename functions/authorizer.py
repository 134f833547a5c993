"""API Gateway REQUEST authorizer: a JWT, an API key or an anonymous-conversation token -> principal context.

Kept light for cold starts: no boto3 on the JWT path (only a Secrets Manager key read imports it).
"""

from __future__ import annotations

from typing import Any

from functions._logging import LogContext
from shared import routes
from shared.auth.principal import Principal
from shared.bootstrap import container
from shared.errors import UnauthorizedError
from shared.observability import logger
from shared.services.authentication import authenticate, credential_from_headers

# API Gateway's contract: raising exactly this message is answered with a 401.
UNAUTHORIZED = "Unauthorized"


def _route_auth(event: dict[str, Any]) -> routes.Auth:
    resource, method = event.get("resource"), event.get("httpMethod")
    for _, route in routes.all_routes():
        if route.path == resource and route.method == method:
            return route.auth
    return "user"


def _api_wildcard(method_arn: str) -> str:
    # arn:aws:execute-api:region:account:api/stage/METHOD/path -> .../api/stage/*/*: the principal does not
    # depend on the route, so a cached answer may be reused for every route of this API and stage.
    head, _, rest = method_arn.partition(":execute-api:")
    parts = rest.split("/")
    return f"{head}:execute-api:{'/'.join(parts[:2])}/*/*" if len(parts) >= 2 else method_arn


def policy_for(principal: Principal, method_arn: str) -> dict[str, Any]:
    """The Allow policy and the flat context API Gateway hands to the handler."""
    return {
        "principalId": str(principal.user_id or principal.conversation_id),
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": _api_wildcard(method_arn)}],
        },
        "context": principal.to_context(),
    }


_log_context = LogContext()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _log_context(event, context)  # a refused credential's log line names the request it came with
    built = container()
    credential = credential_from_headers(event.get("headers"))
    try:
        principal = authenticate(
            credential, db=built.db, settings=built.settings, allow_anonymous=_route_auth(event) == "any"
        )
    except UnauthorizedError:
        raise Exception(UNAUTHORIZED) from None  # the message is the contract
    logger.debug("authorized", extra={"kind": principal.kind})
    return policy_for(principal, str(event.get("methodArn", "")))
