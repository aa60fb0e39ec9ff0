"""Simulator settings and the response variants it can speak.

Real aggregators agree on endpoints but not on payloads: some wrap the task in
`{code, message, data}`, some say `SUCCESS` where others say `succeeded`, some give progress as
`"45%"`. A `ResponseVariant` pins down one such dialect; each endpoint family has a default
variant in `SimulatorConfig.variants`, and a request can pick another with `[sim:variant=…]` or
override single fields (see the module docstring of `app.simulator`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Canonical = Literal["queued", "in_progress", "completed", "failed", "cancelled", "expired"]
CANONICAL_STATES: tuple[str, ...] = (
    "queued",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
    "expired",
)

ProgressFormat = Literal["int", "percent", "float", "none"]
ResultPlacement = Literal[
    "video_url",
    "videoUrl",
    "url",
    "result_url",
    "output",
    "output.url",
    "output.video_url",
    "content.video_url",
    "gemini",
    "kling",
    "data_list",
    "video_base64",
]
ErrorPlacement = Literal[
    "fail_reason", "error", "error_obj", "message", "detail", "task_status_msg"
]
IdField = Literal["task_id", "taskId", "id"]
StatusField = Literal["status", "task_status", "state", "done"]
TimeUnit = Literal["s", "ms"]

# Status words per family of upstreams; `word-<state>` directives override single entries.
VOCABULARIES: dict[str, dict[str, str]] = {
    "default": {
        "queued": "queued",
        "in_progress": "in_progress",
        "completed": "completed",
        "failed": "failed",
        "cancelled": "cancelled",
        "expired": "expired",
    },
    "sora": {
        "queued": "queued",
        "in_progress": "processing",
        "completed": "completed",
        "failed": "failed",
        "cancelled": "cancelled",
        "expired": "expired",
    },
    "veo": {
        "queued": "pending",
        "in_progress": "running",
        "completed": "success",
        "failed": "failure",
        "cancelled": "canceled",
        "expired": "expired",
    },
    "ark": {
        "queued": "queued",
        "in_progress": "running",
        "completed": "succeeded",
        "failed": "failed",
        "cancelled": "cancelled",
        "expired": "expired",
    },
    "kling": {
        "queued": "submitted",
        "in_progress": "processing",
        "completed": "succeed",
        "failed": "failed",
        "cancelled": "cancelled",
        "expired": "expired",
    },
    "upper": {
        "queued": "NOT_START",
        "in_progress": "IN_PROGRESS",
        "completed": "SUCCESS",
        "failed": "FAILURE",
        "cancelled": "CANCELLED",
        "expired": "EXPIRED",
    },
    "done": {
        "queued": "waiting",
        "in_progress": "generating",
        "completed": "done",
        "failed": "error",
        "cancelled": "canceled",
        "expired": "timeout",
    },
    "misc": {
        "queued": "Preparing",
        "in_progress": "Started",
        "completed": "Finished",
        "failed": "Rejected",
        "cancelled": "Canceled",
        "expired": "Expired",
    },
}


class ResponseVariant(BaseModel):
    """One upstream dialect for create and status payloads."""

    model_config = ConfigDict(extra="forbid")

    envelope: bool = False
    # The `code` of a successful envelope: "success", 0 or 200 depending on the aggregator.
    envelope_code: str | int = "success"
    id_field: IdField = "task_id"
    status_field: StatusField = "status"
    vocabulary: dict[str, str] = Field(default_factory=lambda: dict(VOCABULARIES["default"]))
    progress: ProgressFormat = "int"
    result: ResultPlacement = "video_url"
    error: ErrorPlacement = "fail_reason"
    time_unit: TimeUnit = "s"

    @field_validator("vocabulary", mode="before")
    @classmethod
    def _complete_vocabulary(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in VOCABULARIES:
                raise ValueError(f"unknown vocabulary {value!r}; known: {sorted(VOCABULARIES)}")
            return dict(VOCABULARIES[value])
        if isinstance(value, dict):
            unknown = set(value) - set(CANONICAL_STATES)
            if unknown:
                raise ValueError(f"unknown states in vocabulary: {sorted(unknown)}")
            return {**VOCABULARIES["default"], **value}
        return value

    def word(self, state: str) -> str:
        return self.vocabulary.get(state, state)


def _variant(**fields: Any) -> ResponseVariant:
    return ResponseVariant.model_validate(fields)


# Named dialects, each modelled on a real upstream's payloads.
VARIANT_PRESETS: dict[str, ResponseVariant] = {
    # gpt-best style Sora: {task_id, status: "processing", progress: "45%", video_url}
    "sora": _variant(vocabulary="sora", progress="percent", result="video_url"),
    # Veo behind an aggregator: {code: "success", data: {task_id, status: "running", …}}
    "veo": _variant(
        envelope=True, vocabulary="veo", progress="int", result="video_url", time_unit="ms"
    ),
    # ByteDance Ark: {id, status: "running", content: {video_url}, error: {code, message}}
    "ark": _variant(
        id_field="id",
        vocabulary="ark",
        progress="none",
        result="content.video_url",
        error="error_obj",
    ),
    # Kling: {code: 0, data: {task_id, task_status: "succeed", task_result: {videos: [{url}]}}}
    "kling": _variant(
        envelope=True,
        envelope_code=0,
        status_field="task_status",
        vocabulary="kling",
        progress="none",
        result="kling",
        error="task_status_msg",
        time_unit="ms",
    ),
    # Gemini long-running operation: {name-like id, done, response.generateVideoResponse…}
    "gemini": _variant(
        id_field="id", status_field="done", progress="none", result="gemini", error="error_obj"
    ),
    # Loud upper-case words, progress as a string, a generic result field, milliseconds.
    "upper": _variant(
        id_field="taskId",
        vocabulary="upper",
        progress="percent",
        result="result_url",
        error="error",
        time_unit="ms",
    ),
    "output": _variant(id_field="id", vocabulary="done", result="output", error="detail"),
    "generic": _variant(id_field="id", vocabulary="default", result="url", error="message"),
}

Family = Literal["sora", "veo", "seedance"]


def _default_variants() -> dict[str, ResponseVariant]:
    return {
        "sora": VARIANT_PRESETS["sora"].model_copy(deep=True),
        "veo": VARIANT_PRESETS["veo"].model_copy(deep=True),
        "seedance": VARIANT_PRESETS["ark"].model_copy(deep=True),
    }


class SimulatorConfig(BaseModel):
    """Everything that shapes the simulator's behaviour. All durations are seconds."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # None: any non-empty bearer key is accepted.
    api_key: str | None = None
    # How long a task takes from creation to its terminal state; 0 completes on the first poll.
    task_seconds: float = Field(default=6.0, ge=0)
    # Share of task_seconds spent "queued" before progress starts rising.
    queued_fraction: float = Field(default=0.2, ge=0, le=1)
    # Added to every API response (not to media downloads).
    latency: float = Field(default=0.0, ge=0)
    # Media stays downloadable this long after the task completes; None keeps it forever.
    result_ttl: float | None = Field(default=None, ge=0)
    # Serve media with Transfer-Encoding: chunked instead of Content-Length.
    chunked: bool = False
    # Random faults (seeded, so a run is reproducible). Kinds: see `faults.TRANSIENT_KINDS`.
    seed: int = 0
    create_error_rate: float = Field(default=0.0, ge=0, le=1)
    poll_error_rate: float = Field(default=0.0, ge=0, le=1)
    error_kinds: list[str] = Field(default_factory=lambda: ["500", "429", "html", "malformed"])
    # Retry-After value (seconds) on simulated 429s.
    retry_after: int = Field(default=1, ge=0)
    # Task ids with ':' and '/' in them, to prove clients URL-encode ids.
    special_ids: bool = False
    # Absolute base for media URLs; None derives it from each request's base URL.
    public_base_url: str | None = None
    # Media dimensions: generated videos are tiny; images honour `size` up to this side.
    video_width: int = Field(default=160, ge=16, le=1920)
    video_height: int = Field(default=90, ge=16, le=1920)
    video_frames: int = Field(default=12, ge=1, le=240)
    video_fps: int = Field(default=8, ge=1, le=60)
    max_image_side: int = Field(default=256, ge=8, le=4096)
    # Default dialect per endpoint family ("sora", "veo", "seedance"); a preset name works too.
    variants: dict[str, ResponseVariant] = Field(default_factory=_default_variants)
    # How many recent requests /_sim/requests remembers.
    request_log_size: int = Field(default=500, ge=0)

    @field_validator("variants", mode="before")
    @classmethod
    def _resolve_presets(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        resolved = dict(_default_variants())
        for family, variant in value.items():
            if family not in resolved:
                raise ValueError(f"unknown family {family!r}; known: {sorted(resolved)}")
            if isinstance(variant, str):
                if variant not in VARIANT_PRESETS:
                    raise ValueError(
                        f"unknown variant {variant!r}; known: {sorted(VARIANT_PRESETS)}"
                    )
                resolved[family] = VARIANT_PRESETS[variant].model_copy(deep=True)
            else:
                resolved[family] = variant
        return resolved

    @field_validator("error_kinds")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        from app.simulator.faults import TRANSIENT_KINDS

        unknown = [kind for kind in value if kind not in TRANSIENT_KINDS]
        if unknown:
            raise ValueError(f"unknown error kinds {unknown}; known: {sorted(TRANSIENT_KINDS)}")
        return value

    def public_dump(self) -> dict[str, Any]:
        """The config as JSON, with the key redacted (it is a secret even in a simulator)."""
        data = self.model_dump(mode="json")
        if data.get("api_key") is not None:
            data["api_key"] = "<redacted>"
        return data
