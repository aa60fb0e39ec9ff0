"""`/v1/models`: the visible catalog as OpenAI model objects (the full description, with
parameters and rules, is at `/api/v1/models`)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import NoNulParameters
from app.api.openai.deps import OpenAIPrincipal
from app.api.openai.errors import OPENAI_ERROR_RESPONSES, OpenAIRoute
from app.api.v1.models import CatalogDep
from app.core import openai_compat as compat
from app.core.openai_compat import OpenAIError
from app.models.schemas.openai import ModelObject, ModelObjectList

router = APIRouter(
    route_class=OpenAIRoute, responses=OPENAI_ERROR_RESPONSES, dependencies=[NoNulParameters]
)


@router.get("", response_model=ModelObjectList, summary="List the models")
async def list_models(_principal: OpenAIPrincipal, catalog: CatalogDep) -> ModelObjectList:
    return ModelObjectList(data=[compat.model_object(spec) for spec in catalog.visible()])


@router.get("/{model_id}", response_model=ModelObject, summary="One model")
async def retrieve_model(
    model_id: str, _principal: OpenAIPrincipal, catalog: CatalogDep
) -> ModelObject:
    spec = catalog.get(model_id)
    if spec is None:
        raise OpenAIError(
            f"The model '{model_id}' does not exist",
            status_code=404,
            code="model_not_found",
            param="model",
        )
    return compat.model_object(spec)
