"""/v1/users/me: the caller's profile, password, sessions, properties, API keys and connection log."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from functions._client import client_of
from functions._http import lambda_entry, make_resolver, principal_of
from functions._params import Cursor, Limit
from functions._replies import credentials_json, no_content, replies
from shared.bootstrap import container
from shared.models.identity import (
    AccountDeletion,
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    ConnectionLog,
    Me,
    PasswordChange,
    ProfilePatch,
    Properties,
    PropertiesPut,
    TokenPair,
)
from shared.models.ids import PathId
from shared.pagination import Page
from shared.services import account_deletions, accounts, api_keys

app = make_resolver()


@app.get("/v1/users/me", summary="The caller's account", tags=["users"])
def get_me() -> Me:
    return accounts.get_me(container().db, principal_of(app).require_user())


@app.patch("/v1/users/me", summary="Change profile fields", tags=["users"])
def patch_me(request: ProfilePatch) -> Me:
    changes = request.model_dump(exclude_unset=True)
    return accounts.update_me(container().db, principal_of(app).require_user(), changes)


@app.delete(
    "/v1/users/me",
    summary="Delete the caller's account, confirmed with its password; ends every session and key",
    tags=["users"],
)
def delete_me(request: AccountDeletion) -> Response[None]:
    built = container()
    account_deletions.delete_own_account(built.db, built.settings, principal_of(app), request, client_of(app))
    return no_content()


@app.post(
    "/v1/users/me/password",
    summary="Change the password; ends every other session",
    tags=["users"],
    responses=replies(TokenPair, 200),
)
def change_password(request: PasswordChange) -> Response[str]:
    built = container()
    user_id = principal_of(app).require_user()
    return credentials_json(accounts.change_password(built.db, built.settings, user_id, request, client_of(app)))


@app.post("/v1/users/me/logout-all", summary="End every session and token of the caller", tags=["users"])
def logout_all() -> Response[None]:
    accounts.logout_everywhere(container().db, principal_of(app).require_user(), client_of(app))
    return no_content()


@app.get("/v1/users/me/properties", summary="Tone and additional information for the assistant", tags=["users"])
def get_properties() -> Properties:
    return accounts.get_properties(container().db, principal_of(app).require_user())


@app.put("/v1/users/me/properties", summary="Replace the caller's properties", tags=["users"])
def put_properties(request: PropertiesPut) -> Properties:
    return accounts.put_properties(container().db, principal_of(app).require_user(), request)


@app.get("/v1/users/me/api-keys", summary="The caller's API keys (never the keys themselves)", tags=["users"])
def list_api_keys(cursor: Cursor = None, limit: Limit = None) -> Page[ApiKey]:
    return api_keys.list_api_keys(container().db, principal_of(app).require_user(), cursor, limit)


@app.post(
    "/v1/users/me/api-keys",
    summary="Create an API key, shown once",
    tags=["users"],
    responses=replies(ApiKeyCreated, 201),
)
def create_api_key(request: ApiKeyCreate) -> Response[str]:
    return credentials_json(
        api_keys.create_api_key(container().db, principal_of(app), request, client_of(app)), status_code=201
    )


@app.delete("/v1/users/me/api-keys/<id>", summary="Revoke an API key", tags=["users"])
def revoke_api_key(id: PathId) -> Response[None]:
    api_keys.revoke_api_key(container().db, principal_of(app).require_user(), id, client_of(app))
    return no_content()


@app.get("/v1/users/me/connection-logs", summary="The caller's sign-ins, refreshes and key events", tags=["users"])
def list_connection_logs(cursor: Cursor = None, limit: Limit = None) -> Page[ConnectionLog]:
    return accounts.list_connection_logs(container().db, principal_of(app).require_user(), cursor, limit)


lambda_handler = lambda_entry(app)
