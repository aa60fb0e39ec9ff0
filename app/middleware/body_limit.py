"""A ceiling on request body size, for every route (`REQUEST_MAX_BYTES`).

Routes parse bodies themselves (JSON into memory, multipart spooled to disk), and the per-file
limits (`UPLOAD_MAX_BYTES`) only apply once a file has been read: without a ceiling one
request could fill the memory or the disk before any check ran. A declared `Content-Length`
over the limit is refused before a byte is read; a chunked body is counted as it arrives and
refused as soon as it passes the limit. Either way the answer is a 413 in the shape of the
surface that was called (ours, or OpenAI's under `/v1/`), and nothing was written.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.openai.errors import openai_error_response
from app.core.errors import PayloadTooLarge, error_response

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyTooLarge(PayloadTooLarge):
    code = "request_too_large"


def _message(limit: int) -> str:
    return (
        f"The request body is larger than this server accepts ({limit} bytes, "
        "REQUEST_MAX_BYTES); send large reference images as URLs or as multipart files"
    )


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        limit = self.max_bytes
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Stops whoever is reading the body; what the app answers to that (a 400
                    # "could not parse", usually) is replaced by the 413 below.
                    exceeded = True
                    raise BodyTooLarge(_message(limit))
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to the cut-off body; ours is sent instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = _message(self.max_bytes)
        # Connection: close, since the unread body is still on the wire.
        headers = {"Connection": "close"}
        if str(scope["path"]).startswith("/v1/"):
            response = openai_error_response(413, message, code=BodyTooLarge.code, headers=headers)
        else:
            response = error_response(
                413, BodyTooLarge.code, message, {"max_bytes": self.max_bytes}, headers
            )
        await response(scope, receive, send)
