"""Every id in a request path, across every route group: a malformed id answers exactly what a random
well-formed id answers (404, one body), never a 422. The caller is a signed-in platform admin, so
authorization is never the reason for the 404.
"""

from __future__ import annotations

import random
import re
import uuid
from urllib.parse import quote

import pytest

from shared import routes
from shared.errors import problem_body
from tests.conversations_helpers import VALID_BODIES, call, jwt_principal, make_user

NOT_FOUND = problem_body(404, "not-found", "Not found")
ID_PARAMS = ("id", "user_id")
MALFORMED_UUIDS = ("not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g", "%20")
MALFORMED_MESSAGE_IDS = ("abc", "0", "-1", "1.5", "1e3", str(2**63), "%C2%B2", str(uuid.UUID(int=1)))
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
    assert takes_body == set(VALID_BODIES)


@pytest.mark.parametrize("route", ID_ROUTES, ids=[f"{r.method} {r.path}" for r in ID_ROUTES])
def test_malformed_path_id_answers_the_random_id_404_when_called_by_an_admin(route, app_container, db):
    admin = jwt_principal(make_user(db, role="admin"), role="admin")
    body = VALID_BODIES.get((route.method, route.path))
    params = [p for p in re.findall(r"\{(\w+)\}", route.path) if p in ID_PARAMS]
    assert params, f"{route.path} has no id parameter"
    well_formed = {param: _random(route, param) for param in params}
    answers = [call(route.method, _path(route, well_formed), admin, body=body)]
    for param in params:
        for bad in MALFORMED_MESSAGE_IDS if _is_message_id(route, param) else MALFORMED_UUIDS:
            answers.append(call(route.method, _path(route, {**well_formed, param: bad}), admin, body=body))
    assert [(a.status, a.body) for a in answers] == [(404, NOT_FOUND)] * len(answers)
