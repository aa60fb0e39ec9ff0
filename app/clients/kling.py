"""Kling, official API: text- and image-to-video tasks.

- Create: `POST /v1/videos/text2video`, or `/v1/videos/image2video` when an image is given, with
  `{model_name, prompt, image?, image_tail?, duration, aspect_ratio, mode, negative_prompt,
  cfg_scale, callback_url?}` -> `{code: 0, message, data: {task_id, task_status: "submitted"}}`.
- Status: `GET /v1/videos/{text2video|image2video}/{task_id}` -> `{code, message, data:
  {task_id, task_status: submitted | processing | succeed | failed, task_status_msg,
  task_result: {videos: [{id, url, duration}]}, created_at, updated_at}}` (milliseconds).
- No cancel endpoint: `cancel` is a no-op.

A task is only found under the endpoint that created it, so the id we hand the engine carries
it: `"image2video:<task_id>"` or `"text2video:<task_id>"` (a bare id is read as text2video).

Authentication: `credentials.api_key` holds `ACCESS_KEY:SECRET_KEY`. Every call carries a fresh
HS256 JWT (`iss` = access key, `exp` = now + 30 min, `nbf` = now - 5 s) as a bearer token; the
secret key never leaves this process and neither it nor the token is ever logged (the error
scrubber also removes anything JWT-shaped). Images go as URLs or raw base64: Kling refuses the
`data:` prefix.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import jwt

from app.clients.ark import with_finish_time
from app.clients.base import (
    GenerationRequest,
    InputImage,
    MediaKind,
    TaskStatus,
    UpstreamCredentials,
    UpstreamStatus,
    UpstreamSubmission,
)
from app.clients.errors import UpstreamAuthError
from app.clients.http import HttpAdapter, as_int, quote_id, submission_status
from app.clients.normalize import compact_raw

VIDEOS_PATH = "/v1/videos"
TEXT2VIDEO = "text2video"
IMAGE2VIDEO = "image2video"
ENDPOINTS = (TEXT2VIDEO, IMAGE2VIDEO)
TOKEN_TTL_SECONDS = 1800
# Clock skew allowance: the token is valid from a few seconds before it was minted.
TOKEN_NOT_BEFORE_SKEW = 5
_TEXT_PARAMS = ("negative_prompt", "mode")
_T2V_ONLY = ("aspect_ratio",)


@dataclass(frozen=True)
class KlingKeys:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # never print the secret
        return f"KlingKeys(access_key={self.access_key!r}, secret_key='<redacted>')"


def split_keys(api_key: str, *, adapter: str = "kling") -> KlingKeys:
    """`ACCESS_KEY:SECRET_KEY` -> the pair; anything else is refused without echoing it."""
    access_key, sep, secret_key = api_key.partition(":")
    if not sep or not access_key.strip() or not secret_key.strip():
        raise UpstreamAuthError(
            "the Kling API key must be given as ACCESS_KEY:SECRET_KEY",
            upstream=adapter,
            reached_upstream=False,
            retryable=False,
        )
    return KlingKeys(access_key.strip(), secret_key.strip())


def mint_token(keys: KlingKeys, *, now: float | None = None) -> str:
    """The HS256 JWT Kling expects, valid for `TOKEN_TTL_SECONDS`."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": keys.access_key,
        "exp": issued + TOKEN_TTL_SECONDS,
        "nbf": issued - TOKEN_NOT_BEFORE_SKEW,
    }
    return jwt.encode(claims, keys.secret_key, algorithm="HS256", headers={"typ": "JWT"})


def split_upstream_id(upstream_id: str) -> tuple[str, str]:
    """`"image2video:abc"` -> ("image2video", "abc"); a bare id is a text2video task."""
    endpoint, sep, task_id = upstream_id.partition(":")
    if sep and endpoint in ENDPOINTS and task_id:
        return endpoint, task_id
    return TEXT2VIDEO, upstream_id


def image_value(image: InputImage) -> str | None:
    """A URL as is; bytes or a data URI as bare base64 (Kling refuses the `data:` prefix)."""
    if image.data is not None:
        return base64.b64encode(image.data).decode("ascii")
    if image.url and image.is_data_uri:
        return image.url.partition(",")[2].strip() or None
    return image.url


def _frames(images: tuple[InputImage, ...]) -> tuple[InputImage | None, InputImage | None]:
    first = next((image for image in images if image.role == "first_frame"), None)
    last = next((image for image in images if image.role == "last_frame"), None)
    rest = [image for image in images if image is not first and image is not last]
    if first is None and rest:
        first = rest.pop(0)
    if last is None and len(images) >= 2 and rest:
        last = rest.pop(0)
    return first, last


class KlingAdapter(HttpAdapter):
    name = "kling"
    supports_cancel = False
    synchronous = False

    def auth_headers(self, credentials: UpstreamCredentials) -> dict[str, str]:
        keys = split_keys(self.checked_key(credentials), adapter=self.name)
        return {"Authorization": f"Bearer {mint_token(keys)}"}

    @staticmethod
    def endpoint(request: GenerationRequest) -> str:
        return IMAGE2VIDEO if request.images else TEXT2VIDEO

    def create_body(self, request: GenerationRequest) -> dict[str, Any]:
        params = request.params
        endpoint = self.endpoint(request)
        body: dict[str, Any] = {"model_name": request.model}
        if request.prompt:
            body["prompt"] = request.prompt
        if endpoint == IMAGE2VIDEO:
            first, last = _frames(request.images)
            if first is not None:
                body["image"] = image_value(first)
            if last is not None:
                body["image_tail"] = image_value(last)
        else:
            for key in _T2V_ONLY:
                if params.get(key) is not None:
                    body[key] = params[key]
        for key in _TEXT_PARAMS:
            if params.get(key) is not None:
                body[key] = params[key]
        if params.get("duration") is not None:
            # Kling's enum is a string ("5", "10"); 5 and 5.0 must not be refused.
            body["duration"] = str(as_int(params["duration"]))
        if params.get("cfg_scale") is not None:
            body["cfg_scale"] = _number(params["cfg_scale"])
        callback_url = request.callback_url or params.get("callback_url")
        if callback_url:
            body["callback_url"] = callback_url
        return body

    def status_path(self, upstream_id: str) -> str:
        endpoint, task_id = split_upstream_id(upstream_id)
        return f"{VIDEOS_PATH}/{endpoint}/{quote_id(task_id)}"

    async def submit(
        self, request: GenerationRequest, credentials: UpstreamCredentials
    ) -> UpstreamSubmission:
        endpoint = self.endpoint(request)
        payload = await self.send_create(
            "POST",
            f"{VIDEOS_PATH}/{endpoint}",
            credentials,
            json_body=self.create_body(request),
        )
        task_id = self.task_id_from(payload, credentials)
        status = submission_status(payload, kind=request.kind, secret=credentials.api_key)
        return UpstreamSubmission(
            upstream_id=f"{endpoint}:{task_id}",
            status=status,
            raw=compact_raw(payload) if isinstance(payload, dict) else None,
        )

    async def poll(
        self,
        upstream_id: str,
        credentials: UpstreamCredentials,
        *,
        kind: MediaKind = "video",
        previous: TaskStatus | None = None,
    ) -> UpstreamStatus:
        status = await self.poll_path(
            self.status_path(upstream_id), credentials, kind=kind, previous=previous
        )
        return with_finish_time(status)

    async def cancel(self, upstream_id: str, credentials: UpstreamCredentials) -> None:
        return None


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value
