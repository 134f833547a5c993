"""POST /v1/auth/signup, /login, /refresh, /logout: public routes that hand out and take back sessions."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from functions._client import client_of
from functions._http import lambda_entry, make_resolver
from functions._replies import credentials_json, no_content, problem, replies
from shared.bootstrap import container
from shared.models.identity import LoginRequest, RefreshRequest, SignupRequest, TokenPair
from shared.services import accounts

app = make_resolver()


@app.post("/v1/auth/signup", summary="Create an account", tags=["auth"], responses=replies(TokenPair, 201))
def signup(request: SignupRequest) -> Response[str]:
    built = container()
    return credentials_json(accounts.signup(built.db, built.settings, request, client_of(app)), status_code=201)


# Public routes whose answer to credentials that do not sign in is a 401 of their own.
WRONG_LOGIN = problem("Unknown login, wrong password or inactive account (one answer for all)")
SPENT_REFRESH = problem("Unknown, spent, revoked or expired refresh token: sign in again")


@app.post(
    "/v1/auth/login",
    summary="Sign in with email or username",
    tags=["auth"],
    responses={**replies(TokenPair, 200), 401: WRONG_LOGIN},
)
def login(request: LoginRequest) -> Response[str]:
    built = container()
    return credentials_json(accounts.login(built.db, built.settings, request, client_of(app)))


@app.post(
    "/v1/auth/refresh",
    summary="Trade a refresh token for a new pair",
    tags=["auth"],
    responses={**replies(TokenPair, 200), 401: SPENT_REFRESH},
)
def refresh(request: RefreshRequest) -> Response[str]:
    built = container()
    return credentials_json(accounts.refresh(built.db, built.settings, request.refresh_token, client_of(app)))


@app.post("/v1/auth/logout", summary="Revoke a refresh token's family", tags=["auth"])
def logout(request: RefreshRequest) -> Response[None]:
    accounts.logout(container().db, request.refresh_token, client_of(app))
    return no_content()


lambda_handler = lambda_entry(app)
