"""Property-based fuzzing of the OpenAPI schema with schemathesis, for `/api/v1` and `/v1`.

Every documented operation is called with generated requests (valid and invalid) against the
real app served by uvicorn on 127.0.0.1 (real HTTP, the run's database: SQLite or PostgreSQL),
authenticated, and every response must be: not a 5xx, of a documented status code and content
type, and match the documented body schema and headers.

Bounded and deterministic: `SCHEMATHESIS_MAX_EXAMPLES` generated examples per operation
(default 25; schemathesis adds its schema examples and coverage cases on top), a fixed seed
(`SCHEMATHESIS_SEED`), no shrinking (a failure is reported as found), no example database.

Random ids only ever reach "not found". So that the answers about existing objects get checked
too, the fixture creates some (finished image and video tasks, a category, a key, a session, a
user, a request-log entry) and about half of the generated cases have their path ids replaced
by one of those; likewise about half of the generated `/api/v1` creates get a real model id
(with `n` at most 2: the worker really runs them, against the instant simulator). DELETEs get
objects of their own, so the other operations keep finding theirs.

Exclusions and guards, each because fuzzing it is meaningless or would destroy the fixture:
- `GET /api/v1/tasks/events` is not fuzzed: a Server-Sent Events stream never ends by design.
- `POST /api/v1/auth/logout` is fuzzed with an API key (answered 400: a key has no session),
  never with the session every other request is authenticated by.
- `DELETE /api/v1/auth/sessions/{id}` never gets the fuzzing session's own id.
- `PATCH /api/v1/admin/users/{id}[/quota]` never gets the user whose key fuzzes `/v1`.
- `POST /api/v1/auth/password` never gets the right current password.
- `?wait=` is capped at `MAX_FUZZ_WAIT` seconds, so a generated `wait=120` cannot hold a
  request for two minutes if a task is slow.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
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

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20240607"))
MAX_FUZZ_WAIT = 5.0
SEED_TIMEOUT = 60.0
IMAGE_MODEL = "gpt-image-1"
VIDEO_MODEL = "sora-2"
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
        # result (`?wait=`, /v1/images/*) answer with finished tasks, and those answers get
        # checked too.
        "run_worker": True,
        "simulator_task_seconds": 0.0,
        "polling_interval": 0.05,
        "request_log_flush_interval": 0.05,
        "request_timeout": 30.0,
        "upload_max_bytes": 256 * 1024,
    }
    base.update(values)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


def _load_spec() -> dict[str, Any]:
    """The app's OpenAPI document (built without starting the app: no database needed)."""
    return create_app(_fuzz_settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
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


SCHEMA = schemathesis.openapi.from_dict(_load_spec(), config=_config())
API_V1 = SCHEMA.include(path_regex=r"^/api/v1/").exclude(path="/api/v1/tasks/events")
OPENAI_V1 = SCHEMA.include(path_regex=r"^/v1/")


class LiveApp:
    """The real app under uvicorn on 127.0.0.1:<free port>, in a background thread (its own
    event loop: lifespan, worker, database pool and requests all live there)."""

    def __init__(self, app: FastAPI) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
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
    http: requests.Session
    admin_headers: dict[str, str]
    admin_session_id: str
    admin_key_headers: dict[str, str]
    openai_headers: dict[str, str]
    openai_user_id: str
    # Path parameter values of existing objects, by the path prefix they belong to; the
    # `delete` ones are only ever given to DELETE operations.
    known: dict[str, dict[str, str]] = field(default_factory=dict)
    delete: dict[str, dict[str, str]] = field(default_factory=dict)


class Client:
    """The fixture's own calls (setup, not under test): fail loudly on anything unexpected."""

    def __init__(self, http: requests.Session, base_url: str, headers: dict[str, str]) -> None:
        self.http, self.base_url, self.headers = http, base_url, headers

    def call(self, method: str, path: str, expect: int | tuple[int, ...], **kwargs: Any) -> Any:
        response = self.http.request(
            method, self.base_url + path, headers=self.headers, timeout=SEED_TIMEOUT, **kwargs
        )
        expected = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in expected, (method, path, response.text)
        return response.json() if response.content else None


def _register(http: requests.Session, base_url: str, username: str) -> tuple[str, str, str]:
    """(user id, access token, session id) of a new account."""
    anonymous = Client(http, base_url, {})
    created = anonymous.call(
        "POST",
        "/api/v1/auth/register",
        201,
        json={"username": username, "email": f"{username}@example.com", "password": TEST_PASSWORD},
    )
    token, session_id = _login(anonymous, username)
    return created["id"], token, session_id


def _login(anonymous: Client, username: str) -> tuple[str, str]:
    body = anonymous.call(
        "POST",
        "/api/v1/auth/login",
        200,
        json={"username_or_email": username, "password": TEST_PASSWORD},
    )
    return body["access_token"], body["session_id"]


def _finished_task(client: Client, kind: str, model: str) -> tuple[str, str]:
    """(task id, media id) of a completed task with one stored result."""
    task = client.call(
        "POST",
        f"/api/v1/{kind}s?wait={SEED_TIMEOUT}",
        (200, 202),
        json={"model": model, "prompt": f"fuzz seed {kind}", "title": "seed"},
    )
    assert task["status"] == "completed", task
    return task["id"], task["media"][0]["id"]


def _finished_openai_video(client: Client) -> str:
    video = client.call("POST", "/v1/videos", 200, json={"prompt": "fuzz seed", "seconds": "4"})
    deadline = time.monotonic() + SEED_TIMEOUT
    while video["status"] != "completed":
        assert video["status"] in ("queued", "in_progress"), video
        assert time.monotonic() < deadline, video
        time.sleep(0.05)
        video = client.call("GET", f"/v1/videos/{video['id']}", 200)
    return str(video["id"])


def _a_log_entry(client: Client) -> str:
    """An entry of the admin's request log (written in the background: poll for it)."""
    deadline = time.monotonic() + SEED_TIMEOUT
    while True:
        page = client.call("GET", "/api/v1/logs?size=1", 200)
        if page["items"]:
            return str(page["items"][0]["id"])
        assert time.monotonic() < deadline, "no request-log entry was written"
        time.sleep(0.05)


@pytest.fixture(scope="module")
async def emptied_afterwards(cleanup_engine: AsyncEngine) -> AsyncIterator[None]:
    yield
    await empty_all_tables(cleanup_engine)


@pytest.fixture(scope="module")
def live_app(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, emptied_afterwards: None
) -> Iterator[LiveApp]:
    # Depends on `emptied_afterwards` so the tables are emptied after the server has stopped
    # (its shutdown still flushes request-log rows), leaving the database as other tests expect.
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
def fuzzing(live_app: LiveApp) -> Iterator[Fuzzing]:
    http = requests.Session()
    base = live_app.base_url
    # The first account is the admin: the admin routes get fuzzed for real, not just 403.
    _, admin_token, admin_session = _register(http, base, "fuzzadmin")
    openai_user_id, openai_token, _ = _register(http, base, "fuzzsdk")
    spare_user_id, _, _ = _register(http, base, "fuzzspare")
    admin = Client(http, base, {"Authorization": f"Bearer {admin_token}"})
    sdk = Client(http, base, {"Authorization": f"Bearer {openai_token}"})
    sdk_key = sdk.call("POST", "/api/v1/keys", 201, json={"name": "sdk"})["key"]
    openai = Client(http, base, {"Authorization": f"Bearer {sdk_key}"})
    admin_key = admin.call("POST", "/api/v1/keys", 201, json={"name": "logout"})["key"]

    image, image_media = _finished_task(admin, "image", IMAGE_MODEL)
    video, video_media = _finished_task(admin, "video", VIDEO_MODEL)
    doomed_image, _ = _finished_task(admin, "image", IMAGE_MODEL)
    doomed_video, _ = _finished_task(admin, "video", VIDEO_MODEL)
    category = admin.call("POST", "/api/v1/categories", 201, json={"name": "kept"})["id"]
    doomed_category = admin.call("POST", "/api/v1/categories", 201, json={"name": "doomed"})["id"]
    doomed_key = admin.call("POST", "/api/v1/keys", 201, json={"name": "doomed"})["id"]
    _, doomed_session = _login(Client(http, base, {}), "fuzzadmin")
    log_id = _a_log_entry(admin)
    openai_video = _finished_openai_video(openai)
    doomed_openai_video = _finished_openai_video(openai)

    common = {"category_id": category, "log_id": log_id, "user_id": spare_user_id}
    known = {
        "/api/v1/images": {"task_id": image, "media_id": image_media},
        "/api/v1/videos": {"task_id": video, "media_id": video_media},
        "/api/v1/tasks": {"task_id": image},
        "/api/v1/models": {"model_id": IMAGE_MODEL},
        "/api/v1/": common,
        "/v1/videos": {"video_id": openai_video},
        "/v1/models": {"model_id": VIDEO_MODEL},
    }
    delete = {
        "/api/v1/images": {"task_id": doomed_image},
        "/api/v1/videos": {"task_id": doomed_video},
        "/api/v1/categories": {"category_id": doomed_category},
        "/api/v1/keys": {"key_id": doomed_key},
        "/api/v1/auth/sessions": {"session_id": doomed_session},
        "/api/v1/logs": {"log_id": log_id},
        "/v1/videos": {"video_id": doomed_openai_video},
    }
    try:
        yield Fuzzing(
            base_url=base,
            http=http,
            admin_headers=admin.headers,
            admin_session_id=admin_session,
            admin_key_headers={"Authorization": f"Bearer {admin_key}"},
            openai_headers=openai.headers,
            openai_user_id=openai_user_id,
            known=known,
            delete=delete,
        )
    finally:
        http.close()


def _coin(*parts: Any) -> bool:
    """A deterministic coin flip per case (Python's own `hash` of str is salted per run)."""
    return zlib.crc32(repr(parts).encode()) % 2 == 0


def _use_known_objects(case: schemathesis.Case, fuzzing: Fuzzing) -> None:
    path = case.operation.path
    params = case.path_parameters
    if params and _coin(case.operation.label, sorted(params.items(), key=str)):
        pools = fuzzing.delete if case.operation.method.upper() == "DELETE" else fuzzing.known
        for prefix, values in sorted(pools.items(), key=lambda item: -len(item[0])):
            if path.startswith(prefix):
                for name, value in values.items():
                    if name in params:
                        params[name] = value
                if case.operation.method.upper() == "DELETE":
                    break
    body = case.body
    creates = {"/api/v1/images": IMAGE_MODEL, "/api/v1/videos": VIDEO_MODEL}
    if path in creates and isinstance(body, dict) and _coin(path, repr(body)):
        body["model"] = creates[path]
        if isinstance(body.get("n"), int):
            body["n"] = max(1, min(body["n"], 2))


def _guard(case: schemathesis.Case, fuzzing: Fuzzing) -> None:
    """Drop the few generated cases that would break the fixture, and cap long waits."""
    params = case.path_parameters or {}
    if case.operation.path == "/api/v1/auth/sessions/{session_id}":
        hypothesis.assume(params.get("session_id") != fuzzing.admin_session_id)
    if case.operation.path.startswith("/api/v1/admin/users/{user_id}"):
        hypothesis.assume(params.get("user_id") != fuzzing.openai_user_id)
    if case.operation.path == "/api/v1/auth/password" and isinstance(case.body, dict):
        hypothesis.assume(case.body.get("current_password") != TEST_PASSWORD)
    query = case.query
    if isinstance(query, dict):
        wait = query.get("wait")
        if isinstance(wait, int | float) and not isinstance(wait, bool):
            query["wait"] = min(wait, MAX_FUZZ_WAIT)


def _run(case: schemathesis.Case, fuzzing: Fuzzing, headers: dict[str, str]) -> None:
    _use_known_objects(case, fuzzing)
    _guard(case, fuzzing)
    case.call_and_validate(
        base_url=fuzzing.base_url,
        session=fuzzing.http,
        headers=headers,
        checks=CHECKS,
        timeout=SEED_TIMEOUT,
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
    if case.operation.path == "/api/v1/auth/logout":
        _run(case, fuzzing, fuzzing.admin_key_headers)
    else:
        _run(case, fuzzing, fuzzing.admin_headers)


@OPENAI_V1.parametrize()
@FUZZ_SETTINGS
def test_openai_v1(case: schemathesis.Case, fuzzing: Fuzzing) -> None:
    _run(case, fuzzing, fuzzing.openai_headers)


def test_both_surfaces_are_selected() -> None:
    """The filters must keep matching operations (an empty selection would pass vacuously)."""
    api_paths = {result.ok().path for result in API_V1.get_all_operations()}
    openai_paths = {result.ok().path for result in OPENAI_V1.get_all_operations()}
    assert {"/api/v1/videos", "/api/v1/auth/logout", "/api/v1/admin/users"} <= api_paths
    assert "/api/v1/tasks/events" not in api_paths
    assert {"/v1/videos", "/v1/images/generations", "/v1/models"} <= openai_paths
    assert not any(path.startswith("/api/") for path in openai_paths)
