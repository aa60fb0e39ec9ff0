"""Reading OpenAI-style request bodies: JSON, or multipart forms with files (the SDK sends
`image`, `image[]`, `input_reference` files, and nested objects as `name[key]` fields)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, UploadFile
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.config import Settings
from app.core.openai_compat import OpenAIError
from app.core.tasks import service
from app.core.tasks.payload import data_uri


@dataclass
class ParsedBody:
    fields: dict[str, Any]
    files: dict[str, list[UploadFile]] = field(default_factory=dict)
    form: FormData | None = None

    async def close(self) -> None:
        if self.form is not None:
            await self.form.close()  # spooled upload files


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_json_object(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise OpenAIError(
            "We could not parse the JSON body of your request", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise OpenAIError("The request body must be a JSON object", code="invalid_json")
    return data


async def read_form(request: Request, settings: Settings, *, max_files: int) -> ParsedBody:
    """Form fields (`name[key]` nested into `{name: {key: …}}`) and uploaded files by name."""
    try:
        form = await request.form(
            max_files=max_files, max_fields=100, max_part_size=settings.upload_max_bytes
        )
    except StarletteHTTPException as exc:
        reason = str(exc.detail)
        if "maximum size" in reason:
            raise OpenAIError(
                f"A form field is larger than {settings.upload_max_bytes} bytes",
                status_code=413,
                code="payload_too_large",
            ) from exc
        raise OpenAIError(f"Invalid form: {reason}", code="invalid_form") from exc
    parsed = ParsedBody(fields={}, form=form)
    for name, value in form.multi_items():
        if not isinstance(value, str):
            parsed.files.setdefault(name, []).append(value)  # type: ignore[arg-type]
            continue
        outer, bracket, rest = name.partition("[")
        if bracket and rest.endswith("]") and rest[:-1]:
            nested = parsed.fields.setdefault(outer, {})
            if isinstance(nested, dict):
                nested[rest[:-1]] = value
                continue
        parsed.fields[name] = value
    return parsed


async def read_upload(upload: UploadFile, settings: Settings, param: str) -> str:
    """An uploaded reference image as a data URI (413/415 naming `param`)."""
    data = await upload.read(settings.upload_max_bytes + 1)
    content_type = service.check_reference_image(data, param, settings.upload_max_bytes)
    return data_uri(data, content_type)
