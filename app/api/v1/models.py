"""`/api/v1/models`: the model catalog, from which the web page builds its forms."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.api.deps import CurrentUser, NoNulParameters
from app.core.catalog import Catalog, ModelKind, ModelList, ModelOut, get_catalog
from app.core.errors import NotFound, error_response_doc, error_responses

router = APIRouter(responses=error_responses(401, 422), dependencies=[NoNulParameters])


async def get_catalog_dep(request: Request) -> Catalog:
    # The app may pin its own catalog (loaded at startup, or a test's); else the global one.
    catalog = getattr(request.app.state, "catalog", None)
    return catalog if isinstance(catalog, Catalog) else get_catalog()


CatalogDep = Annotated[Catalog, Depends(get_catalog_dep)]


@router.get("", response_model=ModelList, summary="List the available models")
async def list_models(
    _user: CurrentUser,
    catalog: CatalogDep,
    kind: Annotated[ModelKind | None, Query(description="Only video or only image models")] = None,
) -> ModelList:
    return ModelList(data=[ModelOut.from_spec(m) for m in catalog.visible(kind)])


@router.get(
    "/{model_id}",
    response_model=ModelOut,
    summary="One model",
    responses={404: error_response_doc(404, "No such model (code `model_not_found`)")},
)
async def get_model(model_id: str, _user: CurrentUser, catalog: CatalogDep) -> ModelOut:
    model = catalog.get(model_id)
    if model is None:
        raise NotFound(f"Model {model_id!r} not found", code="model_not_found")
    return ModelOut.from_spec(model)
