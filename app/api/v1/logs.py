"""The request log: list (filters, pagination), detail, annotate (category, tags, note), delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from app.api.deps import CurrentUser, EncryptorDep, NoNulParameters, SessionDep
from app.core.errors import error_response_doc, error_responses
from app.core.request_log import service
from app.models.schemas.common import UtcDatetime
from app.models.schemas.logs import RequestLogDetail, RequestLogPage, RequestLogUpdate

router = APIRouter(responses=error_responses(401, 422), dependencies=[NoNulParameters])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: error_response_doc(404, "No such entry among those you can see")
}


@router.get("", response_model=RequestLogPage)
async def list_logs(
    user: CurrentUser,
    db: SessionDep,
    encryptor: EncryptorDep,
    method: Annotated[str | None, Query(max_length=10)] = None,
    path_contains: Annotated[str | None, Query(max_length=2048)] = None,
    status_code: Annotated[int | None, Query(ge=100, le=599)] = None,
    category_id: Annotated[str | None, Query(max_length=36)] = None,
    started_after: UtcDatetime | None = None,
    started_before: UtcDatetime | None = None,
    user_id: Annotated[
        str | None, Query(max_length=36, description="Admins: only this user's entries.")
    ] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RequestLogPage:
    filters = service.LogFilters(
        method=method,
        path_contains=path_contains,
        status_code=status_code,
        category_id=category_id,
        started_after=started_after,
        started_before=started_before,
        user_id=user_id,
    )
    return await service.list_logs(
        db, encryptor, viewer=user, filters=filters, page=page, size=size
    )


@router.get("/{log_id}", response_model=RequestLogDetail, responses=NOT_FOUND)
async def get_log(
    log_id: str, user: CurrentUser, db: SessionDep, encryptor: EncryptorDep
) -> RequestLogDetail:
    return await service.get_log(db, encryptor, viewer=user, log_id=log_id)


@router.patch(
    "/{log_id}",
    response_model=RequestLogDetail,
    responses={**NOT_FOUND, **error_responses(400)},
)
async def update_log(
    log_id: str,
    body: RequestLogUpdate,
    user: CurrentUser,
    db: SessionDep,
    encryptor: EncryptorDep,
) -> RequestLogDetail:
    return await service.update_log(db, encryptor, viewer=user, log_id=log_id, changes=body)


@router.delete(
    "/{log_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=NOT_FOUND,
)
async def delete_log(log_id: str, user: CurrentUser, db: SessionDep) -> Response:
    await service.delete_log(db, viewer=user, log_id=log_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
