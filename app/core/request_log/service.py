"""Reading and annotating the request log, and the categories used to group entries.

Users see their own entries, admins everyone's. Stored fields are decrypted per row: a row
that cannot be decrypted is returned with a `decryption_error` instead of failing the call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, delete, func, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.encryption import DecryptionError, Encryptor
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.models import ApiRequestLog, RequestCategory, User
from app.models.schemas.logs import (
    CategoryCreate,
    CategoryUpdate,
    RequestLogDetail,
    RequestLogOut,
    RequestLogPage,
    RequestLogUpdate,
)

T = TypeVar("T")

DECRYPTION_ERROR = "cannot be decrypted with the configured STORAGE_MASTER_KEY"


@dataclass(frozen=True)
class LogFilters:
    method: str | None = None
    path_contains: str | None = None
    status_code: int | None = None
    category_id: str | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None
    user_id: str | None = None


def _visible_to(viewer: User) -> ColumnElement[bool]:
    return true() if viewer.is_admin else ApiRequestLog.user_id == viewer.id


def _conditions(viewer: User, filters: LogFilters) -> list[ColumnElement[bool]]:
    conditions = [_visible_to(viewer)]
    if filters.user_id is not None:
        # For a non-admin this narrows their own entries (to nothing, for another user's id).
        conditions.append(ApiRequestLog.user_id == filters.user_id)
    if filters.method:
        conditions.append(ApiRequestLog.method == filters.method.upper())
    if filters.path_contains:
        conditions.append(ApiRequestLog.path.icontains(filters.path_contains, autoescape=True))
    if filters.status_code is not None:
        conditions.append(ApiRequestLog.status_code == filters.status_code)
    if filters.category_id is not None:
        conditions.append(ApiRequestLog.category_id == filters.category_id)
    if filters.started_after is not None:
        conditions.append(ApiRequestLog.started_at >= _aware(filters.started_after))
    if filters.started_before is not None:
        conditions.append(ApiRequestLog.started_at < _aware(filters.started_before))
    return conditions


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class _RowDecryptor:
    """Decrypts the fields of one row, collecting (not raising) the ones that fail."""

    def __init__(self, encryptor: Encryptor) -> None:
        self.encryptor = encryptor
        self.failed: list[str] = []

    def attempt(self, field: str, token: str | None, decode: Callable[[str], T]) -> T | None:
        if token is None:
            return None
        try:
            return decode(token)
        except (DecryptionError, ValueError):
            self.failed.append(field)
            return None

    @property
    def error(self) -> str | None:
        if not self.failed:
            return None
        return f"{', '.join(self.failed)} {DECRYPTION_ERROR}"


def _summary_fields(row: ApiRequestLog, decryptor: _RowDecryptor) -> dict[str, Any]:
    enc = decryptor.encryptor
    return {
        "id": row.id,
        "request_id": row.request_id,
        "started_at": row.started_at,
        "duration_ms": row.duration_ms,
        "method": row.method,
        "path": row.path,
        "query": decryptor.attempt("query", row.query_encrypted, enc.decrypt_text),
        "status_code": row.status_code,
        "user_id": row.user_id,
        "session_id": row.session_id,
        "api_key_id": row.api_key_id,
        "client_ip": row.client_ip,
        "user_agent": row.user_agent,
        "request_bytes": row.request_bytes,
        "response_bytes": row.response_bytes,
        "category_id": row.category_id,
        "tags": [str(tag) for tag in (row.tags or [])],
        "note": decryptor.attempt("note", row.note_encrypted, enc.decrypt_text),
    }


def to_summary(row: ApiRequestLog, encryptor: Encryptor) -> RequestLogOut:
    decryptor = _RowDecryptor(encryptor)
    fields = _summary_fields(row, decryptor)
    return RequestLogOut(**fields, decryption_error=decryptor.error)


def _envelope(decryptor: _RowDecryptor, field: str, token: str | None) -> dict[str, Any]:
    value = decryptor.attempt(field, token, decryptor.encryptor.decrypt_json)
    if value is None:
        return {}
    if not isinstance(value, dict):
        decryptor.failed.append(field)
        return {}
    return value


def _headers(decryptor: _RowDecryptor, token: str | None) -> dict[str, str] | None:
    value = decryptor.attempt("request_headers", token, decryptor.encryptor.decrypt_json)
    if value is None:
        return None
    if not isinstance(value, dict):
        decryptor.failed.append("request_headers")
        return None
    return {str(k): str(v) for k, v in value.items()}


def to_detail(row: ApiRequestLog, encryptor: Encryptor) -> RequestLogDetail:
    decryptor = _RowDecryptor(encryptor)
    fields = _summary_fields(row, decryptor)
    headers = _headers(decryptor, row.request_headers_encrypted)
    request = _envelope(decryptor, "request_body", row.request_body_encrypted)
    response = _envelope(decryptor, "response_body", row.response_body_encrypted)
    return RequestLogDetail(
        **fields,
        request_headers=headers,
        request_content_type=request.get("content_type"),
        request_body=request.get("body"),
        request_body_truncated=bool(request.get("truncated", False)),
        response_content_type=response.get("content_type"),
        response_body=response.get("body"),
        response_body_truncated=bool(response.get("truncated", False)),
        decryption_error=decryptor.error,
    )


async def list_logs(
    db: AsyncSession,
    encryptor: Encryptor,
    *,
    viewer: User,
    filters: LogFilters,
    page: int,
    size: int,
) -> RequestLogPage:
    conditions = _conditions(viewer, filters)
    total = int(
        await db.scalar(select(func.count()).select_from(ApiRequestLog).where(*conditions)) or 0
    )
    rows = await db.scalars(
        select(ApiRequestLog)
        .where(*conditions)
        .order_by(ApiRequestLog.started_at.desc(), ApiRequestLog.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    return RequestLogPage(
        items=[to_summary(row, encryptor) for row in rows],
        total=total,
        page=page,
        size=size,
        pages=math.ceil(total / size) if total else 0,
    )


async def _get_visible_log(db: AsyncSession, viewer: User, log_id: str) -> ApiRequestLog:
    row = await db.scalar(
        select(ApiRequestLog).where(ApiRequestLog.id == log_id, _visible_to(viewer))
    )
    if row is None:
        raise NotFound("Log entry not found", code="log_not_found")
    return row


async def get_log(
    db: AsyncSession, encryptor: Encryptor, *, viewer: User, log_id: str
) -> RequestLogDetail:
    return to_detail(await _get_visible_log(db, viewer, log_id), encryptor)


async def update_log(
    db: AsyncSession,
    encryptor: Encryptor,
    *,
    viewer: User,
    log_id: str,
    changes: RequestLogUpdate,
) -> RequestLogDetail:
    row = await _get_visible_log(db, viewer, log_id)
    sent = changes.model_fields_set
    if "category_id" in sent:
        if changes.category_id is not None:
            # Only the caller's own categories can be assigned; anyone else's does not exist.
            await get_category(db, user_id=viewer.id, category_id=changes.category_id)
        row.category_id = changes.category_id
    if "tags" in sent:
        row.tags = list(changes.tags or [])
    if "note" in sent:
        note = changes.note.strip() if changes.note else None
        row.note_encrypted = encryptor.encrypt_text(note) if note else None
    await db.flush()
    return to_detail(row, encryptor)


async def delete_log(db: AsyncSession, *, viewer: User, log_id: str) -> None:
    row = await _get_visible_log(db, viewer, log_id)
    await db.delete(row)
    await db.flush()


# Categories ---------------------------------------------------------------------------------


async def list_categories(db: AsyncSession, *, user_id: str) -> list[RequestCategory]:
    result = await db.scalars(
        select(RequestCategory)
        .where(RequestCategory.user_id == user_id)
        .order_by(RequestCategory.name, RequestCategory.id)
    )
    return list(result)


async def get_category(db: AsyncSession, *, user_id: str, category_id: str) -> RequestCategory:
    category = await db.scalar(
        select(RequestCategory).where(
            RequestCategory.id == category_id, RequestCategory.user_id == user_id
        )
    )
    if category is None:
        raise NotFound("Category not found", code="category_not_found")
    return category


def _duplicate(name: str) -> Conflict:
    return Conflict(
        f"You already have a category named {name!r}",
        code="category_exists",
        details={"field": "name"},
    )


async def _name_taken(
    db: AsyncSession, *, user_id: str, name: str, exclude_id: str | None = None
) -> bool:
    query = select(RequestCategory.id).where(
        RequestCategory.user_id == user_id, RequestCategory.name == name
    )
    if exclude_id is not None:
        query = query.where(RequestCategory.id != exclude_id)
    return (await db.scalar(query.limit(1))) is not None


async def create_category(
    db: AsyncSession, *, user_id: str, data: CategoryCreate
) -> RequestCategory:
    if await _name_taken(db, user_id=user_id, name=data.name):
        raise _duplicate(data.name)
    category = RequestCategory(
        user_id=user_id,
        name=data.name,
        color=data.color,
        description=data.description,
        created_at=datetime.now(UTC),
    )
    try:
        # A savepoint, so losing a race to the unique constraint leaves the session usable.
        async with db.begin_nested():
            db.add(category)
    except IntegrityError as exc:
        raise _duplicate(data.name) from exc
    return category


async def update_category(
    db: AsyncSession, *, user_id: str, category_id: str, data: CategoryUpdate
) -> RequestCategory:
    category = await get_category(db, user_id=user_id, category_id=category_id)
    changes = data.changes()
    if "name" in changes:
        name = changes["name"]
        if name is None:
            raise ValidationFailed(
                "Invalid value for: name",
                details=[{"field": "name", "message": "name cannot be null"}],
            )
        if await _name_taken(db, user_id=user_id, name=name, exclude_id=category.id):
            raise _duplicate(name)
    try:
        async with db.begin_nested():
            for field, value in changes.items():
                setattr(category, field, value)
    except IntegrityError as exc:
        raise _duplicate(str(changes.get("name"))) from exc
    return category


async def delete_category(db: AsyncSession, *, user_id: str, category_id: str) -> None:
    category = await get_category(db, user_id=user_id, category_id=category_id)
    # Entries keep existing, uncategorised (explicitly, not relying on the FK's SET NULL).
    await db.execute(
        update(ApiRequestLog)
        .where(ApiRequestLog.category_id == category.id)
        .values(category_id=None)
        .execution_options(synchronize_session=False)
    )
    await db.execute(delete(RequestCategory).where(RequestCategory.id == category.id))
