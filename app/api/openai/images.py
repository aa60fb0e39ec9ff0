"""`/v1/images/generations` and `/v1/images/edits`: synchronous for the client, as OpenAI's are.

Each image is one of our tasks (`n` images = a batch of `n`), run by the worker like any other;
the handler waits for them up to `REQUEST_TIMEOUT` and answers with URLs of our stored copies
(`/api/v1/images/{id}/media/{media_id}/content`, fetchable with the same key) or their bytes
inline (`b64_json`). A timeout answers 504 with `x-should-retry: false` (the images keep
generating and land in the history; a retry would pay for them twice).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from app.api.deps import NoNulParameters, SessionDep, SettingsDep
from app.api.openai.deps import IdempotencyHeader, OpenAIPrincipal, UpstreamKeyHeader
from app.api.openai.errors import (
    OPENAI_CREATE_RESPONSES,
    OPENAI_ERROR_RESPONSES,
    OpenAIRoute,
    openai_error_doc,
)
from app.api.openai.forms import media_type, read_form, read_upload
from app.api.v1.generations import ContextDep, RuntimeDep
from app.core import openai_compat as compat
from app.core.openai_compat import OpenAIError
from app.core.tasks import service
from app.core.tasks.runtime import TaskRuntime
from app.core.tasks.service import TaskContext
from app.db.session import commit
from app.models import Media
from app.models.schemas.openai import (
    ImageGenerationRequest,
    ImageRequestFields,
    ImagesResponse,
    flat_schema,
)
from app.models.schemas.tasks import MAX_REFERENCE_IMAGES

router = APIRouter(
    route_class=OpenAIRoute, responses=OPENAI_ERROR_RESPONSES, dependencies=[NoNulParameters]
)

IMAGE_FILE_FIELDS = ("image", "image[]", "images", "images[]")
# Request fields that must be catalog parameters of the model to mean anything.
_PASS_THROUGH = (
    "quality",
    "style",
    "background",
    "output_format",
    "output_compression",
    "input_fidelity",
    "partial_images",
)
_BINARY = {"type": "string", "format": "binary"}
# The answer waits for the images, so the upstream's failure or slowness is part of it.
_GENERATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **OPENAI_CREATE_RESPONSES,
    502: openai_error_doc("The upstream failed to produce the images"),
    504: openai_error_doc("Not ready within REQUEST_TIMEOUT (they keep generating)"),
}
_EDIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    **flat_schema(
                        ImageRequestFields,
                        image={"anyOf": [_BINARY, {"type": "array", "items": _BINARY}]},
                        mask=_BINARY,
                    ),
                    "required": ["image", "prompt"],
                }
            }
        },
    }
}


async def synchronous_admission(runtime: RuntimeDep) -> AsyncIterator[None]:
    """Wait (in memory, before authentication touches the database) while this process's
    worker has no room for one more synchronous request (`TaskWorker.admission`)."""
    async with runtime.worker.admission():
        yield


# First of the routes' dependencies: FastAPI solves a decorator's before the parameters'.
SynchronousAdmission = Depends(synchronous_admission)


async def _generate(
    request: Request,
    body: ImageRequestFields,
    *,
    user_id: str,
    db: SessionDep,
    runtime: TaskRuntime,
    ctx: TaskContext,
    wait_seconds: float,
    upstream_key: str | None,
    idempotency_key: str | None,
    uploaded_images: list[str] | None = None,
    uploaded_mask: str | None = None,
) -> ImagesResponse:
    if body.stream:
        raise OpenAIError(
            "'stream' is not supported: the answer comes when the images are ready",
            code="unsupported_parameter",
            param="stream",
        )
    direct = {name: getattr(body, name) for name in _PASS_THROUGH}
    direct.update(body.model_extra or {})
    images = uploaded_images or []
    mapped = compat.map_request(
        runtime.catalog,
        "image",
        model=body.model,
        size=body.size,
        direct=direct,
        images_count=len(images),
        has_mask=uploaded_mask is not None,
    )
    spec = runtime.catalog.get(mapped.model)
    assert spec is not None  # map_request resolved it
    task_body = compat.build_task_create(mapped, prompt=body.prompt, n=body.n or 1)
    with compat.openai_fields(mapped.origins):
        result = await service.create_tasks(
            db,
            ctx,
            user_id=user_id,
            kind="image",
            body=task_body,
            upstream_key=upstream_key,
            idempotency_key=idempotency_key,
            uploaded_images=images,
            uploaded_mask=uploaded_mask,
            creator_waits=True,
        )
    await commit(db)
    tasks = result.tasks
    outcomes = await runtime.wait_for(
        [t.id for t in tasks], wait_seconds, just_created=not result.replayed
    )
    media: dict[str, list[Media]] | None = None
    if all(t.id in outcomes for t in tasks):
        # Ended in this process: answer from what the worker committed, no read-back.
        tasks = [outcomes[t.id].task for t in tasks]
        media = {t.id: outcomes[t.id].media for t in tasks}
    else:
        for task in tasks:
            await db.refresh(task)
    return await compat.images_response(
        db,
        runtime.storage,
        runtime.encryptor,
        tasks,
        response_format=body.response_format or compat.default_response_format(spec),
        base_url=str(request.base_url),
        media=media,
    )


@router.post(
    "/generations",
    response_model=ImagesResponse,
    response_model_exclude_none=True,
    responses=_GENERATE_RESPONSES,
    summary="Generate images (OpenAI compatible; answers when they are ready)",
    dependencies=[SynchronousAdmission],
)
async def generate_images(
    request: Request,
    body: ImageGenerationRequest,
    principal: OpenAIPrincipal,
    db: SessionDep,
    runtime: RuntimeDep,
    ctx: ContextDep,
    settings: SettingsDep,
    x_api_key: UpstreamKeyHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> ImagesResponse:
    return await _generate(
        request,
        body,
        user_id=principal.user_id,
        db=db,
        runtime=runtime,
        ctx=ctx,
        wait_seconds=settings.request_timeout,
        upstream_key=x_api_key,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/edits",
    response_model=ImagesResponse,
    response_model_exclude_none=True,
    responses=_GENERATE_RESPONSES,
    summary="Edit images: one or more `image` files (and an optional `mask`) as multipart",
    openapi_extra=_EDIT_BODY,
    dependencies=[SynchronousAdmission],
)
async def edit_images(
    request: Request,
    principal: OpenAIPrincipal,
    db: SessionDep,
    runtime: RuntimeDep,
    ctx: ContextDep,
    settings: SettingsDep,
    x_api_key: UpstreamKeyHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> ImagesResponse:
    if media_type(request) not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise OpenAIError(
            "Send image edits as multipart/form-data with one or more 'image' files",
            status_code=415,
            code="unsupported_media_type",
        )
    parsed = await read_form(request, settings, max_files=MAX_REFERENCE_IMAGES + 1)
    try:
        unknown = [n for n in parsed.files if n not in (*IMAGE_FILE_FIELDS, "mask")]
        if unknown:
            raise OpenAIError(
                f"Unrecognized file field: {unknown[0]}",
                code="unknown_parameter",
                param=unknown[0],
            )
        uploads = [u for name in IMAGE_FILE_FIELDS for u in parsed.files.get(name, [])]
        if not uploads:
            raise OpenAIError(
                "At least one 'image' file is required", code="missing_image", param="image"
            )
        masks = parsed.files.get("mask", [])
        if len(masks) > 1:
            raise OpenAIError("Send at most one mask", param="mask")
        images = [await read_upload(u, settings, "image") for u in uploads]
        mask = await read_upload(masks[0], settings, "mask") if masks else None
    finally:
        await parsed.close()
    try:
        body = ImageRequestFields.model_validate(parsed.fields)
    except ValidationError as exc:
        raise compat.translate_pydantic(exc, {}) from None
    return await _generate(
        request,
        body,
        user_id=principal.user_id,
        db=db,
        runtime=runtime,
        ctx=ctx,
        wait_seconds=settings.request_timeout,
        upstream_key=x_api_key,
        idempotency_key=idempotency_key,
        uploaded_images=images,
        uploaded_mask=mask,
    )
