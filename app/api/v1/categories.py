"""Request-log categories: the caller's own labels for grouping log entries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from app.api.deps import CurrentUser, NoNulParameters, SessionDep
from app.core.errors import error_response_doc, error_responses
from app.core.request_log import service
from app.models.schemas.logs import CategoryCreate, CategoryOut, CategoryUpdate

router = APIRouter(responses=error_responses(401, 422), dependencies=[NoNulParameters])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: error_response_doc(404, "No such category among yours")
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: error_response_doc(409, "You already have a category with this name"),
    **error_responses(400),  # a body that cannot be parsed
}


@router.get("", response_model=list[CategoryOut])
async def list_categories(user: CurrentUser, db: SessionDep) -> list[CategoryOut]:
    categories = await service.list_categories(db, user_id=user.id)
    return [CategoryOut.model_validate(category) for category in categories]


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=CategoryOut, responses=CONFLICT
)
async def create_category(body: CategoryCreate, user: CurrentUser, db: SessionDep) -> CategoryOut:
    category = await service.create_category(db, user_id=user.id, data=body)
    return CategoryOut.model_validate(category)


@router.get("/{category_id}", response_model=CategoryOut, responses=NOT_FOUND)
async def get_category(category_id: str, user: CurrentUser, db: SessionDep) -> CategoryOut:
    category = await service.get_category(db, user_id=user.id, category_id=category_id)
    return CategoryOut.model_validate(category)


@router.patch("/{category_id}", response_model=CategoryOut, responses={**NOT_FOUND, **CONFLICT})
async def update_category(
    category_id: str, body: CategoryUpdate, user: CurrentUser, db: SessionDep
) -> CategoryOut:
    category = await service.update_category(
        db, user_id=user.id, category_id=category_id, data=body
    )
    return CategoryOut.model_validate(category)


@router.delete(
    "/{category_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=NOT_FOUND,
)
async def delete_category(category_id: str, user: CurrentUser, db: SessionDep) -> Response:
    await service.delete_category(db, user_id=user.id, category_id=category_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
