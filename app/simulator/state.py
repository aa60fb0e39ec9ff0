"""Task and media records, with state derived from time (or poll count), never from timers.

A task stores when it was created and how long it takes; every poll computes where it is now.
That keeps ten thousand in-flight tasks at the cost of ten thousand dict entries: no per-task
coroutine, thread or timer.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from app.simulator.faults import Directives

# Aggregator families (sora, veo, seedance) speak configurable dialects; the official APIs
# (openai, ark, gemini, kling) speak exactly one each.
TaskFamily = Literal["sora", "veo", "seedance", "openai", "ark", "gemini", "kling"]
State = Literal["queued", "in_progress", "completed", "failed", "cancelled", "expired"]
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled", "expired"})


@dataclass
class Phase:
    """Where a task is at one instant."""

    state: State
    progress: int
    started_at: float | None
    finished_at: float | None

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass
class Task:
    id: str
    family: TaskFamily
    model: str
    prompt: str
    created_at: float
    duration: float
    queued_fraction: float
    directives: Directives
    media_id: str
    request: dict[str, Any] = field(default_factory=dict)
    # Shape of the produced video, and extra fields echoed back by the OpenAI video object.
    width: int = 160
    height: int = 90
    seconds: str | None = None
    size: str | None = None
    remixed_from: str | None = None
    # Request fields an official API echoes in its task object (Ark's ratio, Kling's endpoint…).
    echo: dict[str, Any] = field(default_factory=dict)
    polls: int = 0
    answered_polls: int = 0
    pending_poll_faults: deque[str] = field(default_factory=deque)
    cancelled: Phase | None = None
    deleted: bool = False
    media_expired: bool = False
    # Poll-count mode has no clock: the first poll that sees the end fixes the finish time.
    observed_finish: float | None = None

    def phase(self, now: float) -> Phase:
        """The task's state at `now` (this request's poll already counted)."""
        if self.cancelled is not None:
            return self.cancelled
        if self.directives.polls is not None:
            return self._phase_by_polls(now)
        return self._phase_by_time(now)

    def cancel(self, now: float) -> bool:
        """Cancel unless already finished; False when there was nothing left to cancel."""
        current = self.phase(now)
        if current.is_terminal:
            return False
        self.cancelled = Phase("cancelled", current.progress, current.started_at, now)
        return True

    def _outcome(self) -> State:
        if self.directives.fail is not None:
            return "failed"
        if self.directives.expire:
            return "expired"
        if self.directives.cancelled:
            return "cancelled"
        return "completed"

    def _terminal(self, started_at: float | None, finished_at: float) -> Phase:
        outcome = self._outcome()
        return Phase(outcome, 100 if outcome == "completed" else 99, started_at, finished_at)

    def _phase_by_time(self, now: float) -> Phase:
        queued_for = self.duration * self.queued_fraction
        elapsed = now - self.created_at
        if elapsed < queued_for:
            return Phase("queued", 0, None, None)
        started = self.created_at + queued_for
        if self.directives.never or elapsed < self.duration:
            running = max(self.duration - queued_for, 1e-9)
            fraction = min(1.0, (elapsed - queued_for) / running)
            return Phase("in_progress", min(99, 1 + int(98 * fraction)), started, None)
        return self._terminal(started, self.created_at + self.duration)

    def _phase_by_polls(self, now: float) -> Phase:
        needed = self.directives.polls or 1
        seen = self.answered_polls
        if seen >= needed and not self.directives.never:
            if self.observed_finish is None:
                self.observed_finish = now
            return self._terminal(self.created_at, self.observed_finish)
        if seen <= 1 and needed > 1:
            return Phase("queued", 0, None, None)
        progress = min(99, max(1, int(100 * (seen - 1) / max(1, needed - 1))))
        return Phase("in_progress", progress, self.created_at, None)


@dataclass
class MediaSpec:
    """A downloadable file: generated on first request, served from cache afterwards."""

    id: str
    fmt: str  # mp4 | png | jpg | webp
    width: int
    height: int
    seed: int
    created_at: float
    task_id: str | None = None
    chunked: bool | None = None
    expired: bool = False


@dataclass
class PromptCounts:
    create_requests: int = 0
    creates: int = 0
    polls: int = 0


@dataclass
class Stats:
    create_requests: int = 0
    creates: int = 0
    polls: int = 0
    media_requests: int = 0
    faults: int = 0
    by_prompt: dict[str, PromptCounts] = field(default_factory=dict)

    def for_prompt(self, prompt: str) -> PromptCounts:
        counts = self.by_prompt.get(prompt)
        if counts is None:
            counts = self.by_prompt[prompt] = PromptCounts()
        return counts

    def as_dict(self, prompt: str | None = None) -> dict[str, Any]:
        by_prompt = self.by_prompt
        if prompt is not None:
            by_prompt = {prompt: by_prompt.get(prompt, PromptCounts())}
        return {
            "create_requests": self.create_requests,
            "creates": self.creates,
            "polls": self.polls,
            "media_requests": self.media_requests,
            "faults": self.faults,
            "by_prompt": {text: vars(counts).copy() for text, counts in by_prompt.items()},
        }


def new_id(prefix: str, *, weird: bool = False) -> str:
    token = secrets.token_hex(12)
    # ':' and '/' prove that clients URL-encode ids into paths.
    return f"{prefix}:{token[:8]}/{token[8:]}" if weird else f"{prefix}_{token}"


@dataclass
class Store:
    tasks: dict[str, Task] = field(default_factory=dict)
    media: dict[str, MediaSpec] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    # Attempts per identical create, to script "fail N times, then succeed".
    attempts: dict[str, int] = field(default_factory=dict)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=500))

    def reset(self, request_log_size: int) -> None:
        self.tasks.clear()
        self.media.clear()
        self.stats = Stats()
        self.attempts.clear()
        self.requests = deque(maxlen=request_log_size)
