"""Property-based fuzzing of the OpenAPI schema with schemathesis, for `/api/v1` and `/v1`.

Every documented operation is called with generated requests (valid and invalid) against the
real app served by uvicorn on 127.0.0.1 (real HTTP, real database: SQLite or PostgreSQL as the
run chooses), authenticated, and every response must be: not a 5xx, a documented status code,
of a documented content type, matching the documented schema (and headers).

Bounded and deterministic: `SCHEMATHESIS_MAX_EXAMPLES` examples per operation (default 15),
a fixed seed, no shrinking (a failure is reported as found), no example database.

Exclusions, each because fuzzing it is meaningless or would destroy the fixture:
- `POST /api/v1/auth/logout`: ends the session every other request is authenticated by.
- `GET /api/v1/tasks/events`: a Server-Sent Events stream that never ends by design.
Guarded (generated, but cases that would hit the fixture itself are dropped):
- `DELETE /api/v1/auth/sessions/{session_id}` with the fuzzing session's own id.
- `PATCH /api/v1/admin/users/{user_id}[/quota]` on the user whose key fuzzes `/v1`.
- `?wait=` is capped at `MAX_FUZZ_WAIT` seconds: the worker is off (nothing ever finishes), so
  a generated `wait=120` would only hold the request for two minutes.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
import uvicorn
from cryptography.fernet import Fernet
from fastapi import FastAPI
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.main import create_app
from tests.conftest import TEST_PASSWORD, empty_all_tables

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20240607"))
MAX_FUZZ_WAIT = 0.2
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _fuzz_settings(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "env": "test",
        "jwt_secret_key": "fuzz-jwt-secret-" + "x" * 40,
        "storage_master_key": Fernet.generate_key().decode(),
        "bcrypt_rounds": 4,
        # The worker runs against an instant simulator, so creates that wait for their
        # result (`?wait=`, /v1/images/*) answer with finished tasks: those answers get checked
        # against the schema too.
        "run_worker": True,
        "simulator_task_seconds": 0.0,
        "polling_interval": 0.05,
        "request_log_flush_interval": 0.05,
        "upload_max_bytes": 256 * 1024,
    }
    base.update(values)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


def _load_spec() -> dict[str, Any]:
    """The OpenAPI document of the app (built without starting it: no database needed)."""
    return create_app(_fuzz_settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "no-shrink": True,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
        }
    )


SPEC = _load_spec()
SCHEMA = schemathesis.openapi.from_dict(SPEC, config=_config())
API_V1 = SCHEMA.include(path_regex=r"^/api/v1/").exclude(
    path=["/api/v1/auth/logout", "/api/v1/tasks/events"]
)
OPENAI_V1 = SCHEMA.include(path_regex=r"^/v1/")


class LiveApp:
    """The real app under uvicorn on 127.0.0.1:<free port>, in a background thread (its own
    event loop: lifespan, database pool and requests all live there)."""

    def __init__(self, app: FastAPI) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", access_log=False, timeout_graceful_shutdown=5
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise RuntimeError("the app's server thread died during start-up")
            if self._server.started:
                return
            time.sleep(0.02)
        raise RuntimeError("the app did not start within 30 s")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()


@dataclass
class Fuzzing:
    base_url: str
    session: requests.Session
    admin_headers: dict[str, str]
    admin_session_id: str
    openai_headers: dict[str, str]
    openai_user_id: str


def _register(http: requests.Session, base_url: str, username: str) -> tuple[str, str, str]:
    created = http.post(
        f"{base_url}/api/v1/auth/register",
        json={"username": username, "email": f"{username}@example.com", "password": TEST_PASSWORD},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    login = http.post(
        f"{base_url}/api/v1/auth/login",
        json={"username_or_email": username, "password": TEST_PASSWORD},
        timeout=30,
    )
    assert login.status_code == 200, login.text
    body = login.json()
    return created.json()["id"], body["access_token"], body["session_id"]


@pytest.fixture(scope="module")
def live_app(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    settings = _fuzz_settings(
        database_url=database_url, data_dir=tmp_path_factory.mktemp("fuzz") / "data"
    )
    server = LiveApp(create_app(settings))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def emptied_afterwards(cleanup_engine: AsyncEngine) -> AsyncIterator[None]:
    yield
    await empty_all_tables(cleanup_engine)


@pytest.fixture(scope="module")
def fuzzing(live_app: LiveApp, emptied_afterwards: None) -> Iterator[Fuzzing]:
    http = requests.Session()
    base = live_app.base_url
    # The first account is the admin: the admin routes get fuzzed for real, not just 403.
    _, admin_token, admin_session = _register(http, base, "fuzzadmin")
    openai_user_id, openai_token, _ = _register(http, base, "fuzzsdk")
    key = http.post(
        f"{base}/api/v1/keys",
        json={"name": "fuzz"},
        headers={"Authorization": f"Bearer {openai_token}"},
        timeout=30,
    )
    assert key.status_code == 201, key.text
    try:
        yield Fuzzing(
            base_url=base,
            session=http,
            admin_headers={"Authorization": f"Bearer {admin_token}"},
            admin_session_id=admin_session,
            openai_headers={"Authorization": f"Bearer {key.json()['key']}"},
            openai_user_id=openai_user_id,
        )
    finally:
        http.close()


def _guard(case: schemathesis.Case, fuzzing: Fuzzing) -> None:
    """Drop the few generated cases that would break the fixture, and cap long waits."""
    path_params = case.path_parameters or {}
    if case.operation.path == "/api/v1/auth/sessions/{session_id}":
        hypothesis.assume(path_params.get("session_id") != fuzzing.admin_session_id)
    if case.operation.path.startswith("/api/v1/admin/users/{user_id}"):
        hypothesis.assume(path_params.get("user_id") != fuzzing.openai_user_id)
    query = case.query
    if isinstance(query, dict) and isinstance(query.get("wait"), int | float):
        query["wait"] = min(query["wait"], MAX_FUZZ_WAIT)


def _run(case: schemathesis.Case, fuzzing: Fuzzing, headers: dict[str, str]) -> None:
    _guard(case, fuzzing)
    case.call_and_validate(
        base_url=fuzzing.base_url,
        session=fuzzing.session,
        headers=headers,
        checks=CHECKS,
        timeout=60,
    )


FUZZ_SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@API_V1.parametrize()
@FUZZ_SETTINGS
def test_api_v1(case: schemathesis.Case, fuzzing: Fuzzing) -> None:
    _run(case, fuzzing, fuzzing.admin_headers)


@OPENAI_V1.parametrize()
@FUZZ_SETTINGS
def test_openai_v1(case: schemathesis.Case, fuzzing: Fuzzing) -> None:
    _run(case, fuzzing, fuzzing.openai_headers)


def test_both_surfaces_are_fuzzed() -> None:
    """The filters above must keep matching operations (an empty selection passes vacuously)."""
    api_paths = {op.ok().path for op in API_V1.get_all_operations()}
    openai_paths = {op.ok().path for op in OPENAI_V1.get_all_operations()}
    assert "/api/v1/videos" in api_paths
    assert "/api/v1/auth/logout" not in api_paths
    assert {"/v1/videos", "/v1/images/generations", "/v1/models"} <= openai_paths

