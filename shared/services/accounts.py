"""Accounts and sessions: signup, login with brute-force limits, refresh rotation with reuse detection, logout,
and what a user does with their own account."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from shared.auth.keys import signing_key
from shared.auth.opaque import hash_secret, new_secret, same_hash
from shared.auth.passwords import check_password_rules, hash_password, needs_rehash, verify_password
from shared.auth.tokens import issue_access_token
from shared.db import Database, UnitOfWork
from shared.errors import ConflictError, ForbiddenError, NotFoundError, RateLimitedError, UnauthorizedError
from shared.models.identity import (
    ConnectionLog,
    LoginRequest,
    Me,
    PasswordChange,
    Properties,
    PropertiesPut,
    SignupRequest,
    TokenPair,
    User,
)
from shared.observability import logger
from shared.pagination import Page, decode_cursor, page_as, page_limit, page_of
from shared.repositories.connection_logs import ConnectionLogsRepository
from shared.repositories.licenses import LicensesRepository
from shared.repositories.refresh_tokens import RefreshTokensRepository
from shared.repositories.users import UserRow, UsersRepository
from shared.settings import Settings

LOGIN_FAILED = "Invalid login or password."
REFRESH_FAILED = "Invalid or expired refresh token."
WRONG_PASSWORD = "The current password is wrong."
# An account deactivated since the authorizer's answer (cached for up to a minute in AWS) was given: that answer is
# no longer the account's, as the authorizer itself would now say.
INACTIVE = "Invalid or missing credentials."
CURSOR_KINDS = (datetime, UUID)


@dataclass(frozen=True)
class Client:
    """Where a request came from (API Gateway's source IP and the User-Agent), for logs and limits."""

    address: str | None = None
    user_agent: str | None = None


def to_user(row: UserRow) -> User:
    return User.model_validate(row, from_attributes=True)


def to_me(row: UserRow, has_premium: bool) -> Me:
    """The caller's own account: what GET /v1/users/me and every token pair answer."""
    return Me(**to_user(row).model_dump(), has_premium=has_premium)


def _log(
    uow: UnitOfWork,
    action: str,
    user_id: UUID | None,
    client: Client,
    login_key: str | None = None,
    *,
    actor_id: UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """One row of the security trail about `user_id`; `actor_id` when someone else (an administrator) acted."""
    ConnectionLogsRepository(uow.conn).add(
        action,
        user_id=user_id,
        ip_address=client.address,
        user_agent=(client.user_agent or "")[:512] or None,
        login_key=login_key,
        actor_id=actor_id,
        detail=detail,
    )


def _new_refresh_token(
    uow: UnitOfWork,
    settings: Settings,
    user: UserRow,
    client: Client,
    family_id: UUID | None = None,
    parent_id: UUID | None = None,
) -> str:
    token_id, secret = uuid.uuid4(), new_secret()
    RefreshTokensRepository(uow.conn).add(
        token_id=token_id,
        user_id=user.id,
        family_id=family_id or uuid.uuid4(),
        parent_id=parent_id,
        token_hash=hash_secret(secret),
        token_version=user.token_version,
        ttl_s=settings.refresh_token_ttl_s,
        created_ip=client.address,
        user_agent=(client.user_agent or "")[:512] or None,
    )
    return f"{token_id}.{secret}"


def _pair(
    uow: UnitOfWork,
    settings: Settings,
    user: UserRow,
    client: Client,
    family_id: UUID | None = None,
    parent_id: UUID | None = None,
    *,
    has_premium: bool,
) -> TokenPair:
    refresh = _new_refresh_token(uow, settings, user, client, family_id, parent_id)
    access, expires_in = issue_access_token(
        user.id, user.role, user.token_version, key=signing_key(settings), settings=settings
    )
    user_out = to_me(user, has_premium)
    return TokenPair(user=user_out, access_token=access, refresh_token=refresh, expires_in=expires_in)


# Signup and login -------------------------------------------------------------------------------------------


def signup(db: Database, settings: Settings, request: SignupRequest, client: Client) -> TokenPair:
    """A new `user` account and its first token pair; 422 on password rules, 409 when taken, 429 when the
    client's network has been refused as taken too often."""
    check_password_rules(request.password)
    db.read(lambda uow: _throttle_signup(uow, settings, client))
    password_hash = hash_password(request.password, settings.bcrypt_rounds)
    profile = request.model_dump(exclude={"username", "email", "password"})

    def work(uow: UnitOfWork) -> TokenPair:
        user = UsersRepository(uow.conn).add(
            username=request.username, email=request.email, password_hash=password_hash, **profile
        )
        _log(uow, "signup", user.id, client)
        # A new account owns no licence and holds no seat: nothing else can name it before this transaction commits.
        return _pair(uow, settings, user, client, has_premium=False)

    try:
        return db.transact(work)
    except ConflictError:
        # The only unique value this signup does not make at random is the username or e-mail address.
        db.transact(lambda uow: _log(uow, "signup_failed", None, client))
        raise


def login_key(login: str) -> str:
    """What is stored of an attempted login: a hash of its lower-cased text."""
    return hash_secret(login.strip().lower())


def _wait_seconds(times: list[datetime], limit: int, window: timedelta, now: datetime) -> float | None:
    # `times` holds at most `limit` failures, newest first; the oldest must leave the window first.
    if len(times) < limit:
        return None
    return (times[-1] + window - now).total_seconds()


# Failure times of one key in the window, newest first, at most the limit: (logs, since, limit) -> times.
FailureCount = Callable[[ConnectionLogsRepository, datetime, int], list[datetime]]


def _refuse_over_limit(
    uow: UnitOfWork, settings: Settings, counts: list[tuple[FailureCount, int]], detail: str
) -> None:
    """429, with Retry-After until the oldest counted failure leaves the window, once any count reaches its limit."""
    logs = ConnectionLogsRepository(uow.conn)
    now = logs.now()
    window = timedelta(seconds=settings.login_failure_window_s)
    waits = [_wait_seconds(count(logs, now - window, limit), limit, window, now) for count, limit in counts]
    due = [wait for wait in waits if wait is not None]
    if due:
        logger.info("throttled", extra={"detail": detail})
        raise RateLimitedError(detail, retry_after=max(1, math.ceil(max(due))))


def _throttle(uow: UnitOfWork, settings: Settings, key: str, client: Client) -> None:
    # Per typed login whether or not an account matches, and cleared by a successful login with that same key
    # (not for the address): counting an account across its username and e-mail would tell, by a 429 on one
    # after failures on the other, that both are one account. Same answer whether the account exists.
    counts: list[tuple[FailureCount, int]] = [
        (lambda logs, since, n: logs.recent_failures_for_login(key, since, n), settings.login_max_failures_per_account)
    ]
    address = client.address
    if address:
        per_address = settings.login_max_failures_per_address
        counts.append((lambda logs, since, n: logs.recent_failures_for_address(address, since, n), per_address))
        # And an IPv6 client's /48 as a whole, with a larger budget: it bounds a client rotating the /64s of a
        # routed /56 or /48, while one /64 (which stops at its own limit) spends only a part of it.
        per_network = settings.login_max_failures_per_ipv6_48
        counts.append((lambda logs, since, n: logs.recent_failures_for_network(address, since, n), per_network))
    _refuse_over_limit(uow, settings, counts, "Too many failed sign-in attempts; try again later.")


def _throttle_signup(uow: UnitOfWork, settings: Settings, client: Client) -> None:
    # A 409 tells that an e-mail address has an account, which login hides: refusals are limited per network
    # as failed logins are, and past the limit every signup from there waits (a 201 would tell as much).
    address = client.address
    if not address:
        return
    per_address, per_network = settings.login_max_failures_per_address, settings.login_max_failures_per_ipv6_48
    counts: list[tuple[FailureCount, int]] = [
        (lambda logs, since, n: logs.recent_signup_failures_for_address(address, since, n), per_address),
        # And an IPv6 client's /48, as for logins: otherwise each /64 of a routed /48 brings a budget of its own.
        (lambda logs, since, n: logs.recent_signup_failures_for_network(address, since, n), per_network),
    ]
    _refuse_over_limit(uow, settings, counts, "Too many signups with taken names; try again later.")


def login(db: Database, settings: Settings, request: LoginRequest, client: Client) -> TokenPair:
    """A token pair for a correct login; one bcrypt check and one answer whether or not the account exists."""
    key = login_key(request.login)

    def check(uow: UnitOfWork) -> UserRow | None:
        _throttle(uow, settings, key, client)
        return UsersRepository(uow.conn).get_by_login(request.login)

    user = db.read(check)
    # Outside any transaction: bcrypt at cost 12 takes a quarter of a second, no connection is held meanwhile.
    matched = verify_password(request.password, user.password_hash if user else None, settings.bcrypt_rounds)
    if user is None or not matched or not user.is_active:
        failed_user = user.id if user else None
        db.transact(lambda uow: _log(uow, "login_failed", failed_user, client, login_key=key))
        raise UnauthorizedError(LOGIN_FAILED)
    checked = user
    # A hash made at another cost (BCRYPT_ROUNDS changed since) is replaced while the password is at hand, so
    # every account that signs in is checked at the cost the dummy hash of unknown accounts is made at. Hashed
    # here, outside the transaction; stored only with the sign-in, so it can fail no login that would succeed.
    rehashed = None
    if checked.password_hash and needs_rehash(checked.password_hash, settings.bcrypt_rounds):
        rehashed = hash_password(request.password, settings.bcrypt_rounds)

    def work(uow: UnitOfWork) -> TokenPair | None:
        # A password change or deactivation may have committed during bcrypt: re-checked in the same statement.
        signed_in = UsersRepository(uow.conn).touch_last_login(checked, rehashed=rehashed)
        if signed_in is None:
            _log(uow, "login_failed", checked.id, client, login_key=key)
            return None
        _log(uow, "login", signed_in.id, client, login_key=key)  # clears this login's failure count
        return _pair(uow, settings, signed_in, client, has_premium=signed_in.has_premium)

    pair = db.transact(work)
    if pair is None:
        raise UnauthorizedError(LOGIN_FAILED)
    return pair


# Refresh and logout -----------------------------------------------------------------------------------------


def _parse_refresh(token: str) -> tuple[UUID, str] | None:
    token_id, dot, secret = token.partition(".")
    if not dot or not secret:
        return None
    try:
        return UUID(token_id), secret
    except ValueError:
        return None


@dataclass(frozen=True)
class _Outcome:
    pair: TokenPair | None = None
    reuse_detected: bool = False


def refresh(db: Database, settings: Settings, token: str, client: Client) -> TokenPair:
    """Spend a refresh token for a new pair. Replaying a spent one revokes its whole family (RFC 9700),
    except within the grace window, where a concurrent refresh or the retry of a lost response gets its own
    new pair whoever sends it (no client check: a phone may retry from another network)."""
    parsed = _parse_refresh(token)
    if parsed is None:
        raise UnauthorizedError(REFRESH_FAILED)
    token_id, secret = parsed

    def work(uow: UnitOfWork) -> _Outcome:
        tokens = RefreshTokensRepository(uow.conn)
        state = tokens.get_for_update(token_id, settings.refresh_reuse_grace_s)
        # A wrong secret proves nothing about the holder of the real one: refuse, revoke nothing.
        if state is None or not same_hash(secret, state.token_hash):
            return _Outcome()
        if state.is_revoked or state.is_expired:
            return _Outcome()
        if state.is_used and not state.used_within_grace:
            tokens.revoke_family(state.family_id)
            _log(uow, "refresh_reuse_detected", state.user_id, client)
            return _Outcome(reuse_detected=True)
        user = UsersRepository(uow.conn).get_signed_in(state.user_id)
        if user is None or not user.is_active:
            return _Outcome()
        # A password change, logout-everywhere or deactivation bumps the version and revokes the user's rows;
        # a child inserted by a refresh that committed while that revocation waited escapes the revocation,
        # not this check (migration 0501). Not a replay: nothing is revoked.
        if state.token_version != user.token_version:
            return _Outcome()
        tokens.mark_used(state.id)
        _log(uow, "refresh", user.id, client)
        family, parent = state.family_id, state.id
        return _Outcome(pair=_pair(uow, settings, user, client, family, parent, has_premium=user.has_premium))

    outcome = db.transact(work)  # committed even when refusing: a detected reuse must stay revoked
    if outcome.reuse_detected:
        logger.warning("refresh token reuse detected; family revoked")
    if outcome.pair is None:
        raise UnauthorizedError(REFRESH_FAILED)
    return outcome.pair


def logout(db: Database, token: str, client: Client) -> None:
    """Revoke the token's family. Unknown, wrong or dead tokens are answered the same (nothing to reveal)."""
    parsed = _parse_refresh(token)
    if parsed is None:
        return
    token_id, secret = parsed

    def work(uow: UnitOfWork) -> None:
        tokens = RefreshTokensRepository(uow.conn)
        state = tokens.get_for_update(token_id, 0)
        if state is None or not same_hash(secret, state.token_hash):
            return
        # Logged only when it ended something: a dead token may be sent again and again (the answer is the same 204),
        # and each time would write a row to its user's connection log.
        if tokens.revoke_family(state.family_id):
            _log(uow, "logout", state.user_id, client)

    db.transact(work)


# The caller's own account -----------------------------------------------------------------------------------


def _require(user: UserRow | None) -> UserRow:
    if user is None:
        raise NotFoundError()
    return user


def _me(uow: UnitOfWork, user: UserRow | None) -> Me:
    # One more index probe on the request that reads the account, in its transaction.
    found = _require(user)
    return to_me(found, LicensesRepository(uow.conn).has_premium(found.id))


def get_me(db: Database, user_id: UUID) -> Me:
    return db.read(lambda uow: _me(uow, UsersRepository(uow.conn).get(user_id)))


def update_me(db: Database, user_id: UUID, changes: dict[str, Any]) -> Me:
    """Change profile fields; only those present in the request are touched."""
    return db.transact(lambda uow: _me(uow, UsersRepository(uow.conn).update_profile(user_id, changes)))


def confirm_current_password(
    db: Database,
    settings: Settings,
    user_id: UUID,
    password: str,
    client: Client,
    *,
    detail: dict[str, Any] | None = None,
) -> UserRow:
    """The account as it was read for the check, once `password` is its current password: 403 when it is not (logged
    as password_change_failed, with `detail`), 429 once too many were wrong, 401 when the account is inactive. Every
    route that asks for the current password shares that one count, so none of them is a way around the others'
    limit. bcrypt runs outside any transaction: the caller's write checks again that the password is still this one
    (still_checked)."""

    def check(uow: UnitOfWork) -> UserRow:
        # Whoever holds an access token or API key may try current passwords: as many as a login may.
        def wrong(logs: ConnectionLogsRepository, since: datetime, n: int) -> list[datetime]:
            return logs.recent_failed_password_changes(user_id, since, n)

        limit = settings.login_max_failures_per_account
        _refuse_over_limit(uow, settings, [(wrong, limit)], "Too many wrong current passwords; try again later.")
        user = _require(UsersRepository(uow.conn).get(user_id))
        if not user.is_active:
            raise UnauthorizedError(INACTIVE)
        return user

    current = db.read(check)
    if not verify_password(password, current.password_hash, settings.bcrypt_rounds):
        db.transact(lambda uow: _log(uow, "password_change_failed", user_id, client, detail=detail))
        raise ForbiddenError(WRONG_PASSWORD)
    return current


def still_checked(now: UserRow, checked: UserRow) -> bool:
    """Whether the password is still the one checked against `checked` (the row read before bcrypt): the hash is the
    same, or the token version is (only a password change changes the password, and it bumps the version; a login's
    rehash of the same password does not)."""
    return now.password_hash == checked.password_hash or now.token_version == checked.token_version


def change_password(
    db: Database, settings: Settings, user_id: UUID, request: PasswordChange, client: Client
) -> TokenPair:
    """Check the current password, store the new one, end every other session, return a fresh pair."""
    check_password_rules(request.new_password, field="new_password")
    current = confirm_current_password(db, settings, user_id, request.current_password, client)
    new_hash = hash_password(request.new_password, settings.bcrypt_rounds)

    def work(uow: UnitOfWork) -> TokenPair:
        # Bumps the token version (older access tokens stop at once), unless the password changed or the account was
        # deactivated during bcrypt: a deactivated account's password stays the one it is reactivated with.
        users = UsersRepository(uow.conn)
        user = users.set_password(user_id, new_hash, checked=current)
        if user is None:
            if not _require(users.get(user_id)).is_active:
                raise UnauthorizedError(INACTIVE)
            raise ForbiddenError(WRONG_PASSWORD)
        RefreshTokensRepository(uow.conn).revoke_for_user(user_id)
        _log(uow, "password_changed", user_id, client)
        return _pair(uow, settings, user, client, has_premium=user.has_premium)

    return db.transact(work)


def logout_everywhere(db: Database, user_id: UUID, client: Client) -> None:
    """Every access token (token version) and refresh token of the user stops working now."""

    def work(uow: UnitOfWork) -> None:
        UsersRepository(uow.conn).bump_token_version(user_id)
        RefreshTokensRepository(uow.conn).revoke_for_user(user_id)
        _log(uow, "logout_all", user_id, client)

    db.transact(work)


def get_properties(db: Database, user_id: UUID) -> Properties:
    row = db.read(lambda uow: UsersRepository(uow.conn).get_properties(user_id))
    return Properties.model_validate(row, from_attributes=True) if row else Properties()


def put_properties(db: Database, user_id: UUID, request: PropertiesPut) -> Properties:
    row = db.transact(
        lambda uow: UsersRepository(uow.conn).put_properties(user_id, request.tone, request.additional_info)
    )
    return Properties.model_validate(row, from_attributes=True)


def list_connection_logs(
    db: Database, user_id: UUID | None, cursor: str | None, limit: int | None
) -> Page[ConnectionLog]:
    """Connection logs newest first: one user's, or everyone's when `user_id` is None (admins)."""
    size = page_limit(limit)
    after = decode_cursor(cursor, CURSOR_KINDS)
    rows = db.read(lambda uow: ConnectionLogsRepository(uow.conn).list_page(user_id, after, size + 1))
    page = page_of(rows, size, key=lambda row: (row.created_at, row.id))
    return page_as(page, lambda row: ConnectionLog.model_validate(row, from_attributes=True))


def create_super_admin(db: Database, settings: Settings, username: str, email: str, password: str) -> User:
    """A super_admin account, for the command line only (no route can make one)."""
    check_password_rules(password)
    password_hash = hash_password(password, settings.bcrypt_rounds)

    def work(uow: UnitOfWork) -> User:
        user = UsersRepository(uow.conn).add(
            username=username, email=email, password_hash=password_hash, role="super_admin"
        )
        return to_user(user)

    return db.transact(work)
