"""Per-request directives (`[sim:…]` in the prompt) and the fault responses they trigger.

The full directive list is in the docstring of `app.simulator`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

from app.simulator.config import (
    CANONICAL_STATES,
    VARIANT_PRESETS,
    VOCABULARIES,
    ResponseVariant,
)

DIRECTIVE_RE = re.compile(r"\[sim:([A-Za-z0-9_.\-]+)(?:=([^\]]*))?\]")

# Faults that a retrying client should eventually get past (also the random-fault kinds).
TRANSIENT_KINDS = frozenset(
    {
        "429",
        "429-no-retry-after",
        "500",
        "502",
        "503",
        "504",
        "html",
        "html-200",
        "malformed",
        "envelope-error",
    }
)
# Only meaningful on polls: the upstream briefly forgets the task.
POLL_ONLY_KINDS = frozenset({"404"})
CREATE_ONLY_KINDS = frozenset({"accepted-500"})

_POLL_FAULT_RE = re.compile(r"^poll-(.+)-n$")
_VARIANT_FIELDS = {
    "envelope": "envelope",
    "envelope-code": "envelope_code",
    "id-field": "id_field",
    "status-field": "status_field",
    "progress": "progress",
    "result": "result",
    "error": "error",
    "time": "time_unit",
}


class DirectiveError(ValueError):
    """A `[sim:…]` directive the simulator does not understand (answered with 400)."""


@dataclass
class Directives:
    fail: str | None = None
    expire: bool = False
    cancelled: bool = False
    never: bool = False
    expired_url: bool = False
    slow: float = 0.0
    poll_slow: float = 0.0
    task_seconds: float | None = None
    polls: int | None = None
    chunked: bool | None = None
    reject: str | None = None
    create_faults: list[str] = field(default_factory=list)
    fault_times: int = 1  # 0: every attempt
    retry_after: int | None = None
    poll_faults: list[tuple[str, int]] = field(default_factory=list)
    variant_preset: str | None = None
    variant_overrides: dict[str, Any] = field(default_factory=dict)
    word_overrides: dict[str, str] = field(default_factory=dict)
    vocabulary: str | None = None
    weird_id: bool = False

    @property
    def has_variant_changes(self) -> bool:
        return bool(
            self.variant_preset or self.variant_overrides or self.word_overrides or self.vocabulary
        )

    def variant(self, base: ResponseVariant) -> ResponseVariant:
        """`base` with this request's dialect changes applied."""
        if not self.has_variant_changes:
            return base
        variant = VARIANT_PRESETS[self.variant_preset] if self.variant_preset else base
        vocabulary = dict(VOCABULARIES[self.vocabulary] if self.vocabulary else variant.vocabulary)
        vocabulary.update(self.word_overrides)
        data = {**variant.model_dump(), **self.variant_overrides, "vocabulary": vocabulary}
        return ResponseVariant.model_validate(data)


def _float(name: str, value: str | None) -> float:
    try:
        number = float(value or "")
    except ValueError:
        raise DirectiveError(f"[sim:{name}] needs a number, got {value!r}") from None
    if number < 0:
        raise DirectiveError(f"[sim:{name}] must not be negative")
    return number


def _int(name: str, value: str | None, minimum: int = 0) -> int:
    try:
        number = int(value or "")
    except ValueError:
        raise DirectiveError(f"[sim:{name}] needs an integer, got {value!r}") from None
    if number < minimum:
        raise DirectiveError(f"[sim:{name}] must be at least {minimum}")
    return number


def _on_off(name: str, value: str | None) -> bool:
    lowered = (value or "on").lower()
    if lowered in {"on", "true", "1", "yes"}:
        return True
    if lowered in {"off", "false", "0", "no"}:
        return False
    raise DirectiveError(f"[sim:{name}] takes on or off, got {value!r}")


def parse_directives(text: str | None) -> Directives:
    """Read every `[sim:name]` / `[sim:name=value]` in `text`; unknown names raise."""
    found = Directives()
    if not text or "[sim:" not in text:
        return found
    for match in DIRECTIVE_RE.finditer(text):
        _apply(found, match.group(1).lower(), match.group(2))
    # A variant that does not validate is the caller's mistake: say so now, not at poll time.
    if found.has_variant_changes:
        try:
            found.variant(ResponseVariant())
        except ValidationError as exc:
            first = exc.errors()[0]
            raise DirectiveError(f"invalid variant directive: {first['msg']}") from None
    return found


def _apply(found: Directives, name: str, value: str | None) -> None:
    if name == "fail":
        found.fail = value or "generation failed (simulated)"
    elif name == "expire":
        found.expire = True
    elif name in {"cancelled", "canceled", "cancel"}:
        found.cancelled = True
    elif name == "never":
        found.never = True
    elif name == "expired-url":
        found.expired_url = True
    elif name == "slow":
        found.slow = _float(name, value)
    elif name == "poll-slow":
        found.poll_slow = _float(name, value)
    elif name == "task-seconds":
        found.task_seconds = _float(name, value)
    elif name == "polls":
        found.polls = _int(name, value, minimum=1)
    elif name == "chunked":
        found.chunked = _on_off(name, value)
    elif name == "no-chunked":
        found.chunked = False
    elif name in {"reject", "400"}:
        found.reject = value or "request rejected by upstream (simulated)"
    elif name in TRANSIENT_KINDS or name in CREATE_ONLY_KINDS:
        found.create_faults.append(name)
        if name.startswith("429") and value:
            found.retry_after = _int(name, value)
    elif name == "fault-times":
        found.fault_times = 0 if (value or "").lower() in {"always", "inf"} else _int(name, value)
    elif name == "retry-after":
        found.retry_after = _int(name, value)
    elif (poll := _POLL_FAULT_RE.match(name)) is not None:
        kind = "500" if poll.group(1) == "fail" else poll.group(1)
        if kind not in TRANSIENT_KINDS and kind not in POLL_ONLY_KINDS:
            raise DirectiveError(f"[sim:{name}]: unknown poll fault {poll.group(1)!r}")
        found.poll_faults.append((kind, _int(name, value or "1", minimum=1)))
    elif name == "variant":
        if value not in VARIANT_PRESETS:
            raise DirectiveError(
                f"[sim:variant]: unknown {value!r}; known: {sorted(VARIANT_PRESETS)}"
            )
        found.variant_preset = value
    elif name == "vocab":
        if value not in VOCABULARIES:
            raise DirectiveError(f"[sim:vocab]: unknown {value!r}; known: {sorted(VOCABULARIES)}")
        found.vocabulary = value
    elif name.startswith("word-"):
        state = name.removeprefix("word-")
        if state not in CANONICAL_STATES or not value:
            raise DirectiveError(f"[sim:{name}=WORD]: state must be one of {CANONICAL_STATES}")
        found.word_overrides[state] = value
    elif name in _VARIANT_FIELDS:
        parsed: Any = value
        if name == "envelope":
            parsed = _on_off(name, value)
        elif name == "envelope-code" and value is not None and value.lstrip("-").isdigit():
            parsed = int(value)
        found.variant_overrides[_VARIANT_FIELDS[name]] = parsed
    elif name == "weird-id":
        found.weird_id = True
    else:
        raise DirectiveError(f"unknown simulator directive [sim:{name}]")


def create_fault_for_attempt(directives: Directives, attempt: int) -> str | None:
    """Which scripted fault (if any) answers the `attempt`-th (0-based) identical create."""
    faults = directives.create_faults
    if not faults:
        return None
    if directives.fault_times == 0:
        return faults[attempt % len(faults)]
    index = attempt // directives.fault_times
    return faults[index] if index < len(faults) else None


def openai_error(status: int, message: str, type_: str, code: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"message": message, "type": type_}
    if code is not None:
        body["code"] = code
    return JSONResponse({"error": body}, status_code=status)


_HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
    "</body></html>\n"
)


def fault_response(kind: str, retry_after: int) -> Response:
    """The HTTP answer for one injected fault."""
    if kind == "429":
        response = openai_error(429, "rate limit exceeded (simulated)", "rate_limit_error")
        response.headers["Retry-After"] = str(retry_after)
        return response
    if kind == "429-no-retry-after":
        return openai_error(429, "rate limit exceeded (simulated)", "rate_limit_error")
    if kind in {"500", "accepted-500"}:
        return openai_error(500, "internal server error (simulated)", "server_error")
    if kind in {"502", "503", "504"}:
        return openai_error(int(kind), "upstream unavailable (simulated)", "server_error")
    if kind == "html":
        return Response(_HTML_PAGE, status_code=502, media_type="text/html")
    if kind == "html-200":
        return Response(
            _HTML_PAGE.replace("502 Bad Gateway", "Please log in"), media_type="text/html"
        )
    if kind == "malformed":
        return Response('{"task_id": "abc", "status": "proc', media_type="application/json")
    if kind == "envelope-error":
        return JSONResponse({"code": "error", "message": "upstream busy (simulated)", "data": None})
    if kind == "404":
        return openai_error(404, "task not found (simulated)", "invalid_request_error")
    raise ValueError(f"unknown fault kind {kind!r}")
