"""Every id in a request path, across every route group: a malformed id answers exactly what a random
well-formed id answers (404, one body), never a 422. The caller is a signed-in platform admin, so
authorization is never the reason for the 404.
"""

from __future__ import annotations

import random
import re
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from shared import routes
from shared.errors import problem_body
from tests.conversations_helpers import call, jwt_principal, make_user

NOT_FOUND = problem_body(404, "not-found", "Not found")
ID_PARAMS = ("id", "user_id")
MALFORMED_UUIDS = ("not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g", "%20")
MALFORMED_MESSAGE_IDS = ("abc", "0", "-1", "1.5", "1e3", str(2**63), "%C2%B2", str(uuid.UUID(int=1)))
# A valid body for each id-bearing route that takes one, so a random id is judged on the id alone.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/v1/conversations/{id}"): {"title": "renamed"},
    ("POST", "/v1/conversations/{id}/participants"): {"user_id": str(uuid.uuid4())},
    ("PATCH", "/v1/conversations/{id}/participants/{user_id}"): {"role": "member"},
    ("POST", "/v1/conversations/{id}/read"): {"message_id": 1},
    ("POST", "/v1/conversations/{id}/threads"): {"title": "t"},
    ("POST", "/v1/conversations/{id}/panels"): {"name": "p"},
    ("PATCH", "/v1/panels/{id}"): {"name": "q"},
    ("POST", "/v1/conversations/{id}/data-refs"): {"file_id": str(uuid.uuid4())},
    ("POST", "/v1/conversations/{id}/messages"): {"content": "hello"},
    ("PATCH", "/v1/messages/{id}"): {"content": "edited"},
    ("POST", "/v1/messages/{id}/reactions"): {"emoji": "🎉"},
    ("PUT", "/v1/messages/{id}/feedback"): {"rating": 5},
    ("PATCH", "/v1/admin/users/{id}"): {"is_active": True},
    ("POST", "/v1/licenses/{id}/seats"): {"user_id": str(uuid.uuid4())},
    ("PATCH", "/v1/model-configurations/{id}"): {"display_name": "m"},
    ("PATCH", "/v1/deployed-resources/{id}"): {"status": "active"},
    ("PATCH", "/v1/agent-templates/{id}"): {"display_name": "t"},
    ("PUT", "/v1/users/me/agent-templates/{id}"): {"is_enabled": True},
    ("PATCH", "/v1/code-executions/{id}"): {"output": "x"},
    ("PATCH", "/v1/analysis-reports/{id}"): {"progress_percentage": 5},
    ("POST", "/v1/threads/{id}/completions"): {"content": "hi"},
}
ID_ROUTES = [route for _, route in routes.all_routes() if "{" in route.path]


def _is_message_id(route: routes.Route, param: str) -> bool:
    return param == "id" and route.path.startswith("/v1/messages/")


def _random(route: routes.Route, param: str) -> str:
    return str(random.randint(1, 2**62)) if _is_message_id(route, param) else str(uuid.uuid4())


def _path(route: routes.Route, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), quote("👍")), route.path)


def test_every_id_bearing_route_has_a_body_when_it_takes_one():
    takes_body = {
        (r.method, r.path) for r in ID_ROUTES if r.method in ("POST", "PATCH", "PUT") and "reactions/" not in r.path
    }
    assert takes_body == set(BODIES)


@pytest.mark.parametrize("route", ID_ROUTES, ids=[f"{r.method} {r.path}" for r in ID_ROUTES])
def test_malformed_path_id_answers_the_random_id_404_when_called_by_an_admin(route, app_container, db):
    admin = jwt_principal(make_user(db, role="admin"), role="admin")
    body = BODIES.get((route.method, route.path))
    params = [p for p in re.findall(r"\{(\w+)\}", route.path) if p in ID_PARAMS]
    assert params, f"{route.path} has no id parameter"
    well_formed = {param: _random(route, param) for param in params}
    answers = [call(route.method, _path(route, well_formed), admin, body=body)]
    for param in params:
        for bad in MALFORMED_MESSAGE_IDS if _is_message_id(route, param) else MALFORMED_UUIDS:
            answers.append(call(route.method, _path(route, {**well_formed, param: bad}), admin, body=body))
    assert [(a.status, a.body) for a in answers] == [(404, NOT_FOUND)] * len(answers)
