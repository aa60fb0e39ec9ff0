"""The OpenAI-compatible surface's logic: OpenAI requests onto our catalog and tasks, our tasks
onto OpenAI objects.

Mapping (always through the model's catalog entry, never by model name):
- A request field that names one of the model's catalog parameters passes straight through
  (`size` for `sora-2-openai` and the GPT image models, `quality`, `style`, and extras such as
  `aspect_ratio` or `watermark` sent via the SDK's `extra_body`).
- `seconds` goes to the model's duration parameter (`seconds` or `duration`): the nearest allowed
  value that the model's rules accept together with the other values; a tie picks the longer.
- `size` (`WIDTHxHEIGHT`) goes, when the model has no `size` parameter, to its aspect ratio
  (`aspect_ratio`/`ratio`: the closest one, within 8 %), its `resolution` (nearest to the short
  side), `hd` (short side above 720) and `image_size` (1K/2K/4K, nearest to the long side).
  `auto` keeps the model's defaults. A parameter given explicitly wins over one mapped from
  `size`.
- Anything that cannot be honoured is a 400 naming the OpenAI field (`param`).

Status words: ours are OpenAI's, plus `cancelled`, which OpenAI lacks: a cancelled video is
reported as `failed` with `error.code == "cancelled"`.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.clients.base import MediaKind, TaskStatus
from app.clients.registry import ADAPTERS
from app.core.catalog import Catalog, ModelSpec, ParameterSpec, validate_request
from app.core.catalog.values import InvalidValue
from app.core.encryption import Encryptor
from app.core.errors import AppError, ValidationFailed
from app.core.media.storage import MediaStorage
from app.core.tasks.payload import TaskPayload
from app.core.tasks.service import (
    ValidatedModelRequest,
    Validator,
    get_task,
    media_for,
    task_out,
)
from app.models import GenerationTask, Media
from app.models.schemas.openai import (
    ImageData,
    ImagesResponse,
    ModelObject,
    VideoError,
    VideoObject,
)
from app.models.schemas.tasks import MediaOut, TaskCreate

DEFAULT_VIDEO_MODEL = "sora-2"
DEFAULT_IMAGE_MODEL = "gpt-image-1"
DURATION_PARAMS = ("seconds", "duration")
RATIO_PARAMS = ("aspect_ratio", "ratio")
# |ln(requested ratio / allowed ratio)|: 1792x1024 (1.75) still reads as 16:9 (1.78).
MAX_RATIO_ERROR = 0.08
# Written into a remix's params after catalog validation (they are not catalog parameters):
# the source video (ours) and its upstream id, which an adapter with `supports_remix` reads.
REMIX_SOURCE_PARAM = "remixed_from_video_id"
REMIX_UPSTREAM_PARAM = "remix_video_id"
REMIX_PARAMS = (REMIX_SOURCE_PARAM, REMIX_UPSTREAM_PARAM)
# OpenAI fields we accept and ignore: they never change what is generated.
IGNORED_FIELDS = frozenset({"user", "safety_identifier", "moderation"})
# OpenAI fields that are not catalog parameters anywhere in ours but that a model could add.
KNOWN_OPENAI_FIELDS = frozenset(
    {
        "quality",
        "style",
        "background",
        "output_format",
        "output_compression",
        "input_fidelity",
        "partial_images",
    }
)

_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")
_RATIO_RE = re.compile(r"^\s*(\d{1,3})\s*:\s*(\d{1,3})\s*$")
_RESOLUTION_RE = re.compile(r"^\s*(\d{3,4})p\s*$", re.IGNORECASE)
_TIER_RE = re.compile(r"^\s*(\d)K\s*$", re.IGNORECASE)
_INDEX_SUFFIX = re.compile(r"\[\d+\]$")
# The sizes OpenAI itself uses for 16:9 at each short side (the formula would give 1820x1024).
_CANONICAL_LANDSCAPE = {720: (1280, 720), 1024: (1792, 1024), 1080: (1920, 1080)}


class OpenAIError(AppError):
    """An error carrying OpenAI's extra fields: the request field (`param`) and `type`."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 400,
        code: str = "invalid_value",
        param: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code, headers=headers)
        self.status_code = status_code
        self.param = param
        self.error_type = error_type


NO_RETRY = {"x-should-retry": "false"}  # the openai package retries 5xx unless told not to


# ----------------------------------------------------------------------------- field names


def openai_param(field_name: str | None, origins: Mapping[str, str] | None = None) -> str | None:
    """The request field a problem with our `field_name` (`params.duration`, `images[0]`) is
    about, as the OpenAI client named it."""
    if not field_name:
        return None
    origins = origins or {}
    if field_name in origins:
        return origins[field_name]
    base = _INDEX_SUFFIX.sub("", field_name)
    if base in origins:
        return origins[base]
    return field_name.removeprefix("params.")


def _first_detail(exc: AppError) -> dict[str, Any]:
    details = exc.details
    if isinstance(details, list) and details and isinstance(details[0], dict):
        return details[0]
    if isinstance(details, dict):
        return details
    return {}


@contextmanager
def openai_fields(origins: Mapping[str, str]) -> Iterator[None]:
    """Name the OpenAI field on errors raised inside (e.g. a data URI check on `images[0]`)."""
    try:
        yield
    except OpenAIError:
        raise
    except AppError as exc:
        exc.param = openai_param(_first_detail(exc).get("field"), origins)  # type: ignore[attr-defined]
        raise


def _format(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def translate_validation(
    exc: ValidationFailed, origins: Mapping[str, str], model_id: str
) -> OpenAIError:
    detail = _first_detail(exc)
    ours = str(detail.get("field") or "")
    param = openai_param(ours, origins)
    reason = str(detail.get("message") or exc.message)
    if param:
        message = f"Invalid '{param}' for model {model_id}: {reason}"
    else:
        message = f"Invalid request for model {model_id}: {reason}"
    allowed = detail.get("allowed")
    if isinstance(allowed, list) and allowed:
        name = ours.removeprefix("params.")
        label = "allowed" if name == param else f"the model's {name} allows"
        message += f" ({label}: {', '.join(_format(v) for v in allowed)})"
    code = "model_not_found" if exc.code == "unknown_model" else "invalid_value"
    return OpenAIError(message, code=code, param=param)


def translate_pydantic(exc: ValidationError, origins: Mapping[str, str]) -> OpenAIError:
    errors = exc.errors()
    error: Mapping[str, Any] = errors[0] if errors else {}
    loc = [str(p) for p in error.get("loc", ())]
    ours = loc[0] if loc else ""
    if len(loc) > 1 and loc[1].isdigit():
        ours = f"{ours}[{loc[1]}]"
    param = openai_param(ours, origins)
    reason = str(error.get("msg", "invalid value"))
    return OpenAIError(f"Invalid '{param}': {reason}" if param else reason, param=param)


# ----------------------------------------------------------------------------- models


def resolve_model(catalog: Catalog, model_id: str | None, kind: MediaKind) -> ModelSpec:
    wanted = model_id or (DEFAULT_VIDEO_MODEL if kind == "video" else DEFAULT_IMAGE_MODEL)
    spec = catalog.get(wanted)
    if spec is None or spec.kind != kind:
        available = ", ".join(catalog.ids(kind))
        problem = "does not exist" if spec is None else f"does not make {kind}s"
        raise OpenAIError(
            f"The model '{wanted}' {problem}. Available {kind} models: {available}",
            code="model_not_found",
            param="model",
        )
    return spec


def model_object(spec: ModelSpec) -> ModelObject:
    # The catalog records no dates; 0 says "unknown" rather than inventing one.
    return ModelObject(
        id=spec.id, created=0, owned_by="genapi", kind=spec.kind, display_name=spec.display_name
    )


# ----------------------------------------------------------------------------- mapping


@dataclass
class MappedRequest:
    """Our model and parameters for an OpenAI request, and where each of our fields came from
    (`{"params.duration": "seconds", "images": "input_reference"}`) for error messages."""

    model: str
    params: dict[str, Any]
    origins: dict[str, str] = field(default_factory=dict)


def parse_seconds(value: Any) -> float:
    number: float | None = None
    if isinstance(value, bool):
        number = None
    else:
        try:
            if isinstance(value, int | float):
                number = float(value)
            elif isinstance(value, str):
                number = float(value.strip())
        except (ValueError, OverflowError):  # an integer too large for a float is no duration
            number = None
    if number is None or not math.isfinite(number) or number <= 0:
        raise OpenAIError(
            f"Invalid 'seconds': {value!r} is not a positive number of seconds", param="seconds"
        )
    return number


def parse_size(value: str) -> tuple[int, int] | None:
    """(width, height), or None for `auto`."""
    if value.strip().lower() == "auto":
        return None
    match = _SIZE_RE.match(value)
    if match is None or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise OpenAIError(
            f"Invalid 'size': {value!r} is not WIDTHxHEIGHT (for example 1280x720) or 'auto'",
            param="size",
        )
    return int(match.group(1)), int(match.group(2))


def _ratio(value: Any) -> tuple[int, int] | None:
    match = _RATIO_RE.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        return None
    return int(match.group(1)), int(match.group(2))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value) if isinstance(value, int | float) else float(str(value))
    except (ValueError, OverflowError):
        return None


def _duration_spec(spec: ModelSpec) -> ParameterSpec | None:
    return next((p for name in DURATION_PARAMS if (p := spec.parameter(name))), None)


def _duration_candidates(param: ParameterSpec, seconds: float) -> list[Any]:
    """The values to try for `seconds`, best first: nearest, and the longer one on a tie."""
    allowed = param.allowed_values
    if allowed is not None:
        numeric = [(v, n) for v in allowed if (n := _number(v)) is not None]
        numeric.sort(key=lambda pair: (abs(pair[1] - seconds), -pair[1]))
        return [v for v, _ in numeric]
    if param.type in ("integer", "number"):
        value: float = seconds if param.type == "number" else float(round(seconds))
        if param.min is not None:
            value = max(value, float(param.min))
        if param.max is not None:
            value = min(value, float(param.max))
        return [int(value) if param.type == "integer" else value]
    return [_format(int(seconds) if seconds.is_integer() else seconds)]


def _nearest(values: Sequence[Any], score: Callable[[Any], float | None]) -> Any:
    scored = [(s, v) for v in values if (s := score(v)) is not None]
    return min(scored, key=lambda pair: pair[0])[1] if scored else None


def _map_size(spec: ModelSpec, size: str, params: dict[str, Any], origins: dict[str, str]) -> None:
    """Fill the model's size-like parameters from `size` (explicit ones are kept)."""
    size_param = spec.parameter("size")
    if size_param is not None:
        try:
            params["size"] = size_param.coerce(size)
        except InvalidValue:
            allowed = ", ".join(_format(v) for v in size_param.allowed_values or [])
            raise OpenAIError(
                f"Invalid 'size' for model {spec.id}: {size!r} (allowed: {allowed})",
                param="size",
            ) from None
        origins["params.size"] = "size"
        return
    ratio_param = next((p for n in RATIO_PARAMS if (p := spec.parameter(n))), None)
    resolution = spec.parameter("resolution")
    hd = spec.parameter("hd")
    tier = spec.parameter("image_size")
    if not any((ratio_param, resolution, hd, tier)):
        raise OpenAIError(
            f"'size' is not supported by model {spec.id}: it has a fixed size", param="size"
        )
    dims = parse_size(size)
    if dims is None:
        return  # auto: the model's defaults
    width, height = dims
    short, long_side = min(width, height), max(width, height)

    def put(param: ParameterSpec, value: Any) -> None:
        if param.name not in params and value is not None:
            params[param.name] = value
            origins[f"params.{param.name}"] = "size"

    if ratio_param is not None and ratio_param.name not in params:
        wanted = math.log(width / height)

        def ratio_error(value: Any) -> float | None:
            ratio = _ratio(value)
            return abs(math.log(ratio[0] / ratio[1]) - wanted) if ratio else None

        choice = _nearest(ratio_param.allowed_values or [], ratio_error)
        if choice is None or (ratio_error(choice) or 0.0) > MAX_RATIO_ERROR:
            ratios = [v for v in ratio_param.allowed_values or [] if _ratio(v)]
            raise OpenAIError(
                f"Invalid 'size' for model {spec.id}: {size!r} matches none of its aspect "
                f"ratios ({', '.join(str(r) for r in ratios)})",
                param="size",
            )
        put(ratio_param, choice)
    if resolution is not None:

        def resolution_error(value: Any) -> float | None:
            match = _RESOLUTION_RE.match(str(value))
            return abs(int(match.group(1)) - short) if match else None

        put(resolution, _nearest(resolution.allowed_values or [], resolution_error))
    if hd is not None and hd.type == "boolean":
        put(hd, short > 720)
    if tier is not None:

        def tier_error(value: Any) -> float | None:
            match = _TIER_RE.match(str(value))
            return abs(int(match.group(1)) * 1024 - long_side) if match else None

        put(tier, _nearest(tier.allowed_values or [], tier_error))


def _mentions(exc: ValidationFailed, field_name: str) -> bool:
    details = exc.details if isinstance(exc.details, list) else []
    return any(
        isinstance(d, dict) and (d.get("field") == field_name or field_name in d.get("fields", []))
        for d in details
    )


def map_request(
    catalog: Catalog,
    kind: MediaKind,
    *,
    model: str | None,
    seconds: Any = None,
    size: str | None = None,
    direct: Mapping[str, Any] | None = None,
    images_count: int = 0,
    has_mask: bool = False,
    image_field: str = "image",
) -> MappedRequest:
    """Our model and params for an OpenAI request, checked against the catalog (400s name the
    OpenAI field). `direct` holds the fields that must be catalog parameters of the model."""
    spec = resolve_model(catalog, model, kind)
    origins: dict[str, str] = {"model": "model", "images": image_field, "mask": "mask", "n": "n"}
    params: dict[str, Any] = {}
    for name, value in (direct or {}).items():
        if value is None or name in IGNORED_FIELDS:
            continue
        if spec.parameter(name) is None or name in REMIX_PARAMS:
            known = name in KNOWN_OPENAI_FIELDS
            raise OpenAIError(
                f"'{name}' is not supported by model {spec.id}"
                if known
                else f"Unrecognized request argument supplied: {name}",
                code="unsupported_parameter" if known else "unknown_parameter",
                param=name,
            )
        params[name] = value
        origins[f"params.{name}"] = name

    duration = None
    candidates: list[Any] = []
    if seconds is not None:
        wanted = parse_seconds(seconds)
        duration = _duration_spec(spec)
        if duration is None:
            raise OpenAIError(
                f"'seconds' is not supported by model {spec.id}: it has a fixed duration",
                param="seconds",
            )
        if duration.name in params and duration.name != "seconds":
            raise OpenAIError(
                f"Give either 'seconds' or '{duration.name}', not both", param="seconds"
            )
        candidates = _duration_candidates(duration, wanted)
        origins[f"params.{duration.name}"] = "seconds"
    if size is not None:
        _map_size(spec, size, params, origins)

    first_error: ValidationFailed | None = None
    for candidate in candidates or [None]:
        attempt = dict(params)
        if duration is not None:
            attempt[duration.name] = candidate
        try:
            validate_request(
                catalog,
                spec.id,
                kind,
                params=attempt,
                images_count=images_count,
                has_mask=has_mask,
                n=1,
            )
        except ValidationFailed as exc:
            first_error = first_error or exc
            if duration is None or not _mentions(exc, f"params.{duration.name}"):
                break
            continue
        return MappedRequest(model=spec.id, params=attempt, origins=origins)
    assert first_error is not None
    raise translate_validation(first_error, origins, spec.id)


def build_task_create(mapped: MappedRequest, **fields: Any) -> TaskCreate:
    try:
        return TaskCreate(model=mapped.model, params=mapped.params, **fields)
    except ValidationError as exc:
        raise translate_pydantic(exc, mapped.origins) from None


# ----------------------------------------------------------------------------- videos


def _unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def _dimensions(ratio: tuple[int, int], short: int) -> tuple[int, int]:
    a, b = ratio
    if (max(a, b), min(a, b)) == (16, 9) and short in _CANONICAL_LANDSCAPE:
        landscape = _CANONICAL_LANDSCAPE[short]
    else:
        long_side = round(short * max(a, b) / min(a, b) / 2) * 2
        landscape = (long_side, short)
    return landscape if a >= b else (landscape[1], landscape[0])


def describe_size(params: Mapping[str, Any], media: Sequence[MediaOut]) -> str:
    """The video's size as OpenAI writes it: what was asked for, else what was made."""
    size = params.get("size")
    if isinstance(size, str) and _SIZE_RE.match(size):
        return size.strip().lower()
    ratio = next((r for n in RATIO_PARAMS if (r := _ratio(params.get(n)))), None)
    if ratio is not None:
        resolution = _RESOLUTION_RE.match(str(params.get("resolution", "")))
        if resolution:
            short = int(resolution.group(1))
        else:
            short = 1024 if params.get("hd") is True else 720
        width, height = _dimensions(ratio, short)
        return f"{width}x{height}"
    made = next((m for m in media if m.width and m.height), None)
    return f"{made.width}x{made.height}" if made else "auto"


def describe_seconds(params: Mapping[str, Any], media: Sequence[MediaOut]) -> str:
    value = next((params[n] for n in DURATION_PARAMS if n in params), None)
    number = _number(value) if value is not None else None
    if number is None:
        made = next((m.duration_seconds for m in media if m.duration_seconds), None)
        number = float(round(made)) if made else None
    if number is None:
        return ""
    return str(int(number)) if number.is_integer() else str(number)


def video_object(task: GenerationTask, media: Sequence[Media], encryptor: Encryptor) -> VideoObject:
    out = task_out(task, media, encryptor)
    status = out.status
    error: VideoError | None = None
    if status == TaskStatus.CANCELLED:
        error = VideoError(code="cancelled", message="The video was cancelled")
    elif out.error is not None:
        error = VideoError(code=out.error.code, message=out.error.message)
    elif status == TaskStatus.COMPLETED and not any(m.state == "stored" for m in out.media):
        # Generated, but not kept (e.g. the storage quota was full): say why /content 404s.
        unstored = next(iter(out.media), None)
        error = VideoError(
            code=(unstored.reason if unstored and unstored.reason else "result_not_stored"),
            message=(
                unstored.reason_message
                if unstored and unstored.reason_message
                else "The result was not stored"
            ),
        )
    openai_status = "failed" if status == TaskStatus.CANCELLED else status.value
    source = out.params.get(REMIX_SOURCE_PARAM)
    return VideoObject(
        id=task.id,
        model=task.model,
        status=openai_status,
        progress=100 if status == TaskStatus.COMPLETED else out.progress,
        created_at=_unix(task.created_at) or 0,
        completed_at=_unix(task.completed_at),
        expires_at=None,  # results are kept until deleted
        size=describe_size(out.params, out.media),
        seconds=describe_seconds(out.params, out.media),
        prompt=out.prompt,
        remixed_from_video_id=source if isinstance(source, str) else None,
        error=error,
    )


async def video_objects(
    db: AsyncSession, encryptor: Encryptor, tasks: Sequence[GenerationTask]
) -> list[VideoObject]:
    media = await media_for(db, [t.id for t in tasks])
    return [video_object(t, media.get(t.id, []), encryptor) for t in tasks]


async def list_videos(
    db: AsyncSession, user_id: str, *, after: str | None, limit: int, order: str
) -> tuple[list[GenerationTask], bool]:
    """One page of the user's videos after the cursor video `after`; and whether more follow."""
    query = select(GenerationTask).where(
        GenerationTask.user_id == user_id, GenerationTask.kind == "video"
    )
    ascending = order == "asc"
    if after:
        anchor = (
            await db.execute(
                select(GenerationTask.created_at, GenerationTask.id).where(
                    GenerationTask.id == after,
                    GenerationTask.user_id == user_id,
                    GenerationTask.kind == "video",
                )
            )
        ).one_or_none()
        if anchor is None:
            raise OpenAIError(f"Invalid 'after': no video with id {after!r}", param="after")
        created, anchor_id = anchor
        if ascending:
            query = query.where(
                or_(
                    GenerationTask.created_at > created,
                    and_(GenerationTask.created_at == created, GenerationTask.id > anchor_id),
                )
            )
        else:
            query = query.where(
                or_(
                    GenerationTask.created_at < created,
                    and_(GenerationTask.created_at == created, GenerationTask.id < anchor_id),
                )
            )
    if ascending:
        query = query.order_by(GenerationTask.created_at.asc(), GenerationTask.id.asc())
    else:
        query = query.order_by(GenerationTask.created_at.desc(), GenerationTask.id.desc())
    rows = list((await db.scalars(query.limit(limit + 1))).all())
    return rows[:limit], len(rows) > limit


# ----------------------------------------------------------------------------- remix


def supports_remix(adapter_name: str) -> bool:
    return bool(getattr(ADAPTERS.get(adapter_name), "supports_remix", False))


@dataclass
class RemixPlan:
    source: GenerationTask
    params: dict[str, Any]
    upstream_key: str | None = None  # the source's own key, when it was made with one


async def plan_remix(
    db: AsyncSession, encryptor: Encryptor, user_id: str, video_id: str
) -> RemixPlan:
    """Check that the user's video can be remixed; the parameters the remix keeps."""
    source = await get_task(db, user_id, video_id, "video")
    if not supports_remix(source.adapter):
        raise OpenAIError(
            f"Remix is not supported for model {source.model}: its upstream has no remix "
            "operation (only models served by OpenAI's video API can be remixed)",
            code="remix_not_supported",
            param="video_id",
        )
    if source.status != TaskStatus.COMPLETED.value or not source.upstream_id:
        raise OpenAIError(
            f"Only completed videos can be remixed; this one is {source.status}",
            code="video_not_ready",
            param="video_id",
        )
    payload = TaskPayload.from_json(encryptor.decrypt_json(source.request_encrypted))
    params = {k: v for k, v in payload.params.items() if k not in REMIX_PARAMS}
    key = (
        encryptor.decrypt_text(source.upstream_key_encrypted)
        if source.upstream_key_encrypted
        else None
    )
    return RemixPlan(source=source, params=params, upstream_key=key)


def remix_validator(validate: Validator, source: GenerationTask) -> Validator:
    """`validate`, plus the remix's source in the params (added after the catalog's check,
    which would refuse them as unknown parameters)."""

    def wrapped(**kwargs: Any) -> ValidatedModelRequest:
        validated = validate(**kwargs)
        params = {
            **validated.params,
            REMIX_SOURCE_PARAM: source.id,
            REMIX_UPSTREAM_PARAM: source.upstream_id,
        }
        return ValidatedModelRequest(
            model=validated.model,
            adapter=validated.adapter,
            upstream_model=validated.upstream_model,
            params=params,
        )

    return wrapped


# ----------------------------------------------------------------------------- images


async def _read_all(storage: MediaStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.open_range(key)])


def _failure(task: GenerationTask, encryptor: Encryptor) -> OpenAIError:
    out = task_out(task, [], encryptor)
    code = out.error.code if out.error else task.status
    message = out.error.message if out.error else f"The image task ended {task.status}"
    if task.status == TaskStatus.CANCELLED.value or code == "upstream_rejected":
        # The request itself was refused (e.g. a content policy): sending it again won't help.
        return OpenAIError(message, code=code, headers=NO_RETRY)
    return OpenAIError(
        message, status_code=502, code=code, error_type="server_error", headers=NO_RETRY
    )


async def images_response(
    db: AsyncSession,
    storage: MediaStorage,
    encryptor: Encryptor,
    tasks: Sequence[GenerationTask],
    *,
    response_format: str,
    base_url: str,
    media: dict[str, list[Media]] | None = None,
) -> ImagesResponse:
    """OpenAI's images answer for finished tasks: every stored image as a URL to our copy
    (fetchable with the same key) or inline base64. Images that were made but not stored are
    left out; an error only when no image at all can be returned."""
    running = [t.id for t in tasks if not TaskStatus(t.status).is_terminal]
    if running:
        raise OpenAIError(
            "The images are not ready yet; they stay in your history as "
            + ", ".join(f"/api/v1/images/{task_id}" for task_id in running),
            status_code=504,
            code="timeout",
            error_type="server_error",
            headers=NO_RETRY,
        )
    if media is None:
        media = await media_for(db, [t.id for t in tasks])
    data: list[ImageData] = []
    problem: OpenAIError | None = None
    root = base_url.rstrip("/")
    for task in tasks:
        if task.status != TaskStatus.COMPLETED.value:
            problem = problem or _failure(task, encryptor)
            continue
        for item in media.get(task.id, []):
            if item.state != "stored" or not item.storage_key:
                problem = problem or OpenAIError(
                    item.reason_message or "The image was generated but not stored",
                    status_code=413 if item.reason == "quota_exceeded" else 502,
                    code=item.reason or "result_not_stored",
                    error_type="insufficient_quota" if item.reason == "quota_exceeded" else None,
                    headers=NO_RETRY,
                )
                continue
            if response_format == "b64_json":
                raw = await _read_all(storage, item.storage_key)
                data.append(ImageData(b64_json=base64.b64encode(raw).decode("ascii")))
            else:
                path = f"/api/v1/images/{task.id}/media/{item.id}/content"
                data.append(ImageData(url=root + path))
    if not data:
        raise problem or OpenAIError(
            "No image was produced", status_code=502, code="no_result", headers=NO_RETRY
        )
    created = min((_unix(t.created_at) or 0) for t in tasks)
    return ImagesResponse(created=created, data=data)


def default_response_format(spec: ModelSpec) -> str:
    """What a client gets without `response_format`: the model's own habit (GPT image models
    answer base64, the rest URLs), read from its catalog default."""
    param = spec.parameter("response_format")
    return "b64_json" if param is not None and param.default == "b64_json" else "url"
