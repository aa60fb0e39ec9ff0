"""The encrypted request payload of a task, and turning it into an adapter request."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from app.clients.base import GenerationRequest, InputImage, MediaKind


@dataclass
class TaskPayload:
    """Everything the user sent that the worker needs; stored only encrypted."""

    prompt: str
    params: dict[str, Any]
    upstream_model: str
    images: list[dict[str, Any]] = field(default_factory=list)  # {"url": …} or {"data_uri": …}
    mask: dict[str, Any] | None = None
    webhook_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "params": self.params,
            "upstream_model": self.upstream_model,
            "images": self.images,
            "mask": self.mask,
            "webhook_url": self.webhook_url,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskPayload:
        return cls(
            prompt=str(data.get("prompt", "")),
            params=dict(data.get("params") or {}),
            upstream_model=str(data.get("upstream_model", "")),
            images=list(data.get("images") or []),
            mask=data.get("mask"),
            webhook_url=data.get("webhook_url"),
        )


def image_ref(
    value: str, *, role: str | None = None, filename: str | None = None
) -> dict[str, Any]:
    ref: dict[str, Any] = {"data_uri": value} if value.startswith("data:") else {"url": value}
    if role:
        ref["role"] = role
    if filename:
        ref["filename"] = filename
    return ref


def data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


def _parse_data_uri(value: str) -> tuple[bytes, str | None]:
    header, _, encoded = value.partition(",")
    content_type = header[5:].split(";")[0] or None
    try:
        return base64.b64decode(encoded, validate=False), content_type
    except (binascii.Error, ValueError):
        return b"", content_type


def _input_image(ref: dict[str, Any], default_role: str | None = None) -> InputImage:
    role = ref.get("role") or default_role
    if "data_uri" in ref:
        data, content_type = _parse_data_uri(str(ref["data_uri"]))
        return InputImage(
            data=data, content_type=content_type, filename=ref.get("filename"), role=role
        )
    return InputImage(url=str(ref.get("url")), role=role)


def build_generation_request(kind: MediaKind, payload: TaskPayload) -> GenerationRequest:
    return GenerationRequest(
        kind=kind,
        model=payload.upstream_model,
        prompt=payload.prompt,
        params=dict(payload.params),
        images=tuple(_input_image(ref) for ref in payload.images),
        mask=_input_image(payload.mask, "mask") if payload.mask else None,
        n=int(payload.params.get("n", 1) or 1),
    )
