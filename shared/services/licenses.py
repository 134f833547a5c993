"""Licences: created, changed and deleted by admins, with a key shown once; seats assigned by the owner (or an
admin), never more than the licence holds, and none on an expired licence."""

from __future__ import annotations

from uuid import UUID

from shared.auth.api_keys import LICENSE_KEY_MARK, issue_key
from shared.auth.principal import Principal
from shared.db import Database, UnitOfWork
from shared.errors import ConflictError, ForbiddenError, NotFoundError, UnprocessableError
from shared.models.identity import HeldSeat, License, LicenseCreate, LicenseCreated, LicensePatch, Seat
from shared.pagination import Page, decode_cursor, page_as, page_limit, page_of
from shared.repositories.licenses import HeldSeatRow, LicenseLock, LicenseRow, LicensesRepository, SeatRow
from shared.repositories.users import UsersRepository
from shared.services.accounts import CURSOR_KINDS
from shared.services.admin_rights import admin_role_now, confirm_admin, require_admin

UNKNOWN_OWNER = "owner_id must name a user."


def create_license(db: Database, principal: Principal, request: LicenseCreate) -> LicenseCreated:
    caller = require_admin(principal)
    issued = issue_key(LICENSE_KEY_MARK)

    def work(uow: UnitOfWork) -> LicenseCreated:
        confirm_admin(uow, principal, write=True)
        if request.owner_id not in (None, caller) and UsersRepository(uow.conn).get(request.owner_id) is None:
            # The body's user, not a resource of the path: a 404 would read as if the route were missing.
            raise UnprocessableError(
                UNKNOWN_OWNER, errors=[{"loc": ["body", "owner_id"], "type": "value_error", "msg": UNKNOWN_OWNER}]
            )
        row = LicensesRepository(uow.conn).add(
            owner_id=request.owner_id or caller,
            key_prefix=issued.prefix,
            key_hash=issued.key_hash,
            tier=request.tier,
            seats=request.seats,
            expires_at=request.expires_at,
        )
        return LicenseCreated.model_validate({**row.__dict__, "key": issued.key})

    return db.transact(work)


def list_licenses(
    db: Database, principal: Principal, cursor: str | None, limit: int | None, owner_id: UUID | None = None
) -> Page[License]:
    """The caller's licences; an admin's, those of `owner_id`, or every licence when it is not given."""
    caller = principal.require_user()
    size = page_limit(limit)
    after = decode_cursor(cursor, CURSOR_KINDS)

    def read(uow: UnitOfWork) -> list[LicenseRow]:
        # Someone else's licences, or everyone's, only for an account that is an admin now (admin_rights).
        owner: UUID | None = caller
        if owner_id is not None and owner_id != caller:
            confirm_admin(uow, principal, write=False, detail="Only administrators list other users' licences.")
            owner = owner_id
        elif owner_id is None and admin_role_now(uow, principal, write=False) is not None:
            owner = None
        return LicensesRepository(uow.conn).list_page(owner, after, size + 1)

    page = page_of(db.read(read), size, key=lambda row: (row.created_at, row.id))
    return page_as(page, lambda row: License.model_validate(row, from_attributes=True))


def list_seats(
    db: Database, principal: Principal, license_id: UUID, cursor: str | None, limit: int | None
) -> Page[Seat]:
    """Who holds the licence's seats, newest first: for its owner and admins (404 for anyone else)."""
    caller = principal.require_user()
    size = page_limit(limit)
    after = decode_cursor(cursor, CURSOR_KINDS)

    def read(uow: UnitOfWork) -> list[SeatRow]:
        repo = LicensesRepository(uow.conn)
        owner = repo.owner_of(license_id)
        if owner is None or (owner != caller and admin_role_now(uow, principal, write=False) is None):
            raise NotFoundError()
        return repo.seats_page(license_id, after, size + 1)

    page = page_of(db.read(read), size, key=lambda row: (row.created_at, row.user_id))
    return page_as(page, lambda row: Seat.model_validate(row, from_attributes=True))


def list_held_seats(db: Database, principal: Principal, cursor: str | None, limit: int | None) -> Page[HeldSeat]:
    """The licences the caller holds a seat of, newest seat first, as a seat holder sees them (HeldSeat)."""
    caller = principal.require_user()
    size = page_limit(limit)
    after = decode_cursor(cursor, CURSOR_KINDS)

    def read(uow: UnitOfWork) -> list[HeldSeatRow]:
        return LicensesRepository(uow.conn).held_seats_page(caller, after, size + 1)

    page = page_of(db.read(read), size, key=lambda row: (row.created_at, row.license_id))
    return page_as(page, lambda row: HeldSeat.model_validate(row, from_attributes=True))


def _managed(uow: UnitOfWork, principal: Principal, license_id: UUID) -> LicenseLock:
    # Someone else's licence and a random id give the same 404.
    caller = principal.require_user()
    found = LicensesRepository(uow.conn).lock(license_id)
    if found is None or (found.owner_id != caller and admin_role_now(uow, principal, write=True) is None):
        raise NotFoundError()
    return found


LICENCE_ADMINS = "Only administrators change or delete a licence."


def _administered(uow: UnitOfWork, principal: Principal, license_id: UUID) -> LicenseLock:
    # Its owner may see it (403); anyone else gets the random-id 404.
    caller = principal.require_user()
    found = LicensesRepository(uow.conn).lock(license_id)
    is_admin = admin_role_now(uow, principal, write=True) is not None
    if found is None or (not is_admin and found.owner_id != caller):
        raise NotFoundError()
    if not is_admin:
        raise ForbiddenError(LICENCE_ADMINS)
    return found


def update_license(db: Database, principal: Principal, license_id: UUID, request: LicensePatch) -> License:
    """Seats, tier or expiry, for admins. Seats never go below those assigned: the licence row is locked, as an
    assignment locks it, so a racing assignment cannot slip in between the count and the change."""
    request.refuse_nulls("seats", "tier")
    changes = request.model_dump(exclude_unset=True)

    def work(uow: UnitOfWork) -> License:
        repo = LicensesRepository(uow.conn)
        _administered(uow, principal, license_id)
        if request.seats is not None and repo.count_seats(license_id) > request.seats:
            raise ConflictError("More seats are assigned than that; remove seats first.")
        expiry = (request.expires_at,) if "expires_at" in changes else None
        row = repo.update(license_id, seats=request.seats, tier=request.tier, expiry=expiry)
        assert row is not None  # locked above
        return License.model_validate(row, from_attributes=True)

    return db.transact(work)


def delete_license(db: Database, principal: Principal, license_id: UUID) -> None:
    """For admins; its seats go with it, and with them the premium they gave."""

    def work(uow: UnitOfWork) -> None:
        _administered(uow, principal, license_id)
        LicensesRepository(uow.conn).delete(license_id)

    db.transact(work)


ALREADY_SEATED = "The user already has a seat on this licence."
UNKNOWN_SEAT_USER = "user_id must name a user."


def assign_seat(db: Database, principal: Principal, license_id: UUID, user_id: UUID) -> Seat:
    def work(uow: UnitOfWork) -> Seat:
        repo = LicensesRepository(uow.conn)
        found = _managed(uow, principal, license_id)
        if found.is_expired:
            raise ConflictError("The licence has expired; no seats can be assigned.")
        taken, held, known = repo.seats_taken(license_id, user_id)
        if not known:
            # The body's user, not the licence in the path: a 404 read as "no such licence".
            raise UnprocessableError(
                UNKNOWN_SEAT_USER,
                errors=[{"loc": ["body", "user_id"], "type": "value_error", "msg": UNKNOWN_SEAT_USER}],
            )
        # Before the count: a retried assignment that took the last seat is told the user has it, not that the
        # licence is full.
        if held:
            raise ConflictError(ALREADY_SEATED)
        if taken >= found.seats:
            raise ConflictError("Every seat of the licence is taken.")
        seat = repo.add_seat(license_id, user_id)  # a user deleted since the check is a foreign-key 404
        if seat is None:
            raise ConflictError(ALREADY_SEATED)
        return Seat.model_validate(seat, from_attributes=True)

    return db.transact(work)


def release_seat(db: Database, principal: Principal, license_id: UUID) -> None:
    """The caller gives up its own seat of the licence: 404 when it holds none (someone else's licence, an unknown
    id). The licence row is locked first, as an assignment and a removal lock it."""
    caller = principal.require_user()

    def work(uow: UnitOfWork) -> None:
        repo = LicensesRepository(uow.conn)
        if repo.lock(license_id) is None or repo.remove_seat(license_id, caller) is None:
            raise NotFoundError()

    db.transact(work)


def remove_seat(db: Database, principal: Principal, license_id: UUID, user_id: UUID) -> None:
    def work(uow: UnitOfWork) -> None:
        repo = LicensesRepository(uow.conn)
        _managed(uow, principal, license_id)
        if repo.remove_seat(license_id, user_id) is None:
            raise NotFoundError()

    db.transact(work)
