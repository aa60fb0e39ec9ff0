"""The simulator's ASGI app: upstream endpoints, media, and the `/_sim` control surface."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Literal

import jwt
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.simulator.config import SimulatorConfig
from app.simulator.faults import (
    DirectiveError,
    Directives,
    create_fault_for_attempt,
    fault_response,
    openai_error,
    parse_directives,
)
from app.simulator.media import CONTENT_TYPES, image_bytes, media_response, probe_image, video_bytes
from app.simulator.shapes import (
    ark_task,
    create_payload,
    gemini_operation,
    kling_envelope,
    kling_task,
    openai_video,
    task_payload,
)
from app.simulator.state import MediaSpec, Store, Task, TaskFamily, new_id
from app.simulator.validation import (
    ImageRequest,
    Rejected,
    VideoShape,
    validate_ark,
    validate_gemini,
    validate_image_request,
    validate_kling,
    validate_openai_video,
    validate_seedance,
    validate_sora,
    validate_veo,
)

Clock = Callable[[], float]
Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]
# How a caller proves who it is: a bearer key (aggregators, OpenAI, Ark), Google's
# `x-goog-api-key` header (Gemini), or a Kling JWT signed with the secret key.
AuthScheme = Literal["bearer", "goog", "kling"]
ARK_TASKS = "/api/v3/contents/generations/tasks"
GEMINI_OPERATION = ":predictLongRunning"
KLING_ENDPOINTS = ("text2video", "image2video")
# Leeway for a Kling token's exp/nbf against the wall clock (not the simulated clock: the
# token is minted from real time).
KLING_LEEWAY_SECONDS = 10


class Reply(Exception):
    """Stop handling and answer with `response` (bad input, unknown task, …)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _bad_request(message: str) -> Reply:
    return Reply(openai_error(400, message, "invalid_request_error"))


def _not_found(message: str = "task not found") -> Reply:
    return Reply(openai_error(404, message, "invalid_request_error", "not_found"))


def _summarize(value: Any) -> Any:
    """A request body for the request log, with long strings (data URIs) shortened."""
    if isinstance(value, str) and len(value) > 200:
        return f"{value[:48]}…<{len(value)} chars>"
    if isinstance(value, dict):
        return {key: _summarize(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_summarize(item) for item in value]
    return value


def _prompt(fields: dict[str, Any]) -> str:
    value = fields.get("prompt")
    return value if isinstance(value, str) else ""


def key_fingerprint(key: str) -> str:
    """How the request log names a key: never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def ark_error(status: int, code: str, message: str) -> JSONResponse:
    kind = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 409: "Conflict"}
    body = {"code": code, "message": message, "param": "", "type": kind.get(status, "Error")}
    return JSONResponse({"error": body}, status_code=status)


def google_error(status: int, message: str, rpc_status: str, reason: str | None = None) -> Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": rpc_status}
    if reason is not None:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
            }
        ]
    return JSONResponse({"error": error}, status_code=status)


def kling_error(status: int, code: int, message: str) -> JSONResponse:
    body = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
    return JSONResponse(body, status_code=status)


class Simulator:
    """State and behaviour behind the routes; usable directly from tests (`app.state.simulator`)."""

    def __init__(self, config: SimulatorConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or time.time
        self.store = Store(requests=deque(maxlen=config.request_log_size))
        self.rng = random.Random(config.seed)

    # ----- configuration -------------------------------------------------------------------

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Apply a partial config; `variants` merges per family. Raises pydantic's error."""
        data = self.config.model_dump()
        if isinstance(changes.get("variants"), dict):
            changes["variants"] = {**data["variants"], **changes["variants"]}
        new = SimulatorConfig.model_validate({**data, **changes})
        if "seed" in changes:
            self.rng = random.Random(new.seed)
        if new.request_log_size != self.config.request_log_size:
            self.store.requests = deque(self.store.requests, maxlen=new.request_log_size)
        self.config = new
        return new

    def reset(self) -> None:
        self.store.reset(self.config.request_log_size)
        self.rng = random.Random(self.config.seed)

    # ----- plumbing ------------------------------------------------------------------------

    def _authorized_key(self, request: Request) -> str | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return None
        expected = self.config.api_key
        if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
            return None
        return key

    def _authorized_goog_key(self, request: Request) -> tuple[str | None, Response | None]:
        """Google's API key header (or `?key=`), answered the way Google answers."""
        key = (
            request.headers.get("x-goog-api-key") or request.query_params.get("key") or ""
        ).strip()
        if not key:
            if request.headers.get("authorization"):
                return None, google_error(
                    401,
                    "Request had invalid authentication credentials. Expected OAuth 2 access "
                    "token, login cookie or other valid authentication credential.",
                    "UNAUTHENTICATED",
                )
            return None, google_error(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
                "PERMISSION_DENIED",
            )
        expected = self.config.api_key
        if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
            # Google says 400 (not 401) for a wrong key.
            return None, google_error(
                400,
                "API key not valid. Please pass a valid API key.",
                "INVALID_ARGUMENT",
                "API_KEY_INVALID",
            )
        return key, None

    def _authorized_kling(self, request: Request) -> tuple[str | None, Response | None]:
        """A Kling JWT: HS256, `iss` = access key, valid `exp`/`nbf`.

        The configured `api_key` is `ACCESS_KEY:SECRET_KEY` (a key without ':' is the secret
        and any issuer goes); None accepts any well-formed, unexpired token. The request log
        names the access key's fingerprint, never the token.
        """
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None, kling_error(401, 1001, "Authorization is empty")
        expected = self.config.api_key
        access_key: str | None = None
        secret = expected
        if expected is not None and ":" in expected:
            access_key, _, secret = expected.partition(":")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "HS256":
                raise jwt.InvalidAlgorithmError("alg")
            claims = jwt.decode(
                token,
                key=secret or "",
                algorithms=["HS256"],
                leeway=KLING_LEEWAY_SECONDS,
                options={
                    "verify_signature": secret is not None,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "require": ["iss", "exp", "nbf"],
                },
            )
        except jwt.ExpiredSignatureError:
            return None, kling_error(401, 1004, "Authorization has expired")
        except jwt.ImmatureSignatureError:
            return None, kling_error(401, 1003, "Authorization is not yet valid")
        except jwt.PyJWTError:
            return None, kling_error(401, 1002, "Authorization is invalid")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer or (access_key and issuer != access_key):
            return None, kling_error(401, 1002, "Authorization is invalid")
        return issuer, None

    def _authenticate(
        self, request: Request, auth: AuthScheme
    ) -> tuple[str | None, Response | None]:
        """(the identity to fingerprint, None) when accepted; (None, the refusal) otherwise."""
        if auth == "goog":
            return self._authorized_goog_key(request)
        if auth == "kling":
            return self._authorized_kling(request)
        key = self._authorized_key(request)
        if key is not None:
            return key, None
        if request.scope["path"].startswith(ARK_TASKS):
            return None, ark_error(
                401,
                "AuthenticationError",
                "The API key or AK/SK in the request is missing or invalid.",
            )
        return None, openai_error(401, "invalid api key", "invalid_request_error")

    def endpoint(
        self, handler: Handler, kind: str = "api", auth: AuthScheme = "bearer"
    ) -> Callable[..., Any]:
        """Wrap a handler. `kind`: "api" (key, latency, request log), "control" (key only),
        "public" (nothing: health and media, which real CDNs serve without a key).
        `auth`: how the caller authenticates (see `AuthScheme`)."""

        async def run(request: Request) -> Response:
            entry: dict[str, Any] = {
                "at": self.clock(),
                "method": request.method,
                "path": request.scope["path"],
                "key_fingerprint": None,
            }
            if kind == "public":
                key, refusal = self._authorized_key(request), None
            else:
                key, refusal = self._authenticate(request, auth)
            if refusal is not None:
                response: Response = refusal
            else:
                if key is not None:
                    entry["key_fingerprint"] = key_fingerprint(key)
                if kind == "api" and self.config.latency:
                    await asyncio.sleep(self.config.latency)
                try:
                    response = await handler(request, entry)
                except Reply as reply:
                    response = reply.response
            entry["status"] = response.status_code
            if kind == "api":
                self.store.requests.append(entry)
            return response

        return run

    async def _json(self, request: Request, entry: dict[str, Any]) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise _bad_request("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _bad_request("request body must be a JSON object")
        entry["body"] = _summarize(body)
        return body

    async def _form(
        self, request: Request, entry: dict[str, Any], file_fields: tuple[str, ...]
    ) -> tuple[dict[str, Any], list[tuple[str, bytes, str | None]]]:
        """Text fields and the files under `file_fields`, in order (field, bytes, type)."""
        fields: dict[str, Any] = {}
        files: list[tuple[str, bytes, str | None]] = []
        async with request.form() as form:
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if name in file_fields:
                        files.append((name, await value.read(), value.content_type))
                else:
                    fields[name] = value
        entry["body"] = _summarize(fields)
        entry["files"] = [
            {"field": name, "size": len(data), "content_type": ctype} for name, data, ctype in files
        ]
        return fields, files

    def _directives(self, prompt: Any) -> Directives:
        try:
            return parse_directives(prompt if isinstance(prompt, str) else None)
        except DirectiveError as exc:
            raise Reply(openai_error(400, str(exc), "simulator_error")) from None

    def _media_url(self, request: Request, media_id: str, fmt: str) -> str:
        base = self.config.public_base_url or str(request.base_url)
        return f"{base.rstrip('/')}/media/{media_id}.{fmt}"

    @staticmethod
    def _path_id(request: Request, name: str, slashes: int) -> str:
        """The id from the path, refusing ids whose '/' the client did not percent-encode.

        A real router would send `/tasks/a/b` elsewhere; `slashes` is how many '/' the route
        template itself has.
        """
        value: str = request.path_params[name]
        raw = request.scope.get("raw_path")
        if raw is not None and raw.count(b"/") != slashes:
            raise _not_found()
        return value

    def _count_create(self, prompt: str) -> None:
        self.store.stats.create_requests += 1
        self.store.stats.for_prompt(prompt).create_requests += 1

    async def _before_create(
        self, request: Request, prompt: str, directives: Directives
    ) -> str | None:
        """Latency and scripted/random faults for a create; returns the fault to answer with."""
        if directives.slow:
            await asyncio.sleep(directives.slow)
        fingerprint = f"{request.scope['path']}\n{prompt}"
        attempt = self.store.attempts.get(fingerprint, 0)
        self.store.attempts[fingerprint] = attempt + 1
        fault = create_fault_for_attempt(directives, attempt)
        rate = self.config.create_error_rate
        if fault is None and rate and self.rng.random() < rate:
            fault = self.rng.choice(self.config.error_kinds)
        if fault is not None:
            self.store.stats.faults += 1
        if directives.reject and fault is None:
            raise _bad_request(directives.reject)
        return fault

    def _fault(self, kind: str, directives: Directives) -> Response:
        retry_after = directives.retry_after
        return fault_response(kind, self.config.retry_after if retry_after is None else retry_after)

    def _video_dims(self, aspect: str) -> tuple[int, int]:
        wide, narrow = self.config.video_width, self.config.video_height
        if aspect == "portrait":
            return narrow, wide
        if aspect == "square":
            return narrow, narrow
        return wide, narrow

    def _new_task(
        self,
        family: TaskFamily,
        shape: VideoShape,
        directives: Directives,
        request_summary: dict[str, Any],
        *,
        remixed_from: str | None = None,
        echo: dict[str, Any] | None = None,
        task_id: str | None = None,
    ) -> Task:
        now = self.clock()
        weird = directives.weird_id or self.config.special_ids
        prefix = {"openai": "video", "ark": "cgt"}.get(family, "task")
        task_id = task_id or new_id(prefix, weird=weird)
        width, height = self._video_dims(shape.aspect)
        media_id = secrets.token_hex(12)
        duration = self.config.task_seconds
        if directives.task_seconds is not None:
            duration = directives.task_seconds
        task = Task(
            id=task_id,
            family=family,
            model=shape.model,
            prompt=shape.prompt,
            created_at=now,
            duration=duration,
            queued_fraction=self.config.queued_fraction,
            directives=directives,
            media_id=media_id,
            request=request_summary,
            width=width,
            height=height,
            seconds=shape.seconds,
            size=shape.size,
            remixed_from=remixed_from,
            echo=dict(echo or {}),
        )
        for kind, count in directives.poll_faults:
            task.pending_poll_faults.extend([kind] * count)
        self.store.tasks[task_id] = task
        self.store.media[media_id] = MediaSpec(
            id=media_id,
            fmt="mp4",
            width=width,
            height=height,
            seed=int(media_id[:2], 16),
            created_at=now,
            task_id=task_id,
            chunked=directives.chunked,
            expired=directives.expired_url,
        )
        self.store.stats.creates += 1
        self.store.stats.for_prompt(shape.prompt).creates += 1
        return task

    def _task_for_poll(self, task_id: str, family: TaskFamily) -> Task:
        self.store.stats.polls += 1
        task = self.store.tasks.get(task_id)
        if task is None or task.family != family or task.deleted:
            raise _not_found()
        task.polls += 1
        self.store.stats.for_prompt(task.prompt).polls += 1
        return task

    async def _poll_fault(self, task: Task) -> Response | None:
        if task.directives.poll_slow:
            await asyncio.sleep(task.directives.poll_slow)
        kind = task.pending_poll_faults.popleft() if task.pending_poll_faults else None
        rate = self.config.poll_error_rate
        if kind is None and rate and self.rng.random() < rate:
            kind = self.rng.choice(self.config.error_kinds)
        if kind is None:
            return None
        self.store.stats.faults += 1
        return self._fault(kind, task.directives)

    def _media_available(self, spec: MediaSpec, now: float) -> bool:
        if spec.expired:
            return False
        finished = spec.created_at
        if spec.task_id is not None:
            task = self.store.tasks.get(spec.task_id)
            if task is None or task.deleted or task.media_expired:
                return False
            phase = task.phase(now)
            if phase.state != "completed" or phase.finished_at is None:
                return False
            finished = phase.finished_at
        ttl = self.config.result_ttl
        return ttl is None or now - finished < ttl

    async def _media_bytes(self, spec: MediaSpec) -> bytes:
        if spec.fmt == "mp4":
            frames, fps = self.config.video_frames, self.config.video_fps
            return await video_bytes(spec.width, spec.height, frames, fps, spec.seed)
        return await image_bytes(spec.width, spec.height, spec.fmt, spec.seed)

    # ----- aggregator video families -------------------------------------------------------

    async def _create_aggregator(
        self,
        request: Request,
        entry: dict[str, Any],
        family: TaskFamily,
        validate: Callable[[dict[str, Any]], VideoShape],
    ) -> Response:
        body = await self._json(request, entry)
        prompt = _prompt(body)
        directives = self._directives(prompt)
        self._count_create(prompt)
        fault = await self._before_create(request, prompt, directives)
        if fault is not None and fault != "accepted-500":
            return self._fault(fault, directives)
        try:
            shape = validate(body)
        except Rejected as exc:
            raise _bad_request(str(exc)) from None
        task = self._new_task(family, shape, directives, entry.get("body", {}))
        entry["task_id"] = task.id
        if fault == "accepted-500":
            # The task exists but the answer is lost: a client must not blindly resubmit.
            return self._fault(fault, directives)
        variant = directives.variant(self.config.variants[family])
        return JSONResponse(create_payload(task, variant))

    async def _poll_aggregator(
        self, request: Request, entry: dict[str, Any], family: TaskFamily, slashes: int
    ) -> Response:
        task = self._task_for_poll(self._path_id(request, "task_id", slashes), family)
        entry["task_id"] = task.id
        fault = await self._poll_fault(task)
        if fault is not None:
            return fault
        task.answered_polls += 1
        return await self._aggregator_status(request, task)

    async def _aggregator_status(self, request: Request, task: Task) -> Response:
        phase = task.phase(self.clock())
        variant = task.directives.variant(self.config.variants[task.family])
        spec = self.store.media[task.media_id]
        video_b64 = None
        if phase.state == "completed" and variant.result == "video_base64":
            video_b64 = await self._media_bytes(spec)
        url = self._media_url(request, spec.id, spec.fmt) if phase.state == "completed" else None
        return JSONResponse(task_payload(task, phase, variant, media_url=url, video_b64=video_b64))

    async def _cancel_aggregator(
        self, request: Request, entry: dict[str, Any], family: TaskFamily, slashes: int
    ) -> Response:
        task_id = self._path_id(request, "task_id", slashes)
        task = self.store.tasks.get(task_id)
        if task is None or task.family != family or task.deleted:
            raise _not_found()
        if not task.cancel(self.clock()):
            return openai_error(409, "task already finished", "invalid_request_error")
        return await self._aggregator_status(request, task)

    async def sora_create(self, request: Request, entry: dict[str, Any]) -> Response:
        return await self._create_aggregator(request, entry, "sora", validate_sora)

    async def sora_poll(self, request: Request, entry: dict[str, Any]) -> Response:
        return await self._poll_aggregator(request, entry, "sora", 4)

    async def sora_cancel(self, request: Request, entry: dict[str, Any]) -> Response:
        return await self._cancel_aggregator(request, entry, "sora", 4)

    async def veo_text(self, request: Request, entry: dict[str, Any]) -> Response:
        return await self._create_aggregator(
            request, entry, "veo", lambda body: validate_veo(body, with_image=False)
        )

    async def veo_image(self, request: Request, entry: dict[str, Any]) -> Response:
        return await self._create_aggregator(
            request, entry, "veo", lambda body: validate_veo(body, with_image=True)
        )

    async def veo_poll(self, request: Request, entry: dict[str, Any]) -> Response:
        return await self._poll_aggregator(request, entry, "veo", 5)

    async def veo_cancel(self, request: Request, entry: dict[str, Any]) -> Response:
        return await self._cancel_aggregator(request, entry, "veo", 5)

    def seedance_create(self, mode: str) -> Handler:
        async def handler(request: Request, entry: dict[str, Any]) -> Response:
            return await self._create_aggregator(
                request, entry, "seedance", lambda body: validate_seedance(body, mode=mode)
            )

        return handler

    async def seedance_poll(self, request: Request, entry: dict[str, Any]) -> Response:
        return await self._poll_aggregator(request, entry, "seedance", 5)

    async def seedance_cancel(self, request: Request, entry: dict[str, Any]) -> Response:
        return await self._cancel_aggregator(request, entry, "seedance", 5)

    # ----- images (synchronous) ------------------------------------------------------------

    async def images_generations(self, request: Request, entry: dict[str, Any]) -> Response:
        body = await self._json(request, entry)
        return await self._images(request, entry, body, (1024, 1024))

    async def images_edits(self, request: Request, entry: dict[str, Any]) -> Response:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise _bad_request("images/edits expects multipart/form-data")
        fields, files = await self._form(request, entry, ("image", "image[]", "mask"))
        images = [(name, data) for name, data, _ in files if name in {"image", "image[]"}]
        if not images:
            raise _bad_request("at least one image is required (field image or image[])")
        sizes = []
        for index, (name, data) in enumerate(images):
            size = probe_image(data)
            if size is None:
                raise _bad_request(f"{name} #{index + 1} is not a valid image")
            sizes.append(size)
        for name, data, _ in files:
            if name == "mask" and probe_image(data) is None:
                raise _bad_request("mask is not a valid image")
        return await self._images(request, entry, fields, sizes[0])

    async def _images(
        self,
        request: Request,
        entry: dict[str, Any],
        fields: dict[str, Any],
        fallback: tuple[int, int],
    ) -> Response:
        prompt = _prompt(fields)
        directives = self._directives(prompt)
        self._count_create(prompt)
        fault = await self._before_create(request, prompt, directives)
        if fault is not None:
            return self._fault(fault, directives)
        try:
            wanted: ImageRequest = validate_image_request(
                fields, self.config.max_image_side, fallback
            )
        except Rejected as exc:
            raise _bad_request(str(exc)) from None
        if directives.fail is not None:
            return openai_error(400, directives.fail, "invalid_request_error", "generation_failed")
        self.store.stats.creates += 1
        self.store.stats.for_prompt(prompt).creates += 1
        now = self.clock()
        data: list[dict[str, str]] = []
        for _ in range(wanted.n):
            media_id = secrets.token_hex(12)
            spec = MediaSpec(
                id=media_id,
                fmt=wanted.fmt,
                width=wanted.width,
                height=wanted.height,
                seed=int(media_id[:2], 16),
                created_at=now,
                chunked=directives.chunked,
                expired=directives.expired_url,
            )
            self.store.media[media_id] = spec
            if wanted.b64:
                payload = await self._media_bytes(spec)
                data.append({"b64_json": base64.b64encode(payload).decode("ascii")})
            else:
                data.append({"url": self._media_url(request, media_id, spec.fmt)})
        return JSONResponse({"created": int(now), "data": data})

    # ----- OpenAI Sora (official API shape) ------------------------------------------------

    async def openai_create(self, request: Request, entry: dict[str, Any]) -> Response:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            fields, files = await self._form(request, entry, ("input_reference",))
            for _, data, _ in files:
                if probe_image(data) is None:
                    raise _bad_request("input_reference is not a valid image")
        else:
            fields = await self._json(request, entry)
        prompt = _prompt(fields)
        directives = self._directives(prompt)
        self._count_create(prompt)
        fault = await self._before_create(request, prompt, directives)
        if fault is not None and fault != "accepted-500":
            return self._fault(fault, directives)
        try:
            shape = validate_openai_video(fields)
        except Rejected as exc:
            raise _bad_request(str(exc)) from None
        task = self._new_task("openai", shape, directives, entry.get("body", {}))
        entry["task_id"] = task.id
        if fault == "accepted-500":
            return self._fault(fault, directives)
        return JSONResponse(openai_video(task, task.phase(self.clock()), self.config.result_ttl))

    async def openai_get(self, request: Request, entry: dict[str, Any]) -> Response:
        task = self._task_for_poll(self._path_id(request, "video_id", 3), "openai")
        fault = await self._poll_fault(task)
        if fault is not None:
            return fault
        task.answered_polls += 1
        phase = task.phase(self.clock())
        return JSONResponse(openai_video(task, phase, self.config.result_ttl))

    async def openai_content(self, request: Request, entry: dict[str, Any]) -> Response:
        task = self.store.tasks.get(self._path_id(request, "video_id", 4))
        if task is None or task.family != "openai" or task.deleted:
            raise _not_found("video not found")
        self.store.stats.media_requests += 1
        now = self.clock()
        if task.phase(now).state != "completed":
            raise _not_found("video is not ready")
        spec = self.store.media[task.media_id]
        if not self._media_available(spec, now):
            raise _not_found("video content has expired")
        variant = request.query_params.get("variant", "video")
        if variant == "video":
            data, ctype = await self._media_bytes(spec), CONTENT_TYPES["mp4"]
        elif variant in {"thumbnail", "spritesheet"}:
            fmt = "webp" if variant == "thumbnail" else "jpg"
            data = await image_bytes(spec.width, spec.height, fmt, spec.seed)
            ctype = CONTENT_TYPES[fmt]
        else:
            raise _bad_request("variant must be video, thumbnail or spritesheet")
        chunked = self.config.chunked if spec.chunked is None else spec.chunked
        return media_response(request, data, ctype, chunked=chunked)

    async def openai_delete(self, request: Request, entry: dict[str, Any]) -> Response:
        video_id = self._path_id(request, "video_id", 3)
        task = self.store.tasks.get(video_id)
        if task is None or task.family != "openai" or task.deleted:
            raise _not_found("video not found")
        task.deleted = True
        return JSONResponse({"id": task.id, "object": "video.deleted", "deleted": True})

    async def openai_list(self, request: Request, entry: dict[str, Any]) -> Response:
        try:
            limit = int(request.query_params.get("limit", "20"))
        except ValueError:
            raise _bad_request("limit must be an integer") from None
        if not 1 <= limit <= 100:
            raise _bad_request("limit must be between 1 and 100")
        order = request.query_params.get("order", "desc")
        if order not in {"asc", "desc"}:
            raise _bad_request("order must be asc or desc")
        videos = [t for t in self.store.tasks.values() if t.family == "openai" and not t.deleted]
        if order == "desc":
            videos.reverse()
        after = request.query_params.get("after")
        if after is not None:
            ids = [video.id for video in videos]
            if after not in ids:
                raise _bad_request("after refers to an unknown video")
            videos = videos[ids.index(after) + 1 :]
        page = videos[:limit]
        now = self.clock()
        data = [openai_video(video, video.phase(now), self.config.result_ttl) for video in page]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
                "has_more": len(videos) > limit,
            }
        )

    async def openai_remix(self, request: Request, entry: dict[str, Any]) -> Response:
        source = self.store.tasks.get(self._path_id(request, "video_id", 4))
        if source is None or source.family != "openai" or source.deleted:
            raise _not_found("video not found")
        body = await self._json(request, entry)
        if source.phase(self.clock()).state != "completed":
            raise _bad_request("only completed videos can be remixed")
        prompt = _prompt(body)
        if not prompt:
            raise _bad_request("prompt is required")
        directives = self._directives(prompt)
        self._count_create(prompt)
        fields = {"model": source.model, "prompt": prompt, "seconds": source.seconds}
        fields["size"] = source.size
        shape = validate_openai_video(fields)
        task = self._new_task("openai", shape, directives, entry["body"], remixed_from=source.id)
        return JSONResponse(openai_video(task, task.phase(self.clock()), self.config.result_ttl))

    # ----- official provider APIs: ByteDance Ark, Google Gemini (Veo), Kling ------------------

    async def _create_official(
        self,
        request: Request,
        entry: dict[str, Any],
        family: TaskFamily,
        body: dict[str, Any],
        prompt: str,
        validate: Callable[[dict[str, Any]], tuple[VideoShape, dict[str, Any]]],
        reject: Callable[[str], Response],
        respond: Callable[[Task], Response],
        task_id: str | None = None,
    ) -> Response:
        """Directives, faults, validation and the new task, shared by the official APIs."""
        directives = self._directives(prompt)
        self._count_create(prompt)
        fault = await self._before_create(request, prompt, directives)
        if fault is not None and fault != "accepted-500":
            return self._fault(fault, directives)
        try:
            shape, echo = validate(body)
        except Rejected as exc:
            return reject(str(exc))
        task = self._new_task(
            family, shape, directives, entry.get("body", {}), echo=echo, task_id=task_id
        )
        entry["task_id"] = task.id
        if fault == "accepted-500":
            return self._fault(fault, directives)
        return respond(task)

    async def _answered_poll(self, task: Task) -> Response | None:
        fault = await self._poll_fault(task)
        if fault is not None:
            return fault
        task.answered_polls += 1
        return None

    def _completed_media_url(self, request: Request, task: Task, state: str) -> str | None:
        if state != "completed":
            return None
        spec = self.store.media[task.media_id]
        return self._media_url(request, spec.id, spec.fmt)

    # Ark

    async def ark_create(self, request: Request, entry: dict[str, Any]) -> Response:
        body = await self._json(request, entry)
        content = body.get("content")
        texts = [
            item.get("text")
            for item in (content if isinstance(content, list) else [])
            if isinstance(item, dict) and item.get("type") == "text"
        ]
        prompt = next((text for text in texts if isinstance(text, str)), "")
        return await self._create_official(
            request,
            entry,
            "ark",
            body,
            prompt,
            validate_ark,
            lambda reason: ark_error(400, "InvalidParameter", reason),
            lambda task: JSONResponse({"id": task.id}),
        )

    async def ark_poll(self, request: Request, entry: dict[str, Any]) -> Response:
        task = self._task_for_poll(self._path_id(request, "task_id", 6), "ark")
        entry["task_id"] = task.id
        fault = await self._answered_poll(task)
        if fault is not None:
            return fault
        phase = task.phase(self.clock())
        url = self._completed_media_url(request, task, phase.state)
        return JSONResponse(ark_task(task, phase, media_url=url))

    async def ark_delete(self, request: Request, entry: dict[str, Any]) -> Response:
        """Ark cancels a queued task and deletes a finished one; a running one is refused."""
        task = self.store.tasks.get(self._path_id(request, "task_id", 6))
        if task is None or task.family != "ark" or task.deleted:
            raise Reply(ark_error(404, "ResourceNotFound", "The specified task is not found."))
        entry["task_id"] = task.id
        now = self.clock()
        state = task.phase(now).state
        if state == "queued":
            task.cancel(now)
        elif state == "in_progress":
            return ark_error(
                409, "OperationDenied", "A running task cannot be cancelled or deleted."
            )
        else:
            task.deleted = True
        return JSONResponse({})

    # Gemini (Veo through predictLongRunning)

    async def gemini_create(self, request: Request, entry: dict[str, Any]) -> Response:
        target: str = request.path_params["target"]
        if not target.endswith(GEMINI_OPERATION):
            return google_error(404, f"Method not found: {target}", "NOT_FOUND")
        model = target.removesuffix(GEMINI_OPERATION)
        if not model.startswith("veo"):
            return google_error(
                404,
                f"models/{model} is not found for API version v1beta, or is not supported "
                "for predictLongRunning.",
                "NOT_FOUND",
            )
        body = await self._json(request, entry)
        instances = body.get("instances")
        first = instances[0] if isinstance(instances, list) and instances else None
        prompt = _prompt(first) if isinstance(first, dict) else ""
        # Operation names are paths: ids stay plain (the weird-id directive does not apply).
        operation = secrets.token_hex(8)

        def respond(task: Task) -> Response:
            return JSONResponse({"name": f"models/{task.model}/operations/{task.id}"})

        return await self._create_official(
            request,
            entry,
            "gemini",
            body,
            prompt,
            lambda fields: validate_gemini(model, fields),
            lambda reason: google_error(400, reason, "INVALID_ARGUMENT"),
            respond,
            task_id=operation,
        )

    async def gemini_operation(self, request: Request, entry: dict[str, Any]) -> Response:
        model: str = request.path_params["model"]
        task = self._task_for_poll(self._path_id(request, "operation", 5), "gemini")
        if task.model != model:
            raise Reply(google_error(404, "Operation not found.", "NOT_FOUND"))
        entry["task_id"] = task.id
        fault = await self._answered_poll(task)
        if fault is not None:
            return fault
        phase = task.phase(self.clock())
        uri = None
        if phase.state == "completed":
            base = self.config.public_base_url or str(request.base_url)
            uri = f"{base.rstrip('/')}/v1beta/files/{task.media_id}:download?alt=media"
        name = f"models/{task.model}/operations/{task.id}"
        return JSONResponse(gemini_operation(task, phase, name=name, video_uri=uri))

    async def gemini_file(self, request: Request, entry: dict[str, Any]) -> Response:
        """The Files API: metadata, or the bytes with `:download?alt=media` (key required)."""
        name: str = request.path_params["name"]
        media_id, download, _ = name.partition(":download")
        self.store.stats.media_requests += 1
        spec = self.store.media.get(media_id)
        if spec is None or spec.task_id is None or name not in (media_id, f"{media_id}:download"):
            return google_error(404, "File not found.", "NOT_FOUND")
        available = self._media_available(spec, self.clock())
        if not download:
            state = "ACTIVE" if available else "FAILED"
            return JSONResponse(
                {"name": f"files/{media_id}", "mimeType": "video/mp4", "state": state}
            )
        if request.query_params.get("alt") != "media":
            return google_error(400, "Download requires alt=media.", "INVALID_ARGUMENT")
        if not available:
            return google_error(404, "File not found or expired.", "NOT_FOUND")
        data = await self._media_bytes(spec)
        chunked = self.config.chunked if spec.chunked is None else spec.chunked
        return media_response(request, data, CONTENT_TYPES["mp4"], chunked=chunked)

    # Kling

    def kling_create(self, endpoint: str) -> Handler:
        async def handler(request: Request, entry: dict[str, Any]) -> Response:
            body = await self._json(request, entry)

            def respond(task: Task) -> Response:
                stamp = int(task.created_at * 1000)
                data = {
                    "task_id": task.id,
                    "task_status": "submitted",
                    "created_at": stamp,
                    "updated_at": stamp,
                }
                return JSONResponse(kling_envelope(data, str(uuid.uuid4())))

            return await self._create_official(
                request,
                entry,
                "kling",
                body,
                _prompt(body),
                lambda fields: validate_kling(fields, mode=endpoint),
                lambda reason: kling_error(400, 1201, reason),
                respond,
            )

        return handler

    def kling_poll(self, endpoint: str) -> Handler:
        async def handler(request: Request, entry: dict[str, Any]) -> Response:
            task = self._task_for_poll(self._path_id(request, "task_id", 4), "kling")
            if task.echo.get("endpoint") != endpoint:
                # Kling only finds a task under the endpoint that created it.
                raise Reply(kling_error(404, 1203, "task not found"))
            entry["task_id"] = task.id
            fault = await self._answered_poll(task)
            if fault is not None:
                return fault
            phase = task.phase(self.clock())
            url = self._completed_media_url(request, task, phase.state)
            payload = kling_task(task, phase, media_url=url, request_id=str(uuid.uuid4()))
            return JSONResponse(payload)

        return handler

    # ----- media -----------------------------------------------------------------------------

    async def media(self, request: Request, entry: dict[str, Any]) -> Response:
        name: str = request.path_params["name"]
        media_id, _, ext = name.rpartition(".")
        ext = "jpg" if ext == "jpeg" else ext
        self.store.stats.media_requests += 1
        spec = self.store.media.get(media_id)
        if spec is None or spec.fmt != ext or not self._media_available(spec, self.clock()):
            raise _not_found("media not found or expired")
        data = await self._media_bytes(spec)
        chunked = self.config.chunked if spec.chunked is None else spec.chunked
        return media_response(request, data, CONTENT_TYPES[spec.fmt], chunked=chunked)

    # ----- control surface -------------------------------------------------------------------

    async def health(self, request: Request, entry: dict[str, Any]) -> Response:
        return JSONResponse({"status": "ok", "simulator": True})

    async def control_get_config(self, request: Request, entry: dict[str, Any]) -> Response:
        return JSONResponse(self.config.public_dump())

    async def control_set_config(self, request: Request, entry: dict[str, Any]) -> Response:
        patch = await self._json(request, entry)
        try:
            self.configure(**patch)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise _bad_request(f"invalid config {where}: {first['msg']}") from None
        return JSONResponse(self.config.public_dump())

    async def control_reset(self, request: Request, entry: dict[str, Any]) -> Response:
        self.reset()
        return JSONResponse({"reset": True})

    async def control_stats(self, request: Request, entry: dict[str, Any]) -> Response:
        stats = self.store.stats.as_dict(request.query_params.get("prompt"))
        if request.query_params.get("tasks"):
            stats["tasks"] = {
                task.id: {"polls": task.polls, "answered_polls": task.answered_polls}
                for task in self.store.tasks.values()
            }
        return JSONResponse(stats)

    async def control_requests(self, request: Request, entry: dict[str, Any]) -> Response:
        limit = int(request.query_params.get("limit", "50") or 50)
        items = list(self.store.requests)[-limit:] if limit > 0 else []
        return JSONResponse({"requests": items})

    def task_view(self, task: Task, request: Request) -> dict[str, Any]:
        phase = task.phase(self.clock())
        spec = self.store.media[task.media_id]
        return {
            "id": task.id,
            "family": task.family,
            "model": task.model,
            "prompt": task.prompt,
            "state": phase.state,
            "progress": phase.progress,
            "created_at": task.created_at,
            "finished_at": phase.finished_at,
            "duration": task.duration,
            "polls": task.polls,
            "answered_polls": task.answered_polls,
            "pending_poll_faults": list(task.pending_poll_faults),
            "deleted": task.deleted,
            "media_url": self._media_url(request, spec.id, spec.fmt),
            "media_available": self._media_available(spec, self.clock()),
            "request": task.request,
            "directives": asdict(task.directives),
        }

    async def control_task(self, request: Request, entry: dict[str, Any]) -> Response:
        task = self.store.tasks.get(request.path_params["task_id"])
        if task is None:
            raise _not_found()
        return JSONResponse(self.task_view(task, request))

    async def control_expire_media(self, request: Request, entry: dict[str, Any]) -> Response:
        task = self.store.tasks.get(request.path_params["task_id"])
        if task is None:
            raise _not_found()
        task.media_expired = True
        return JSONResponse(self.task_view(task, request))

    # ----- routing ---------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        def route(
            path: str,
            handler: Handler,
            methods: list[str],
            kind: str = "api",
            auth: AuthScheme = "bearer",
        ) -> Route:
            return Route(path, self.endpoint(handler, kind, auth), methods=methods)

        kling = [
            route(f"/v1/videos/{name}", self.kling_create(name), ["POST"], auth="kling")
            for name in KLING_ENDPOINTS
        ] + [
            route(
                f"/v1/videos/{name}/{{task_id:path}}", self.kling_poll(name), ["GET"], auth="kling"
            )
            for name in KLING_ENDPOINTS
        ]

        return [
            route("/health", self.health, ["GET"], kind="public"),
            route("/v2/videos/generations", self.sora_create, ["POST"]),
            route("/v2/videos/generations/{task_id:path}", self.sora_poll, ["GET"]),
            route("/v2/videos/generations/{task_id:path}", self.sora_cancel, ["DELETE"]),
            route("/v1/video/veo/text-to-video", self.veo_text, ["POST"]),
            route("/v1/video/veo/image-to-video", self.veo_image, ["POST"]),
            route("/v1/video/veo/tasks/{task_id:path}", self.veo_poll, ["GET"]),
            route("/v1/video/veo/tasks/{task_id:path}", self.veo_cancel, ["DELETE"]),
            route("/v1/video/seedance/text-to-video", self.seedance_create("text"), ["POST"]),
            route("/v1/video/seedance/image-to-video", self.seedance_create("image"), ["POST"]),
            route("/v1/video/seedance/frames-to-video", self.seedance_create("frames"), ["POST"]),
            route("/v1/video/seedance/tasks/{task_id:path}", self.seedance_poll, ["GET"]),
            route("/v1/video/seedance/tasks/{task_id:path}", self.seedance_cancel, ["DELETE"]),
            route("/v1/images/generations", self.images_generations, ["POST"]),
            route("/v1/images/edits", self.images_edits, ["POST"]),
            route(ARK_TASKS, self.ark_create, ["POST"]),
            route(f"{ARK_TASKS}/{{task_id:path}}", self.ark_poll, ["GET"]),
            route(f"{ARK_TASKS}/{{task_id:path}}", self.ark_delete, ["DELETE"]),
            route("/v1beta/models/{target}", self.gemini_create, ["POST"], auth="goog"),
            route(
                "/v1beta/models/{model}/operations/{operation:path}",
                self.gemini_operation,
                ["GET"],
                auth="goog",
            ),
            route("/v1beta/files/{name}", self.gemini_file, ["GET", "HEAD"], auth="goog"),
            # Kling shares the /v1/videos prefix with OpenAI: its routes must come first.
            *kling,
            route("/v1/videos", self.openai_create, ["POST"]),
            route("/v1/videos", self.openai_list, ["GET"]),
            route("/v1/videos/{video_id:path}/content", self.openai_content, ["GET", "HEAD"]),
            route("/v1/videos/{video_id:path}/remix", self.openai_remix, ["POST"]),
            route("/v1/videos/{video_id:path}", self.openai_get, ["GET"]),
            route("/v1/videos/{video_id:path}", self.openai_delete, ["DELETE"]),
            route("/media/{name}", self.media, ["GET", "HEAD"], kind="public"),
            route("/_sim/config", self.control_get_config, ["GET"], "control"),
            route("/_sim/config", self.control_set_config, ["POST"], "control"),
            route("/_sim/reset", self.control_reset, ["POST"], "control"),
            route("/_sim/stats", self.control_stats, ["GET"], "control"),
            route("/_sim/requests", self.control_requests, ["GET"], "control"),
            route(
                "/_sim/tasks/{task_id:path}/expire-media",
                self.control_expire_media,
                ["POST"],
                "control",
            ),
            route("/_sim/tasks/{task_id:path}", self.control_task, ["GET"], "control"),
        ]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing and body-parsing errors in the same JSON shape as everything else."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "error"
    message = {404: "not found", 405: "method not allowed"}.get(status, str(detail))
    return openai_error(status, message, "invalid_request_error")


def create_simulator_app(
    config: SimulatorConfig | None = None, *, clock: Clock | None = None
) -> Starlette:
    """The simulator as an ASGI app; its state is reachable as `app.state.simulator`.

    `clock` (epoch seconds) replaces `time.time`, so tests can move time instead of waiting.
    """
    simulator = Simulator(config or SimulatorConfig(), clock=clock)
    app = Starlette(
        routes=simulator.routes(),
        exception_handlers={HTTPException: _http_error},
    )
    app.state.simulator = simulator
    return app
