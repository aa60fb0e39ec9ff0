"""User administration (admins only; everyone else gets 403 `admin_required`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import AdminUser, NoNulParameters, SessionDep
from app.core import users
from app.core.errors import error_response_doc, error_responses
from app.models.schemas.admin import AdminUserOut, AdminUserPage, AdminUserUpdate, QuotaUpdate

router = APIRouter(responses=error_responses(422), dependencies=[NoNulParameters])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: error_response_doc(401, "Not authenticated"),
    403: error_response_doc(403, "Caller is not an administrator (code `admin_required`)"),
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: error_response_doc(404, "Unknown user id")}
_BAD_BODY = error_responses(400)


@router.get("/users", response_model=AdminUserPage, responses=_ERRORS)
async def list_users(
    _: AdminUser,
    db: SessionDep,
    search: Annotated[
        str | None, Query(max_length=320, description="Substring of username or e-mail.")
    ] = None,
    is_active: bool | None = None,
    is_admin: bool | None = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> AdminUserPage:
    result = await users.list_users(
        db, search=search, is_active=is_active, is_admin=is_admin, page=page, size=size
    )
    return AdminUserPage(
        items=[AdminUserOut.model_validate(u) for u in result.items],
        total=result.total,
        page=result.page,
        size=result.size,
        pages=result.pages,
    )


@router.get("/users/{user_id}", response_model=AdminUserOut, responses=_ERRORS | _NOT_FOUND)
async def get_user(user_id: str, _: AdminUser, db: SessionDep) -> AdminUserOut:
    return AdminUserOut.model_validate(await users.get_user(db, user_id))


@router.patch(
    "/users/{user_id}",
    response_model=AdminUserOut,
    responses=_ERRORS
    | _NOT_FOUND
    | _BAD_BODY
    | {409: error_response_doc(409, "An admin tried to disable or demote themselves")},
)
async def update_user(
    user_id: str, body: AdminUserUpdate, admin: AdminUser, db: SessionDep
) -> AdminUserOut:
    updated = await users.update_user(
        db, actor=admin, user_id=user_id, is_active=body.is_active, is_admin=body.is_admin
    )
    return AdminUserOut.model_validate(updated)


@router.patch(
    "/users/{user_id}/quota",
    response_model=AdminUserOut,
    responses=_ERRORS | _NOT_FOUND | _BAD_BODY,
)
async def set_quota(user_id: str, body: QuotaUpdate, _: AdminUser, db: SessionDep) -> AdminUserOut:
    return AdminUserOut.model_validate(await users.set_quota(db, user_id, body.storage_quota_bytes))
