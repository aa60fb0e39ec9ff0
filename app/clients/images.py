"""OpenAI-style images: `POST /v1/images/generations` (JSON) and `/v1/images/edits` (multipart).

Both answer synchronously with `{created, data: [{url} | {b64_json}, ...]}`, which can take
minutes for large images, so this adapter uses a long read timeout of its own. `submit` returns
the finished (or failed) status; there is nothing to poll or cancel upstream.

Edits carry one or more reference images as files under `image` (some aggregators want
`image[]`: set `image_field`) and an optional `mask`. An http(s) URL image has no bytes here, so
it is sent as a text field of the same name for upstreams that accept URLs.
"""

from __future__ import annotations

from typing import Any

import httpx

from app.clients.base import (
    GenerationRequest,
    InputImage,
    MediaKind,
    TaskStatus,
    UpstreamCredentials,
    UpstreamFailure,
    UpstreamStatus,
    UpstreamSubmission,
)
from app.clients.errors import UpstreamRejected
from app.clients.http import HttpAdapter, MultipartPart, as_int, file_part, form_part
from app.clients.normalize import compact_raw, normalize_status
from app.clients.retry import RetryPolicy

GENERATIONS_PATH = "/v1/images/generations"
EDITS_PATH = "/v1/images/edits"
# Large images can take minutes upstream; never give up before this many seconds of silence.
MIN_READ_TIMEOUT = 600.0
# Sent only when the request has them; the catalog decides what each model accepts.
_OPTIONAL_PARAMS = (
    "size",
    "quality",
    "response_format",
    "aspect_ratio",
    "image_size",
    "style",
    "background",
    "output_format",
    "output_compression",
    "moderation",
    "seed",
    "negative_prompt",
)


class ImagesAdapter(HttpAdapter):
    name = "images"
    supports_cancel = False
    synchronous = True

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        image_field: str = "image",
        min_read_timeout: float = MIN_READ_TIMEOUT,
        poll_retry: RetryPolicy | None = None,
        submit_retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        super().__init__(http, poll_retry=poll_retry, submit_retry=submit_retry, timeout=timeout)
        self.image_field = image_field
        if self.timeout is None:
            base = http.timeout
            self.timeout = httpx.Timeout(
                connect=base.connect,
                read=max(base.read or 0.0, min_read_timeout),
                write=max(base.write or 0.0, min_read_timeout),
                pool=base.pool,
            )

    # ---------------------------------------------------------------------------------------

    def generation_body(self, request: GenerationRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "n": request.n}
        for key in _OPTIONAL_PARAMS:
            value = request.params.get(key)
            if value is not None:
                body[key] = as_int(value) if key in ("seed", "output_compression") else value
        return body

    def edit_parts(self, request: GenerationRequest) -> list[MultipartPart]:
        parts = [form_part(key, value) for key, value in self.generation_body(request).items()]
        for index, image in enumerate(request.images):
            parts.append(self._image_part(self.image_field, image, f"image{index + 1}"))
        if request.mask is not None:
            parts.append(self._image_part("mask", request.mask, "mask"))
        return parts

    @staticmethod
    def _image_part(field: str, image: InputImage, default_name: str) -> MultipartPart:
        file = image.as_file(default_name)
        if file is not None:
            return file_part(field, file)
        if image.url:
            return form_part(field, image.url)
        raise UpstreamRejected(f"the {field} image has neither bytes nor a URL", upstream="images")

    # ---------------------------------------------------------------------------------------

    async def submit(
        self, request: GenerationRequest, credentials: UpstreamCredentials
    ) -> UpstreamSubmission:
        if request.images or request.mask is not None:
            payload = await self.send_create(
                "POST", EDITS_PATH, credentials, multipart=self.edit_parts(request)
            )
        else:
            payload = await self.send_create(
                "POST", GENERATIONS_PATH, credentials, json_body=self.generation_body(request)
            )
        upstream_id = self.optional_task_id_from(payload, credentials)
        status = normalize_status(payload, kind=request.kind, secret=credentials.api_key)
        if not status.status.is_terminal:
            # A synchronous endpoint that returned neither images nor an error produced nothing.
            status = UpstreamStatus(
                status=TaskStatus.FAILED,
                error=UpstreamFailure("no_result", "the upstream returned no image"),
                upstream_status=status.upstream_status,
                raw=status.raw,
            )
        return UpstreamSubmission(upstream_id=upstream_id, status=status, raw=compact_raw(payload))

    async def poll(
        self,
        upstream_id: str,
        credentials: UpstreamCredentials,
        *,
        kind: MediaKind = "image",
        previous: TaskStatus | None = None,
    ) -> UpstreamStatus:
        raise UpstreamRejected(
            "image generation is synchronous: the result came with the submit answer",
            upstream=self.name,
            reached_upstream=False,
        )

    async def cancel(self, upstream_id: str, credentials: UpstreamCredentials) -> None:
        return None
