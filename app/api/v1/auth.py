"""Accounts and sessions: register, sign in/out, current user, password, sessions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.api.deps import NoNulParameters, PrincipalDep, SessionDep, SettingsDep, get_database
from app.core.auth import service
from app.core.config import Settings
from app.core.errors import error_response_doc, error_responses
from app.core.security import ACCESS_COOKIE, CSRF_COOKIE, generate_csrf_token
from app.db.session import Database
from app.models.schemas.auth import (
    LoginRequest,
    PasswordChangeRequest,
    RegisterRequest,
    SessionOut,
    TokenResponse,
    UserOut,
)

# Every error body is {"error": {"code", "message", "details"}}; 422 for any invalid input.
router = APIRouter(responses=error_responses(422), dependencies=[NoNulParameters])

DatabaseDep = Annotated[Database, Depends(get_database)]

UNAUTHENTICATED: dict[int | str, dict[str, Any]] = error_responses(401)
# FastAPI answers 400 for a JSON body it cannot even decode (e.g. invalid UTF-8).
MALFORMED_BODY: dict[int | str, dict[str, Any]] = error_responses(400)


def _client_info(request: Request) -> service.ClientInfo:
    return service.ClientInfo(
        ip_address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


def _set_auth_cookies(response: Response, settings: Settings, token: str, max_age: int) -> None:
    # The CSRF cookie is readable by the page's script, which echoes it in X-CSRF-Token
    # (double-submit cookie); the session cookie never is.
    for name, value, httponly in (
        (ACCESS_COOKIE, token, True),
        (CSRF_COOKIE, generate_csrf_token(), False),
    ):
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=settings.cookie_secure,
            httponly=httponly,
            samesite=settings.cookie_samesite,
        )


def _clear_auth_cookies(response: Response, settings: Settings) -> None:
    for name, httponly in ((ACCESS_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(
            name,
            path="/",
            secure=settings.cookie_secure,
            httponly=httponly,
            samesite=settings.cookie_samesite,
        )


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses={
        **MALFORMED_BODY,
        409: error_response_doc(409, "Username or e-mail address already registered"),
    },
)
async def register(body: RegisterRequest, db: SessionDep, settings: SettingsDep) -> UserOut:
    user = await service.register_user(
        db, settings, username=body.username, email=body.email, password=body.password
    )
    return UserOut.model_validate(user)


@router.post(
    "/login",
    response_model=TokenResponse,
    responses={
        **MALFORMED_BODY,
        401: error_response_doc(401, "Invalid credentials, or the account is disabled"),
        429: error_response_doc(429, "Too many failed attempts; see Retry-After"),
    },
)
async def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    database: DatabaseDep,
    settings: SettingsDep,
    set_cookie: Annotated[
        bool, Query(description="Also set the HttpOnly session cookie and the CSRF cookie.")
    ] = False,
) -> TokenResponse:
    result = await service.login(
        database,
        settings,
        identifier=body.username_or_email,
        password=body.password,
        client=_client_info(request),
    )
    if set_cookie:
        _set_auth_cookies(response, settings, result.access_token, result.expires_in)
    return TokenResponse(
        access_token=result.access_token,
        expires_in=result.expires_in,
        session_id=result.session_id,
    )


@router.get("/me", response_model=UserOut, responses=UNAUTHENTICATED)
async def me(principal: PrincipalDep) -> UserOut:
    return UserOut.model_validate(principal.user)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**UNAUTHENTICATED, 400: error_response_doc(400, "API keys have no session to end")},
)
async def logout(
    principal: PrincipalDep, db: SessionDep, settings: SettingsDep, response: Response
) -> None:
    await service.logout(db, principal)
    # A bearer logout ends that token's session, not the one a browser cookie may hold.
    if principal.uses_cookie:
        _clear_auth_cookies(response, settings)


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **UNAUTHENTICATED,
        400: error_response_doc(
            400, "The current password is not correct, or the body cannot be parsed"
        ),
    },
)
async def change_password(
    body: PasswordChangeRequest, principal: PrincipalDep, db: SessionDep, settings: SettingsDep
) -> None:
    await service.change_password(
        db,
        settings,
        principal,
        current_password=body.current_password,
        new_password=body.new_password,
    )


@router.get("/sessions", response_model=list[SessionOut], responses=UNAUTHENTICATED)
async def list_sessions(
    principal: PrincipalDep,
    db: SessionDep,
    include_inactive: Annotated[
        bool, Query(description="Also list revoked and expired sessions.")
    ] = False,
) -> list[SessionOut]:
    views = await service.list_sessions(db, principal, include_inactive=include_inactive)
    return [
        SessionOut(
            id=view.session.id,
            created_at=view.session.created_at,
            expires_at=view.session.expires_at,
            last_seen_at=view.session.last_seen_at,
            ip_address=view.session.ip_address,
            user_agent=view.session.user_agent,
            current=view.current,
            revoked=view.session.revoked_at is not None,
        )
        for view in views
    ]


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**UNAUTHENTICATED, 404: error_response_doc(404, "No such session of yours")},
)
async def revoke_session(
    session_id: str,
    principal: PrincipalDep,
    db: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> None:
    await service.revoke_session(db, principal, session_id)
    if session_id == principal.session_id and principal.uses_cookie:
        _clear_auth_cookies(response, settings)
