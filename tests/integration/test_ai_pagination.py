"""The AI lists (models, deployed resources, templates, code executions, analysis reports) page like every
other list: shared/pagination.py cursors, a malformed cursor is a 400, limit 50 by default and at most 200.
"""

from __future__ import annotations

import pytest

from shared.pagination import encode_cursor
from tests.conversations_helpers import call, jwt_principal, make_user

AI_LISTS = (
    "/v1/model-configurations",
    "/v1/deployed-resources",
    "/v1/agent-templates",
    "/v1/code-executions",
    "/v1/analysis-reports",
)
MALFORMED = ("not base64 !", "bm9wZQ", encode_cursor(["a", "b", "c"]), encode_cursor([1, 2]))


@pytest.fixture
def admin(app_container, db):
    return jwt_principal(make_user(db, role="admin"), role="admin")


def _all_pages(path, principal, limit):
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        reply = call("GET", path, principal, query=query)
        assert reply.status == 200, reply.body
        assert len(reply.body["items"]) <= limit
        seen += reply.body["items"]
        pages += 1
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return seen, pages


@pytest.mark.parametrize("path", AI_LISTS)
def test_malformed_cursor_is_a_400_when_listing(path, admin):
    for cursor in MALFORMED:
        reply = call("GET", path, admin, query={"cursor": cursor})
        assert (reply.status, reply.body["type"]) == (400, "https://confab.dev/problems/invalid-request"), cursor


@pytest.mark.parametrize("path", AI_LISTS)
def test_limit_is_capped_not_refused_and_zero_is_a_400_when_listing(path, admin):
    assert call("GET", path, admin, query={"limit": 5000}).status == 200
    assert call("GET", path, admin, query={"limit": 0}).status == 400


def test_deployed_resources_page_newest_first_without_repeats_or_gaps_when_paged(admin):
    made = []
    for n in range(7):
        body = {"resource_name": f"r{n}", "resource_type": "bedrock"}
        made.append(call("POST", "/v1/deployed-resources", admin, body=body).body["id"])
    seen, pages = _all_pages("/v1/deployed-resources", admin, limit=3)
    assert [r["id"] for r in seen] == made[::-1] and pages == 3


def test_agent_templates_page_by_name_without_repeats_or_gaps_when_paged(admin):
    names = [f"t{n:02d}" for n in (5, 1, 9, 3, 7, 2)]
    for name in names:
        body = {"template_name": name, "description": "d", "prompt_template": "p"}
        assert call("POST", "/v1/agent-templates", admin, body=body).status == 201
    seen, pages = _all_pages("/v1/agent-templates", admin, limit=4)
    assert [t["template_name"] for t in seen] == sorted(names) and pages == 2
