"""Google Veo through the Gemini API (a long-running operation per video).

- Create: `POST /v1beta/models/{model}:predictLongRunning` with `{instances: [{prompt, image?:
  {bytesBase64Encoded, mimeType}, lastFrame?, referenceImages?}], parameters: {aspectRatio,
  durationSeconds, negativePrompt, resolution, …}}` -> `{name: "models/…/operations/…"}`.
- Status: `GET /v1beta/{name}` -> `{name, done?, error?, response: {generateVideoResponse:
  {generatedSamples: [{video: {uri}}]}}}`. `done` is absent while running and there is no
  progress figure; the operation name is the task id.
- No cancel endpoint for these operations: `cancel` is a no-op.

Authentication is the `x-goog-api-key` header, never a bearer token. The sample URI
(`…/v1beta/files/…:download?alt=media`) needs the same header: results on the API's own origin
are marked `requires_auth` and `download_headers` gives the downloader that header. A URI on
another origin is fetched without it, so the key never travels to a third party.

Google answers a wrong key with 400 `API_KEY_INVALID` (not 401): that becomes
`UpstreamAuthError` like any other rejected key. Images must be sent as bytes: the API cannot
fetch an http(s) URL, so such a request is refused before anything is sent.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlsplit

from app.clients.base import (
    GenerationRequest,
    InputImage,
    MediaKind,
    TaskStatus,
    UpstreamCredentials,
    UpstreamStatus,
    UpstreamSubmission,
    decode_data_uri,
    guess_image_type,
)
from app.clients.errors import UpstreamAuthError, UpstreamMalformed, UpstreamRejected
from app.clients.http import HttpAdapter, as_int, submission_status
from app.clients.normalize import compact_raw

API_PREFIX = "/v1beta"
KEY_HEADER = "x-goog-api-key"
# Our parameter names -> Gemini's `parameters` fields.
_PARAMETERS = {
    "aspect_ratio": "aspectRatio",
    "negative_prompt": "negativePrompt",
    "resolution": "resolution",
    "person_generation": "personGeneration",
}
_INT_PARAMETERS = {"duration": "durationSeconds", "seed": "seed"}
_KEY_ERROR_MARKERS = ("api key not valid", "api_key_invalid", "api key expired")


def encoded_image(image: InputImage, *, adapter: str) -> dict[str, str]:
    """`{bytesBase64Encoded, mimeType}`; an http(s) URL cannot be sent (the API won't fetch it)."""
    if image.data is not None:
        data = image.data
        mime = image.content_type or guess_image_type(data, default="image/png")
    elif image.url and image.is_data_uri:
        decoded = decode_data_uri(image.url)
        if decoded is None:
            raise UpstreamRejected(
                "the reference image is not a base64 data URI",
                upstream=adapter,
                reached_upstream=False,
            )
        data, uri_type = decoded
        mime = image.content_type or uri_type or guess_image_type(data, default="image/png")
    else:
        raise UpstreamRejected(
            "the Gemini API needs the reference image itself (an upload or a data URI), not a link",
            upstream=adapter,
            reached_upstream=False,
        )
    return {"bytesBase64Encoded": base64.b64encode(data).decode("ascii"), "mimeType": mime}


def operation_path(name: str) -> str:
    """`/v1beta/{name}` with each segment encoded; a name that could leave the API is refused."""
    segments = name.strip().split("/")
    if len(segments) < 2 or any(part in ("", ".", "..") for part in segments):
        raise UpstreamMalformed("the upstream returned an unusable operation name")
    return API_PREFIX + "/" + "/".join(quote(part, safe="") for part in segments)


def model_path(model: str) -> str:
    bare = model.removeprefix("models/")
    return f"{API_PREFIX}/models/{quote(bare, safe='')}:predictLongRunning"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port or default
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class GeminiVeoAdapter(HttpAdapter):
    name = "gemini_veo"
    supports_cancel = False
    synchronous = False

    def auth_headers(self, credentials: UpstreamCredentials) -> dict[str, str]:
        return {KEY_HEADER: self.checked_key(credentials)}

    def create_body(self, request: GenerationRequest) -> dict[str, Any]:
        params = request.params
        instance: dict[str, Any] = {"prompt": request.prompt}
        first, last, references = self._images(request.images)
        if first is not None:
            instance["image"] = encoded_image(first, adapter=self.name)
        if last is not None:
            instance["lastFrame"] = encoded_image(last, adapter=self.name)
        if references:
            instance["referenceImages"] = [
                {"image": encoded_image(image, adapter=self.name), "referenceType": "asset"}
                for image in references
            ]
        parameters: dict[str, Any] = {}
        for ours, theirs in _PARAMETERS.items():
            if params.get(ours) is not None:
                parameters[theirs] = params[ours]
        for ours, theirs in _INT_PARAMETERS.items():
            if params.get(ours) is not None:
                parameters[theirs] = as_int(params[ours])
        if request.n > 1:
            parameters["sampleCount"] = request.n
        body: dict[str, Any] = {"instances": [instance]}
        if parameters:
            body["parameters"] = parameters
        return body

    @staticmethod
    def _images(
        images: tuple[InputImage, ...],
    ) -> tuple[InputImage | None, InputImage | None, list[InputImage]]:
        """(first frame, last frame, reference images) from roles, else by position."""
        references = [i for i in images if (i.role or "").startswith("reference")]
        framed = [i for i in images if i not in references]
        first = next((i for i in framed if i.role == "first_frame"), None)
        last = next((i for i in framed if i.role == "last_frame"), None)
        rest = [i for i in framed if i is not first and i is not last]
        if first is None and rest:
            first = rest.pop(0)
        if last is None and rest:
            last = rest.pop(0)
        return first, last, references

    async def request(
        self, method: str, path: str, credentials: UpstreamCredentials, **kwargs: Any
    ) -> Any:
        try:
            return await super().request(method, path, credentials, **kwargs)
        except UpstreamRejected as exc:
            text = f"{exc.message} {exc.body_snippet or ''}".lower()
            if exc.status_code == 400 and any(marker in text for marker in _KEY_ERROR_MARKERS):
                raise UpstreamAuthError(
                    f"credentials rejected: {exc.message}",
                    upstream=self.name,
                    status_code=exc.status_code,
                    body_snippet=exc.body_snippet,
                ) from None
            raise

    async def submit(
        self, request: GenerationRequest, credentials: UpstreamCredentials
    ) -> UpstreamSubmission:
        body = self.create_body(request)  # before sending: a link image is refused here
        payload = await self.send_create(
            "POST", model_path(request.model), credentials, json_body=body
        )
        name = self.task_id_from(payload, credentials)
        operation_path(name)  # refuse a name we could not poll now, not at the first poll
        status: UpstreamStatus | None = None
        if isinstance(payload, Mapping) and payload.get("done") is True:
            status = self._with_auth(
                submission_status(payload, kind=request.kind, secret=credentials.api_key),
                credentials,
            )
        else:
            # An operation that is not done has no progress figure: queued until polled.
            status = UpstreamStatus(status=TaskStatus.QUEUED, upstream_status="running")
        return UpstreamSubmission(
            upstream_id=name,
            status=status,
            raw=compact_raw(payload) if isinstance(payload, Mapping) else None,
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
            operation_path(upstream_id), credentials, kind=kind, previous=previous
        )
        return self._with_auth(status, credentials)

    async def cancel(self, upstream_id: str, credentials: UpstreamCredentials) -> None:
        return None

    def _with_auth(
        self, status: UpstreamStatus, credentials: UpstreamCredentials
    ) -> UpstreamStatus:
        """Mark results on the API's own origin as needing the key (the Files API does)."""
        if not status.results:
            return status
        api_origin = _origin(credentials.base_url)
        results = tuple(
            replace(
                result,
                requires_auth=True,
                content_type=result.content_type or "video/mp4",
            )
            if result.url is not None and _origin(result.url) == api_origin
            else result
            for result in status.results
        )
        return replace(status, results=results)
