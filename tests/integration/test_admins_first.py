"""Routes for administrators refuse anyone else (403) before they read the request: a bad query or body from a
caller who is not an admin is a 403, never a 400 or 422 that reads as if the request could succeed once fixed
(functions/_http.admins_first)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conversations_helpers import call, jwt_principal
from tests.helpers import admins_first_operations

ID = str(uuid.uuid4())
# Each admins-first route with a request that is wrong whatever the caller: (path, query, body).
BAD_REQUESTS: dict[tuple[str, str], tuple[str, dict[str, Any] | None, Any]] = {
    ("GET", "/v1/admin/users"): ("/v1/admin/users", {"limit": "0"}, None),
    ("PATCH", "/v1/admin/users/{id}"): (f"/v1/admin/users/{ID}", None, {"role": 5}),
    ("DELETE", "/v1/admin/users/{id}"): ("/v1/admin/users/not-an-id", None, None),
    ("GET", "/v1/admin/connection-logs"): ("/v1/admin/connection-logs", {"cursor": "not-a-cursor"}, None),
    ("GET", "/v1/admin/usage/monthly"): ("/v1/admin/usage/monthly", {"month": "2026-13"}, None),
    ("GET", "/v1/admin/usage/models"): ("/v1/admin/usage/models", {"from": "yesterday"}, None),
    ("POST", "/v1/licenses"): ("/v1/licenses", None, {}),
    ("POST", "/v1/model-configurations"): ("/v1/model-configurations", None, {}),
    ("PATCH", "/v1/model-configurations/{id}"): (f"/v1/model-configurations/{ID}", None, {"display_name": 5}),
    ("GET", "/v1/deployed-resources"): ("/v1/deployed-resources", {"limit": "0"}, None),
    ("POST", "/v1/deployed-resources"): ("/v1/deployed-resources", None, {}),
    ("GET", "/v1/deployed-resources/{id}"): ("/v1/deployed-resources/not-an-id", None, None),
    ("PATCH", "/v1/deployed-resources/{id}"): (f"/v1/deployed-resources/{ID}", None, {"resource_name": 5}),
    ("DELETE", "/v1/deployed-resources/{id}"): ("/v1/deployed-resources/not-an-id", None, None),
    ("POST", "/v1/agent-templates"): ("/v1/agent-templates", None, {}),
    ("PATCH", "/v1/agent-templates/{id}"): (f"/v1/agent-templates/{ID}", None, {"template_name": 5}),
}


def test_the_table_names_every_admins_first_route():
    assert admins_first_operations() == set(BAD_REQUESTS)


@pytest.mark.parametrize("route", sorted(BAD_REQUESTS), ids=" ".join)
def test_a_bad_request_from_a_caller_who_is_not_an_admin_is_a_403(app_env, route):
    path, query, body = BAD_REQUESTS[route]
    # The request is wrong: an admin is told so (a malformed id is a 404, as for any id).
    admin = call(route[0], path, jwt_principal(uuid.uuid4(), role="admin"), query=query, body=body)
    assert admin.status in (400, 404, 422), admin.body
    refused = call(route[0], path, jwt_principal(uuid.uuid4()), query=query, body=body)
    assert refused.status == 403, refused.body
    assert refused.body["type"].endswith("/forbidden") and "admin" in refused.body["detail"].lower()
