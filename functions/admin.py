"""/v1/admin: accounts (their deletion too) and the connection log, for admins (roles for super_admins only)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from functions._client import client_of
from functions._http import admins_first, lambda_entry, make_resolver, principal_of
from functions._params import Cursor, Limit
from functions._replies import no_content
from shared.bootstrap import container
from shared.models.identity import AdminUserPatch, ConnectionLog, User
from shared.models.ids import PathId
from shared.pagination import Page
from shared.services import account_deletions, admin

app = make_resolver()


@app.get("/v1/admin/users", summary="Every account, oldest first", tags=["admin"])
@admins_first()
def list_users(cursor: Cursor = None, limit: Limit = None) -> Page[User]:
    return admin.list_users(container().db, principal_of(app), cursor, limit)


@app.patch("/v1/admin/users/<id>", summary="Change a user's role or active flag", tags=["admin"])
@admins_first()
def patch_user(id: PathId, request: AdminUserPatch) -> User:
    return admin.update_user(container().db, principal_of(app), id, request, client_of(app))


@app.delete("/v1/admin/users/<id>", summary="Delete a user's account and end its sessions", tags=["admin"])
@admins_first()
def delete_user(id: PathId) -> Response[None]:
    built = container()
    account_deletions.delete_account(built.db, built.settings, principal_of(app), id)
    return no_content()


@app.get("/v1/admin/connection-logs", summary="Everyone's connection log, newest first", tags=["admin"])
@admins_first()
def list_connection_logs(cursor: Cursor = None, limit: Limit = None) -> Page[ConnectionLog]:
    return admin.list_connection_logs(container().db, principal_of(app), cursor, limit)


lambda_handler = lambda_entry(app)
