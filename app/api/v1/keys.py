"""API keys: `POST /api/v1/keys` (secret shown once), `GET` (list), `DELETE /{id}` (revoke)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.api.deps import NoNulParameters, PrincipalDep, SessionDep
from app.core import api_keys
from app.core.errors import error_response_doc, error_responses
from app.models.schemas.keys import ApiKeyCreate, ApiKeyCreated, ApiKeyOut

router = APIRouter(responses=error_responses(401, 422), dependencies=[NoNulParameters])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=error_responses(400),
)
async def create_key(
    body: ApiKeyCreate, principal: PrincipalDep, db: SessionDep, response: Response
) -> ApiKeyCreated:
    key, secret = await api_keys.create_api_key(
        db, user_id=principal.user_id, name=body.name, expires_at=body.expires_at
    )
    # The secret is in this body and nowhere else: keep it out of every cache.
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=secret)


@router.get("", response_model=list[ApiKeyOut])
async def list_keys(principal: PrincipalDep, db: SessionDep) -> list[ApiKeyOut]:
    keys = await api_keys.list_api_keys(db, user_id=principal.user_id)
    return [ApiKeyOut.model_validate(key) for key in keys]


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: error_response_doc(404, "No such key among yours")},
)
async def revoke_key(key_id: str, principal: PrincipalDep, db: SessionDep) -> Response:
    await api_keys.revoke_api_key(db, user_id=principal.user_id, key_id=key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
