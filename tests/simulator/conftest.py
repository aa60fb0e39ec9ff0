"""Fixtures: the simulator over real HTTP (uvicorn in a thread) and in-process (ASGITransport).

Both run on a fake clock the tests move forward, so task states are checked without waiting.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import av
import httpx
import pytest
import uvicorn
from PIL import Image

from app.simulator import Simulator, SimulatorConfig, create_simulator_app

API_KEY = "sim-test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ASGI_BASE = "http://simulator.internal"
START = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_config(**changes: Any) -> SimulatorConfig:
    """Small, fast defaults: 10 s tasks on the fake clock, small images."""
    base: dict[str, Any] = {"api_key": API_KEY, "task_seconds": 10.0, "max_image_side": 256}
    return SimulatorConfig(**{**base, **changes})


@dataclass
class Harness:
    client: httpx.AsyncClient
    simulator: Simulator
    clock: FakeClock
    base_url: str
    # None: real HTTP to base_url.
    transport: httpx.AsyncBaseTransport | None = None

    def configure(self, **changes: Any) -> None:
        self.simulator.configure(**changes)

    def anonymous(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        """A client to the same simulator without the default bearer key."""
        return httpx.AsyncClient(
            transport=self.transport, base_url=self.base_url, headers=headers or {}
        )


class LiveServer:
    """uvicorn serving one simulator app on 127.0.0.1:<free port> in a background thread."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.app = create_simulator_app(make_config(), clock=self.clock)
        self.simulator: Simulator = self.app.state.simulator
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise RuntimeError("simulator server thread died during startup")
            if self._server.started and self._accepts():
                return
            time.sleep(0.01)
        raise RuntimeError("simulator server did not start accepting connections")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def reset(self) -> None:
        self.simulator.config = make_config()
        self.simulator.reset()
        self.clock.now = START

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server


@pytest.fixture
async def live(live_server: LiveServer) -> AsyncIterator[Harness]:
    live_server.reset()
    async with httpx.AsyncClient(base_url=live_server.base_url, headers=AUTH) as client:
        yield Harness(client, live_server.simulator, live_server.clock, live_server.base_url)


@pytest.fixture
async def asgi() -> AsyncIterator[Harness]:
    clock = FakeClock()
    app = create_simulator_app(make_config(), clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ASGI_BASE, headers=AUTH) as client:
        yield Harness(client, app.state.simulator, clock, ASGI_BASE, transport)


@pytest.fixture(params=["http", "asgi"])
def sim(request: pytest.FixtureRequest) -> Harness:
    """The same test over real HTTP and in-process."""
    harness: Harness = request.getfixturevalue("live" if request.param == "http" else "asgi")
    return harness


def decodable_video_frames(data: bytes) -> int:
    """How many video frames PyAV decodes from MP4 bytes (raises if it is not a video)."""
    with av.open(io.BytesIO(data), mode="r") as container:
        assert container.streams.video, "no video stream"
        frames = 0
        for _ in container.decode(video=0):
            frames += 1
        return frames


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def png_bytes(
    width: int = 40, height: int = 30, colour: tuple[int, int, int] = (200, 10, 10)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()
