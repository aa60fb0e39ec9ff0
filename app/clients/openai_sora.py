"""OpenAI Sora, official API: `POST /v1/videos` (multipart), `GET /v1/videos/{id}`,
`GET /v1/videos/{id}/content` (the MP4, behind the same bearer key), `DELETE /v1/videos/{id}`.

The video object carries no result URL: once it is `completed` the result is the `/content`
URL, marked `requires_auth` so the media downloader sends the key with it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from app.clients.base import (
    GenerationRequest,
    MediaKind,
    TaskStatus,
    UpstreamCredentials,
    UpstreamResult,
    UpstreamStatus,
    UpstreamSubmission,
)
from app.clients.errors import UpstreamRejected
from app.clients.http import (
    HttpAdapter,
    MultipartPart,
    file_part,
    form_part,
    join_url,
    quote_id,
    submission_status,
)
from app.clients.normalize import compact_raw

VIDEOS_PATH = "/v1/videos"
# Our catalog speaks aspect ratios; the official API wants pixel sizes.
_SIZES = {"16:9": "1280x720", "9:16": "720x1280"}
_HD_SIZES = {"16:9": "1792x1024", "9:16": "1024x1792"}


class OpenAISoraAdapter(HttpAdapter):
    name = "openai_sora"
    supports_cancel = True
    supports_remix = True
    synchronous = False

    def video_path(self, upstream_id: str) -> str:
        return f"{VIDEOS_PATH}/{quote_id(upstream_id)}"

    def content_url(self, upstream_id: str, credentials: UpstreamCredentials) -> str:
        return join_url(credentials.base_url, f"{self.video_path(upstream_id)}/content")

    def create_parts(self, request: GenerationRequest) -> list[MultipartPart]:
        params = request.params
        parts = [form_part("model", request.model), form_part("prompt", request.prompt)]
        seconds = params.get("seconds", params.get("duration"))
        if seconds is not None:
            parts.append(form_part("seconds", seconds))
        size = params.get("size") or self._size(params)
        if size:
            parts.append(form_part("size", size))
        if request.images:
            image = request.images[0]
            file = image.as_file("input_reference")
            if file is not None:
                parts.append(file_part("input_reference", file))
            elif image.url:
                parts.append(form_part("input_reference", image.url))
        return parts

    @staticmethod
    def _size(params: dict[str, Any]) -> str | None:
        ratio = params.get("aspect_ratio")
        if not isinstance(ratio, str):
            return None
        table = _HD_SIZES if params.get("hd") in (True, "true", "1", 1) else _SIZES
        return table.get(ratio)

    async def submit(
        self, request: GenerationRequest, credentials: UpstreamCredentials
    ) -> UpstreamSubmission:
        remix_of = request.params.get("remix_video_id")
        if remix_of:
            # A remix is created from the upstream's own copy of the source video.
            payload = await self.send_create(
                "POST",
                f"{self.video_path(str(remix_of))}/remix",
                credentials,
                json_body={"prompt": request.prompt},
            )
        else:
            payload = await self.send_create(
                "POST", VIDEOS_PATH, credentials, multipart=self.create_parts(request)
            )
        upstream_id = self.task_id_from(payload, credentials)
        status = submission_status(payload, kind=request.kind, secret=credentials.api_key)
        return UpstreamSubmission(
            upstream_id=upstream_id,
            status=self._with_content(status, upstream_id, credentials),
            raw=compact_raw(payload),
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
            self.video_path(upstream_id),
            credentials,
            kind=kind,
            previous=previous,
            require_results=False,
        )
        return self._with_content(status, upstream_id, credentials)

    def _with_content(
        self, status: UpstreamStatus, upstream_id: str, credentials: UpstreamCredentials
    ) -> UpstreamStatus:
        if status.status is not TaskStatus.COMPLETED or status.results:
            return status
        result = UpstreamResult(
            url=self.content_url(upstream_id, credentials),
            content_type="video/mp4",
            requires_auth=True,
        )
        return replace(status, results=(result,))

    async def cancel(self, upstream_id: str, credentials: UpstreamCredentials) -> None:
        """DELETE the video. Already gone (404) counts as cancelled."""
        try:
            await self.send_idempotent(
                "DELETE", self.video_path(upstream_id), credentials, allow_empty=True
            )
        except UpstreamRejected as exc:
            if exc.status_code != 404:
                raise
