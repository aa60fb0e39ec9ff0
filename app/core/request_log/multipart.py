"""Streaming summary of a multipart body: field names, file names and sizes, never the bytes."""

from __future__ import annotations

from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

MAX_PARTS = 100


class MultipartSummary:
    """Fed chunk by chunk as the application reads the body; keeps O(parts) memory."""

    def __init__(self, boundary: bytes) -> None:
        self.parts: list[dict[str, Any]] = []
        self.extra_parts = 0
        self.error: str | None = None
        self._header_field = b""
        self._header_value = b""
        self._current: dict[str, Any] | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field_data,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    @classmethod
    def for_content_type(cls, content_type: str) -> MultipartSummary | None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        return cls(boundary) if boundary else None

    def feed(self, data: bytes) -> None:
        if self.error is not None or not data:
            return
        try:
            self._parser.write(data)
        except Exception as exc:
            # Malformed input is the application's problem to report; we just stop summarising.
            self.error = type(exc).__name__

    def result(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"multipart": self.parts}
        if self.extra_parts:
            summary["more_parts"] = self.extra_parts
        if self.error:
            summary["parse_error"] = self.error
        return summary

    def _part_begin(self) -> None:
        self._current = {"name": None, "size": 0}

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        value = self._header_value.decode("latin-1")
        self._header_field = self._header_value = b""
        if self._current is None:
            return
        if name == "content-disposition":
            _, params = parse_options_header(value)
            if b"name" in params:
                self._current["name"] = params[b"name"].decode("utf-8", "replace")[:200]
            if b"filename" in params:
                self._current["filename"] = params[b"filename"].decode("utf-8", "replace")[:200]
        elif name == "content-type":
            self._current["content_type"] = value.strip()[:100]

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current["size"] += end - start

    def _part_end(self) -> None:
        if self._current is None:
            return
        if len(self.parts) < MAX_PARTS:
            self.parts.append(self._current)
        else:
            self.extra_parts += 1
        self._current = None
