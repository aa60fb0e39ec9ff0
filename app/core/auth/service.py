"""Accounts and sessions: registration, sign-in, sign-out, password change, session management.

Functions taking an `AsyncSession` flush but never commit: the request's unit of work
(app/api/deps.get_db) commits. `login` is the exception: it owns its transactions (it takes the
`Database`) because a failed attempt must be logged even though the request then fails.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth.principal import Principal
from app.core.auth.throttle import (
    REASON_ACCOUNT_DISABLED,
    REASON_INVALID_CREDENTIALS,
    REASON_THROTTLED,
    login_retry_after,
)
from app.core.config import Settings
from app.core.errors import AppError, BadRequest, Conflict, NotFound, TooManyRequests, Unauthorized
from app.core.security import (
    create_access_token,
    dummy_password_hash,
    hash_needs_upgrade,
    hash_password,
    verify_password,
)
from app.db.session import Database
from app.models import User, UserLoginLog, UserSession

logger = logging.getLogger(__name__)

IDENTIFIER_MAX_LENGTH = 320
USER_AGENT_MAX_LENGTH = 512
IP_MAX_LENGTH = 64


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ClientInfo:
    """Where a request came from, as recorded on sessions and login logs."""

    ip_address: str | None = None
    user_agent: str | None = None

    def normalized(self) -> ClientInfo:
        return ClientInfo(
            ip_address=self.ip_address[:IP_MAX_LENGTH] if self.ip_address else None,
            user_agent=self.user_agent[:USER_AGENT_MAX_LENGTH] if self.user_agent else None,
        )


@dataclass(frozen=True)
class LoginResult:
    access_token: str
    expires_in: int
    session_id: str
    user_id: str


@dataclass(frozen=True)
class SessionView:
    session: UserSession
    current: bool


# bcrypt is deliberately slow (hundreds of ms at production cost): keep it off the event loop.
async def _hash(password: str, rounds: int) -> str:
    return await asyncio.to_thread(hash_password, password, rounds)


async def _verify(password: str, password_hash: str) -> bool:
    return await asyncio.to_thread(verify_password, password, password_hash)


async def find_user_by_login(db: AsyncSession, identifier: str) -> User | None:
    """The user whose username or e-mail equals `identifier`, ignoring case."""
    ident = identifier.strip().lower()
    return await db.scalar(
        select(User).where(or_(func.lower(User.username) == ident, func.lower(User.email) == ident))
    )


async def _ensure_available(
    db: AsyncSession, *, username: str, email: str, exclude_id: str | None = None
) -> None:
    for field, column, value in (
        ("username", User.username, username),
        ("email", User.email, email),
    ):
        query = select(User.id).where(func.lower(column) == value.lower())
        if exclude_id is not None:
            query = query.where(User.id != exclude_id)
        if await db.scalar(query) is not None:
            raise Conflict(
                f"This {'e-mail address' if field == 'email' else field} is already registered",
                code=f"{field}_taken",
                details={"field": field},
            )


async def _flush_new_user(db: AsyncSession, user: User) -> None:
    db.add(user)
    try:
        await db.flush()
    except IntegrityError as exc:
        # A concurrent registration won the race between our check and the insert.
        raise Conflict(
            "This username or e-mail address is already registered", code="already_registered"
        ) from exc


async def register_user(
    db: AsyncSession, settings: Settings, *, username: str, email: str, password: str
) -> User:
    """Create an account. The first account, or the one named ADMIN_USERNAME, is an admin."""
    await _ensure_available(db, username=username, email=email)
    has_users = await db.scalar(select(exists().select_from(User)))
    named_admin = bool(settings.admin_username) and (
        username.lower() == (settings.admin_username or "").lower()
    )
    user = User(
        username=username,
        email=email,
        password_hash=await _hash(password, settings.bcrypt_rounds),
        is_admin=not has_users or named_admin,
        is_active=True,
        storage_quota_bytes=settings.default_storage_quota_bytes,
        storage_used_bytes=0,
    )
    await _flush_new_user(db, user)
    logger.info("registered user %s (admin=%s)", user.id, user.is_admin)
    return user


async def login(
    database: Database,
    settings: Settings,
    *,
    identifier: str,
    password: str,
    client: ClientInfo,
) -> LoginResult:
    """Check credentials and open a session; every attempt is written to user_login_logs.

    Raises TooManyRequests (checked before the password), or Unauthorized with code
    `invalid_credentials` (same answer for an unknown account and a wrong password) or
    `account_disabled` (only after a correct password).
    """
    ident = identifier.strip().lower()[:IDENTIFIER_MAX_LENGTH]
    client = client.normalized()
    now = _now()

    # Read phase in its own short transaction: on SQLite a transaction holds the write lock,
    # which must not be held while bcrypt runs.
    async with database.session() as db:
        user = await find_user_by_login(db, ident)
        retry_after = await login_retry_after(
            db,
            settings,
            identifier=ident,
            user_id=user.id if user else None,
            ip_address=client.ip_address,
            now=now,
        )

    failure: AppError | None = None
    reason: str | None = None
    if retry_after is not None:
        reason = REASON_THROTTLED
        failure = TooManyRequests(
            "Too many failed sign-in attempts; try again later",
            code="login_throttled",
            retry_after=retry_after,
        )
    elif user is None:
        # Same bcrypt work as for a real account, so timing does not reveal which exist.
        await _verify(password, dummy_password_hash(settings.bcrypt_rounds))
        reason = REASON_INVALID_CREDENTIALS
    elif not await _verify(password, user.password_hash):
        reason = REASON_INVALID_CREDENTIALS
    elif not user.is_active:
        reason = REASON_ACCOUNT_DISABLED
        failure = Unauthorized("Account is disabled", code="account_disabled")
    if reason == REASON_INVALID_CREDENTIALS:
        failure = Unauthorized("Invalid credentials", code="invalid_credentials")

    upgraded_hash: str | None = None
    if (
        failure is None
        and user is not None
        and hash_needs_upgrade(user.password_hash, settings.bcrypt_rounds)
    ):
        upgraded_hash = await _hash(password, settings.bcrypt_rounds)

    expires_in = settings.jwt_expire_minutes * 60
    async with database.session() as db:
        db.add(
            UserLoginLog(
                user_id=user.id if user else None,
                identifier=ident,
                ip_address=client.ip_address,
                user_agent=client.user_agent,
                success=failure is None,
                reason=reason,
                created_at=_now(),
            )
        )
        if failure is not None:
            result = None
        else:
            assert user is not None
            issued = _now()
            user_session = UserSession(
                user_id=user.id,
                created_at=issued,
                expires_at=issued + timedelta(seconds=expires_in),
                last_seen_at=issued,
                ip_address=client.ip_address,
                user_agent=client.user_agent,
            )
            db.add(user_session)
            await db.flush()
            values: dict[str, object] = {"last_login_at": issued}
            if upgraded_hash is not None:
                values["password_hash"] = upgraded_hash
            await db.execute(update(User).where(User.id == user.id).values(**values))
            result = LoginResult(
                access_token=create_access_token(
                    user_id=user.id,
                    session_id=user_session.id,
                    secret=settings.jwt_secret_key or "",
                    expires_in=timedelta(seconds=expires_in),
                    now=issued,
                ),
                expires_in=expires_in,
                session_id=user_session.id,
                user_id=user.id,
            )
    if failure is not None:
        raise failure
    assert result is not None
    return result


def _require_session(principal: Principal) -> str:
    if principal.session_id is None:
        raise BadRequest(
            "API keys have no sign-in session; revoke the key at /api/v1/keys instead",
            code="not_a_session",
        )
    return principal.session_id


async def logout(db: AsyncSession, principal: Principal) -> None:
    """Revoke the caller's own session at once (its token is rejected from the next request)."""
    session_id = _require_session(principal)
    await db.execute(
        update(UserSession)
        .where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=_now())
    )


async def change_password(
    db: AsyncSession,
    settings: Settings,
    principal: Principal,
    *,
    current_password: str,
    new_password: str,
) -> int:
    """Set a new password and revoke every other session; returns how many were revoked."""
    user = principal.user
    if not await _verify(current_password, user.password_hash):
        raise BadRequest(
            "The current password is not correct",
            code="invalid_current_password",
            details={"field": "current_password"},
        )
    now = _now()
    await db.execute(
        update(User)
        .where(User.id == user.id)
        .values(
            password_hash=await _hash(new_password, settings.bcrypt_rounds),
            password_changed_at=now,
        )
    )
    others = update(UserSession).where(
        UserSession.user_id == user.id, UserSession.revoked_at.is_(None)
    )
    if principal.session_id is not None:
        others = others.where(UserSession.id != principal.session_id)
    revoked = await db.execute(others.values(revoked_at=now))
    return int(getattr(revoked, "rowcount", 0) or 0)


async def list_sessions(
    db: AsyncSession, principal: Principal, *, include_inactive: bool = False
) -> list[SessionView]:
    """The caller's sessions, newest first; only active ones unless `include_inactive`."""
    query = select(UserSession).where(UserSession.user_id == principal.user_id)
    if not include_inactive:
        query = query.where(UserSession.revoked_at.is_(None), UserSession.expires_at > _now())
    rows = (await db.scalars(query.order_by(UserSession.created_at.desc()))).all()
    return [SessionView(session=row, current=row.id == principal.session_id) for row in rows]


async def revoke_session(db: AsyncSession, principal: Principal, session_id: str) -> None:
    """Revoke one of the caller's sessions; another user's (or an unknown) id is NotFound."""
    user_session = await db.scalar(
        select(UserSession).where(
            UserSession.id == session_id, UserSession.user_id == principal.user_id
        )
    )
    if user_session is None:
        raise NotFound("Session not found", code="session_not_found")
    if user_session.revoked_at is None:
        user_session.revoked_at = _now()
        await db.flush()


@dataclass(frozen=True)
class AdminResult:
    user: User
    created: bool


async def create_admin(
    db: AsyncSession,
    settings: Settings,
    *,
    username: str,
    email: str | None,
    password: str | None,
) -> AdminResult:
    """Create an administrator, or promote (and re-enable) the existing user `username`.

    For an existing user a given password replaces the old one and signs out every session
    (account recovery from the shell); an e-mail, if given, must match the account's.
    """
    existing = await db.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if existing is not None:
        if email is not None and existing.email.lower() != email.lower():
            raise Conflict(
                f"User {existing.username!r} exists with a different e-mail address",
                code="email_mismatch",
                details={"field": "email"},
            )
        existing.is_admin = True
        existing.is_active = True
        if password is not None:
            now = _now()
            existing.password_hash = await _hash(password, settings.bcrypt_rounds)
            existing.password_changed_at = now
            await db.execute(
                update(UserSession)
                .where(UserSession.user_id == existing.id, UserSession.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        await db.flush()
        return AdminResult(user=existing, created=False)
    if email is None or password is None:
        raise BadRequest(
            "A new administrator needs an e-mail address and a password", code="missing_fields"
        )
    await _ensure_available(db, username=username, email=email)
    user = User(
        username=username,
        email=email,
        password_hash=await _hash(password, settings.bcrypt_rounds),
        is_admin=True,
        is_active=True,
        storage_quota_bytes=settings.default_storage_quota_bytes,
        storage_used_bytes=0,
    )
    await _flush_new_user(db, user)
    return AdminResult(user=user, created=True)
