"""Metrics, structured logs and the `genapi doctor` checks.

The engine feeds metrics through the `record_*` functions of `app.core.observability.metrics`;
logging context (request id, task id) through `app.core.observability.logging`.
"""

from app.core.observability.logging import (
    ObservabilitySettings,
    current_request_id,
    get_observability_settings,
    log_context,
    setup_logging,
    uvicorn_log_config,
)
from app.core.observability.metrics import (
    get_metrics,
    record_media_stored,
    record_poll_lag,
    record_quota_rejection,
    record_transition,
    record_upstream_call,
    upstream_outcome,
)
from app.core.observability.upstream import upstream_event_hooks

__all__ = [
    "ObservabilitySettings",
    "current_request_id",
    "get_metrics",
    "get_observability_settings",
    "log_context",
    "record_media_stored",
    "record_poll_lag",
    "record_quota_rejection",
    "record_transition",
    "record_upstream_call",
    "setup_logging",
    "upstream_event_hooks",
    "upstream_outcome",
    "uvicorn_log_config",
]
