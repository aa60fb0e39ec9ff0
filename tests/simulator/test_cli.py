"""`genapi simulator`: help text, and a real standalone run on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
from typer.testing import CliRunner

from app.cli import cli


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(cli, ["simulator", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--host", "--port", "--task-seconds", "--api-key", "--result-ttl"):
        assert option in result.output


def test_simulator_is_registered_on_the_main_cli() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "simulator" in result.output


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_standalone_server_serves_the_upstream_api() -> None:
    port = _free_port()
    env = {**os.environ, "SIMULATOR_API_KEY": "standalone-key"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from app.cli import main; main()",
            "simulator",
            "--port",
            str(port),
            "--task-seconds",
            "0",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                if httpx.get(f"{base}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "standalone simulator did not come up"
            time.sleep(0.05)
        with httpx.Client(base_url=base) as client:
            wrong = client.post("/v2/videos/generations", headers={"Authorization": "Bearer x"})
            assert wrong.status_code == 401
            auth = {"Authorization": "Bearer standalone-key"}
            created = client.post(
                "/v2/videos/generations", json={"model": "sora-2", "prompt": "cli"}, headers=auth
            )
            task_id = created.json()["task_id"]
            done = client.get(f"/v2/videos/generations/{task_id}", headers=auth).json()
            assert done["status"] == "completed"
            assert done["video_url"].startswith(f"{base}/media/")
            assert client.get(done["video_url"]).status_code == 200
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
