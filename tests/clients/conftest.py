"""Fixtures for the adapter tests: the fake upstream (see fakes.py), a client, credentials."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn

from app.clients.base import UpstreamCredentials
from tests.clients.fakes import API_KEY, FakeUpstream, build_app
from tests.simulator.conftest import API_KEY as SIM_KEY
from tests.simulator.conftest import LiveServer


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_app(fake), log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fake upstream did not start")
        time.sleep(0.01)
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def fake(fake_server: FakeUpstream) -> Iterator[FakeUpstream]:
    fake_server.reset()
    yield fake_server
    fake_server.reset()


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0)) as client:
        yield client


@pytest.fixture
def credentials(fake: FakeUpstream) -> UpstreamCredentials:
    return UpstreamCredentials(base_url=fake.url, api_key=API_KEY)


# The built-in simulator over real HTTP, for the adapters of the official APIs (one per module).
@pytest.fixture(scope="module")
def simulator_server() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server


@pytest.fixture
def sim(simulator_server: LiveServer) -> LiveServer:
    simulator_server.reset()
    return simulator_server


@pytest.fixture
def sim_credentials(sim: LiveServer) -> UpstreamCredentials:
    return UpstreamCredentials(base_url=sim.base_url, api_key=SIM_KEY)
