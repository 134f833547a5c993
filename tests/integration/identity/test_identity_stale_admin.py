"""Admin routes read the caller's rights from the account, not from an authorizer answer API Gateway cached.

API Gateway reuses an Allow for up to a minute (docs/deploy.md, "Authorizer caching"), and the context it carries
says what the role was when the answer was made. Each test below hands a handler such a context, saying admin,
for an account that has meanwhile been demoted or deactivated.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from shared.auth.principal import Principal
from shared.services.admin_rights import confirm_admin
from tests.ai_helpers import add_model, add_user, api_event
from tests.helpers import FakeLambdaContext, body_of, header

LOWERED = {
    "demoted": "UPDATE users SET role = 'user', token_version = token_version + 1 WHERE id = %s",
    "deactivated": "UPDATE users SET is_active = false, token_version = token_version + 1 WHERE id = %s",
    # Still an admin, but every session ended (logout-all, a password change): the token's version is stale.
    "signed out": "UPDATE users SET token_version = token_version + 1 WHERE id = %s",
}


def _call(module: str, event: dict[str, Any]) -> dict[str, Any]:
    handler = __import__(f"functions.{module}", fromlist=["lambda_handler"]).lambda_handler
    return handler(event, FakeLambdaContext())  # type: ignore[no-any-return]


def _stale_admin(db: Any, lowered: str) -> uuid.UUID:
    """An account that was an admin when its authorizer answer was made, and is no longer."""
    admin = add_user(db, role="admin")
    db.execute(LOWERED[lowered], (admin,))
    return admin  # type: ignore[no-any-return]


def _admin_context(caller: uuid.UUID) -> dict[str, str]:
    """The authorizer's answer for the caller's access token, made before its account changed (version 0)."""
    return Principal(kind="jwt", user_id=caller, role="admin", token_version=0).to_context()


def _arrange(db: Any) -> dict[str, Any]:
    owner = add_user(db)
    model = add_model(db)
    template = db.execute(
        """INSERT INTO agent_templates (template_name, description, prompt_template)
           VALUES ('planner', 'd', 'plan') RETURNING id"""
    ).fetchone()[0]
    resource = db.execute(
        "INSERT INTO deployed_resources (resource_name, resource_type) VALUES ('gpu', 'sagemaker') RETURNING id"
    ).fetchone()[0]
    licence = db.execute(
        """INSERT INTO licenses (owner_id, key_prefix, key_hash, tier, seats)
           VALUES (%s, 'cfl_abcdefgh', 'x', 'premium', 5) RETURNING id""",
        (owner,),
    ).fetchone()[0]
    return {"owner": owner, "model": model, "template": template, "resource": resource, "licence": licence}


def _snapshot(db: Any) -> list[Any]:
    return [
        db.execute(f"SELECT to_jsonb(t) - 'updated_at' FROM {table} t ORDER BY 1::text").fetchall()
        for table in ("model_configurations", "deployed_resources", "licenses", "license_seats", "agent_templates")
    ]


# (name, module, method, resource, path, body, query, status): status is what a caller who is not an admin gets.
ROUTES = [
    ("model create", "catalog", "POST", "/v1/model-configurations", "", {"model_id": "gpt-evil"}, None, 403),
    ("model patch", "catalog", "PATCH", "/v1/model-configurations/{id}", "model", {"display_name": "x"}, None, 403),
    (
        "resource create",
        "catalog",
        "POST",
        "/v1/deployed-resources",
        "",
        {"resource_name": "evil", "resource_type": "bedrock", "endpoint_url": "https://93.184.216.34/v1"},
        None,
        403,
    ),
    (
        "resource patch",
        "catalog",
        "PATCH",
        "/v1/deployed-resources/{id}",
        "resource",
        {"endpoint_url": "https://93.184.216.34/v1"},
        None,
        403,
    ),
    ("resource delete", "catalog", "DELETE", "/v1/deployed-resources/{id}", "resource", None, None, 403),
    ("resource list", "catalog", "GET", "/v1/deployed-resources", "", None, None, 403),
    ("resource get", "catalog", "GET", "/v1/deployed-resources/{id}", "resource", None, None, 403),
    ("licence create", "licenses", "POST", "/v1/licenses", "", {"tier": "enterprise", "seats": 9}, None, 403),
    ("licence list of another", "licenses", "GET", "/v1/licenses", "", None, "owner", 403),
    ("licence patch of another", "licenses", "PATCH", "/v1/licenses/{id}", "licence", {"seats": 99}, None, 404),
    ("licence delete of another", "licenses", "DELETE", "/v1/licenses/{id}", "licence", None, None, 404),
    ("seat list of another", "licenses", "GET", "/v1/licenses/{id}/seats", "licence", None, None, 404),
    ("seat assign on another's", "licenses", "POST", "/v1/licenses/{id}/seats", "licence", "self", None, 404),
    (
        "template create",
        "catalog",
        "POST",
        "/v1/agent-templates",
        "",
        {"template_name": "evil", "description": "d", "prompt_template": "p"},
        None,
        403,
    ),
    ("template patch", "catalog", "PATCH", "/v1/agent-templates/{id}", "template", {"prompt_template": "x"}, None, 403),
    ("usage monthly", "usage", "GET", "/v1/admin/usage/monthly", "", None, {"month": "2026-11"}, 403),
    ("usage models", "usage", "GET", "/v1/admin/usage/models", "", None, None, 403),
    ("user list", "admin", "GET", "/v1/admin/users", "", None, None, 403),
    ("connection logs", "admin", "GET", "/v1/admin/connection-logs", "", None, None, 403),
]


def _event(route: tuple[Any, ...], ids: dict[str, Any], caller: uuid.UUID) -> dict[str, Any]:
    _, _, method, resource, target, body, query, _ = route
    path = resource.replace("{id}", str(ids[target])) if target else resource
    params = {"id": str(ids[target])} if target else None
    if body == "self":
        body = {"user_id": str(caller)}
    if query == "owner":
        query = {"owner_id": str(ids["owner"])}
    return api_event(
        method,
        resource,
        path,
        principal=_admin_context(caller),
        body=body,
        path_parameters=params,
        query=query,
    )


@pytest.mark.parametrize("lowered", sorted(LOWERED))
@pytest.mark.parametrize("route", ROUTES, ids=[r[0] for r in ROUTES])
def test_an_admin_route_is_refused_and_writes_nothing_when_the_caller_was_demoted_or_deactivated_since_the_answer(
    app_container, db, route, lowered
):
    ids = _arrange(db)
    caller = _stale_admin(db, lowered)
    before = _snapshot(db)
    response = _call(route[1], _event(route, ids, caller))
    assert response["statusCode"] == route[-1], response["body"]
    assert header(response, "Content-Type") == "application/problem+json"
    assert _snapshot(db) == before


@pytest.mark.parametrize("route", ROUTES, ids=[r[0] for r in ROUTES])
def test_an_admin_route_works_for_a_caller_who_is_still_an_admin(app_container, db, route):
    # The same requests succeed for a current admin: what refuses them above is the stored role, not the request.
    ids = _arrange(db)
    caller = add_user(db, role="admin")
    response = _call(route[1], _event(route, ids, caller))
    assert 200 <= response["statusCode"] < 300, response["body"]


@pytest.mark.parametrize("lowered", sorted(LOWERED))
def test_catalog_and_template_lists_show_a_demoted_admin_what_a_user_sees(app_container, db, lowered):
    ids = _arrange(db)
    db.execute("UPDATE model_configurations SET is_active = false WHERE id = %s", (ids["model"],))
    add_model(db, "visible", base_url="https://93.184.216.34/v1")
    db.execute("UPDATE agent_templates SET is_active = false WHERE id = %s", (ids["template"],))
    caller = _stale_admin(db, lowered)
    principal = _admin_context(caller)
    models = _call(
        "catalog", api_event("GET", "/v1/model-configurations", "/v1/model-configurations", principal=principal)
    )
    assert models["statusCode"] == 200
    assert [(m["model_id"], m["system_prompt"], m["base_url"]) for m in body_of(models)["items"]] == [
        ("visible", None, None)
    ]
    listed = _call("catalog", api_event("GET", "/v1/agent-templates", "/v1/agent-templates", principal=principal))
    assert listed["statusCode"] == 200 and body_of(listed)["items"] == []
    path = f"/v1/users/me/agent-templates/{ids['template']}"
    preference = api_event(
        "GET",
        "/v1/users/me/agent-templates/{id}",
        path,
        principal=principal,
        path_parameters={"id": str(ids["template"])},
    )
    assert _call("catalog", preference)["statusCode"] == 404


def test_a_demotion_waits_for_an_admin_write_in_flight_so_none_lands_after_it_answers(app_container, db):
    # The admin write reads the caller's row FOR SHARE: the UPDATE that demotes it cannot commit in between.
    admin = add_user(db, role="admin")
    principal = Principal(kind="jwt", user_id=admin, role="admin")
    with app_container.db.unit_of_work() as uow:
        assert confirm_admin(uow, principal, write=True) == "admin"
        db.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            db.execute("UPDATE users SET role = 'user' WHERE id = %s", (admin,))
    db.execute("UPDATE users SET role = 'user' WHERE id = %s", (admin,))


@pytest.mark.parametrize("ended", ["revoked_at = now()", "expires_at = now() - interval '1 second'"])
def test_an_admin_acting_with_an_api_key_revoked_or_expired_since_the_answer_is_refused(app_container, db, ended):
    # The authorizer's answer for the key is cached for up to a minute: a revoked admin key kept admin rights.
    admin = add_user(db, role="admin")
    key = db.execute(
        "INSERT INTO api_keys (user_id, name, prefix, key_hash) VALUES (%s, 'ci', 'cfb_abcdefgh', 'x') RETURNING id",
        (admin,),
    ).fetchone()[0]
    context = Principal(kind="api_key", user_id=admin, role="admin", api_key_id=key, token_version=0).to_context()

    def create(model_id: str) -> dict[str, Any]:
        body = {"model_id": model_id}
        path = "/v1/model-configurations"
        return _call("catalog", api_event("POST", path, path, principal=context, body=body))

    assert create("while-the-key-works")["statusCode"] == 201
    db.execute(f"UPDATE api_keys SET {ended} WHERE id = %s", (key,))
    refused = create("after-it-ended")
    assert refused["statusCode"] == 403 and header(refused, "Content-Type") == "application/problem+json"
    assert db.execute("SELECT count(*) FROM model_configurations WHERE model_id = 'after-it-ended'").fetchone() == (0,)
