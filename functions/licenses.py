"""/v1/licenses: licences (created by admins, key shown once) and their seats; /v1/users/me/seats: the caller's."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from functions._http import admins_first, lambda_entry, make_resolver, principal_of
from functions._params import Cursor, Limit
from functions._replies import created_json, credentials_json, no_content, replies
from shared.bootstrap import container
from shared.models.identity import (
    HeldSeat,
    License,
    LicenseCreate,
    LicenseCreated,
    LicensePatch,
    Seat,
    SeatAssign,
)
from shared.models.ids import PathId
from shared.pagination import Page
from shared.services import licenses

app = make_resolver()


@app.post(
    "/v1/licenses", summary="Create a licence (admins)", tags=["licenses"], responses=replies(LicenseCreated, 201)
)
@admins_first()
def create_license(request: LicenseCreate) -> Response[str]:
    return credentials_json(licenses.create_license(container().db, principal_of(app), request), status_code=201)


@app.get("/v1/licenses", summary="The caller's licences (an admin's: any owner's, or all)", tags=["licenses"])
def list_licenses(
    cursor: Cursor = None, limit: Limit = None, owner_id: Annotated[UUID | None, Query()] = None
) -> Page[License]:
    return licenses.list_licenses(container().db, principal_of(app), cursor, limit, owner_id)


@app.patch("/v1/licenses/<id>", summary="Change a licence's seats, tier or expiry (admins)", tags=["licenses"])
def update_license(id: PathId, request: LicensePatch) -> License:
    return licenses.update_license(container().db, principal_of(app), id, request)


@app.delete("/v1/licenses/<id>", summary="Delete a licence and its seats (admins)", tags=["licenses"])
def delete_license(id: PathId) -> Response[None]:
    licenses.delete_license(container().db, principal_of(app), id)
    return no_content()


@app.get("/v1/licenses/<id>/seats", summary="Who holds the licence's seats (its owner, admins)", tags=["licenses"])
def list_seats(id: PathId, cursor: Cursor = None, limit: Limit = None) -> Page[Seat]:
    return licenses.list_seats(container().db, principal_of(app), id, cursor, limit)


@app.post("/v1/licenses/<id>/seats", summary="Give a user a seat", tags=["licenses"], responses=replies(Seat, 201))
def assign_seat(id: PathId, request: SeatAssign) -> Response[str]:
    return created_json(licenses.assign_seat(container().db, principal_of(app), id, request.user_id))


@app.delete("/v1/licenses/<id>/seats/<user_id>", summary="Take a user's seat back", tags=["licenses"])
def remove_seat(id: PathId, user_id: PathId) -> Response[None]:
    licenses.remove_seat(container().db, principal_of(app), id, user_id)
    return no_content()


@app.get("/v1/users/me/seats", summary="The licences the caller holds a seat of (never their keys)", tags=["licenses"])
def list_held_seats(cursor: Cursor = None, limit: Limit = None) -> Page[HeldSeat]:
    return licenses.list_held_seats(container().db, principal_of(app), cursor, limit)


@app.delete(
    "/v1/users/me/seats/<id>",
    summary="Give up the caller's seat of a licence ({id}: the licence's id)",
    tags=["licenses"],
)
def release_seat(id: PathId) -> Response[None]:
    licenses.release_seat(container().db, principal_of(app), id)
    return no_content()


lambda_handler = lambda_entry(app)
