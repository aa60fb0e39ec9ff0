"""API overhead: `POST /api/v1/videos` and `GET /api/v1/videos/{id}` under 50 concurrent clients.

The real app (`app.main:create_app`, RUN_WORKER=false so the worker does not interfere) and the
bare baseline (`bench.bare_app`: the same insert / select with the app's own `Database` and
models, nothing else) are both served by uvicorn subprocesses, the same way, on one fresh
PostgreSQL database. An httpx async load generator in this process runs the phases alternately
(bare, real, bare, real) so both see the same machine.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from bench.common import (
    ROOT,
    Check,
    Report,
    Server,
    Table,
    child_env,
    cpu_seconds,
    free_port,
    ms,
    percentile,
    pg_database,
    python_module,
    ratio,
)
from bench.load import LoadResult, run_load
from bench.words import PromptGenerator

CONCURRENCY = 50
DEFAULT_REQUESTS, QUICK_REQUESTS = 1_000, 200
ROUNDS = 2
PHASE_TIME_LIMIT = 60.0


class Target:
    def __init__(self, name: str, server: Server, base_url: str, prefix: str) -> None:
        self.name = name
        self.server = server
        self.prefix = prefix
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=60,
            limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY),
        )
        self.ids: list[str] = []
        self.results: dict[str, list[LoadResult]] = {"POST": [], "GET": []}
        self.cpu: dict[str, float] = {"POST": 0.0, "GET": 0.0}


def _bodies(count: int) -> list[dict[str, Any]]:
    prompts = PromptGenerator(seed=11)
    return [
        {"model": "sora-2", "prompt": prompts.prompt(), "params": {"duration": 10}}
        for _ in range(count)
    ]


async def _phase(target: Target, method: str, count: int, record: bool = True) -> None:
    bodies = _bodies(count) if method == "POST" else []
    rng = random.Random(5)
    ids = [rng.choice(target.ids) for _ in range(count)] if method == "GET" else []

    async def post(i: int) -> bool:
        response = await target.client.post(target.prefix, json=bodies[i])
        if response.status_code != 202:
            return False
        target.ids.append(response.json()["id"])
        return True

    async def get(i: int) -> bool:
        response = await target.client.get(f"{target.prefix}/{ids[i]}")
        return response.status_code == 200

    cpu_before = cpu_seconds(target.server.pid)
    result = await run_load(
        count, CONCURRENCY, post if method == "POST" else get, time_limit=PHASE_TIME_LIMIT
    )
    if record:
        target.cpu[method] += cpu_seconds(target.server.pid) - cpu_before
        target.results[method].append(result)


def _uvicorn(factory: str, port: int) -> list[str]:
    return python_module(
        "uvicorn",
        factory,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    )


async def run(wd: Path, *, quick: bool, requests: int | None = None) -> Report:
    count = requests or (QUICK_REQUESTS if quick else DEFAULT_REQUESTS)
    per_round = max(1, count // ROUNDS)
    report = Report("api", "API overhead: create and read a task", quick)
    async with pg_database("api") as url:
        env = child_env(
            env="development",
            database_url=url,
            data_dir=wd / "data",
            run_worker="false",
            jwt_secret_key="bench-" + "j" * 40,
            storage_master_key=Fernet.generate_key().decode(),
            bcrypt_rounds=4,
            api_key="sk-unused",  # an upstream is "configured": no in-process simulator
            api_base_url="http://127.0.0.1:9",
            pythonpath=str(ROOT),
        )
        real_port, bare_port = free_port(), free_port()
        real = Server("real-app", _uvicorn("app.main:create_app", real_port), env, wd).start()
        targets: list[Target] = []
        bare: Server | None = None
        try:
            await real.wait_http(f"http://127.0.0.1:{real_port}/health")
            real_target = Target(
                "real app", real, f"http://127.0.0.1:{real_port}", "/api/v1/videos"
            )
            user = await _sign_up(real_target.client)
            real_target.client.headers["Authorization"] = f"Bearer {user['token']}"
            bare = Server(
                "bare-app",
                _uvicorn("bench.bare_app:create_bare_app", bare_port),
                {**env, "BENCH_USER_ID": user["id"]},
                wd,
            ).start()
            await bare.wait_http(f"http://127.0.0.1:{bare_port}/docs")
            bare_target = Target(
                "bare FastAPI", bare, f"http://127.0.0.1:{bare_port}", "/bare/videos"
            )
            targets = [bare_target, real_target]
            for target in targets:  # warm-up: connections, pools, statement caches
                await _phase(target, "POST", 200, record=False)
                await _phase(target, "GET", 200, record=False)
            for _ in range(ROUNDS):
                for method in ("POST", "GET"):
                    for target in targets:
                        await _phase(target, method, per_round)
        finally:
            for target in targets:
                await target.client.aclose()
            if bare is not None:
                bare.stop()
            real.stop()

    report.setup = [
        f"{CONCURRENCY} concurrent clients (httpx, keep-alive) in the benchmark process; "
        f"{per_round * ROUNDS:,} requests per endpoint and server in {ROUNDS} alternating rounds "
        "after a warm-up; both servers are single uvicorn processes (uvloop, httptools, "
        "log level warning) on the same fresh PostgreSQL database.",
        "Real app: bearer JWT of a user registered over the API, RUN_WORKER=false; POST body "
        "{model: sora-2, prompt: ~20 words, params: {duration: 10}}; GET of random created ids.",
        "Baseline: bench/bare_app.py, the same insert / select through the app's Database "
        "(engine, pool) and models; no auth, catalog, encryption, search index or middleware.",
    ]
    rows = []
    stats: dict[tuple[str, str], dict[str, float]] = {}
    for method in ("POST", "GET"):
        for target in targets:
            runs = target.results[method]
            latencies = [x for r in runs for x in r.latencies]
            done = sum(r.done for r in runs)
            errors = sum(r.errors for r in runs)
            seconds = sum(r.seconds for r in runs)
            stats[(method, target.name)] = {
                "p50": percentile(latencies, 50),
                "p99": percentile(latencies, 99),
                "rate": done / seconds if seconds else float("nan"),
                "cpu_ms": target.cpu[method] / max(1, done) * 1000,
                "errors": errors,
            }
    for method in ("POST", "GET"):
        base = stats[(method, "bare FastAPI")]
        for target in targets:
            s = stats[(method, target.name)]
            path = target.prefix + ("" if method == "POST" else "/{id}")
            rows.append(
                [
                    f"{method} {path}",
                    target.name,
                    ms(s["p50"]),
                    ms(s["p99"]),
                    f"{s['rate']:.0f}",
                    f"{s['cpu_ms']:.2f} ms",
                    ratio(s["p50"], base["p50"]),
                    ratio(s["p99"], base["p99"]),
                    ratio(s["cpu_ms"], base["cpu_ms"]),
                    f"{s['errors']:.0f}",
                ]
            )
    report.tables.append(
        Table(
            f"Latency under {CONCURRENCY} concurrent clients",
            [
                "endpoint",
                "server",
                "p50",
                "p99",
                "req/s",
                "server CPU per request",
                "p50 vs bare",
                "p99 vs bare",
                "CPU vs bare",
                "errors",
            ],
            rows,
        )
    )
    for method in ("POST", "GET"):
        s = stats[(method, "real app")]
        report.checks.append(
            Check(
                f"{method}: every request answered as expected",
                "0 errors",
                f"{s['errors']:.0f} errors",
                s["errors"] == 0,
            )
        )
    report.notes.append(
        "The issue sets no latency target for this benchmark: the ratios are the result. "
        "Both servers and the load generator share the machine's 2 cores."
    )
    return report


async def _sign_up(client: httpx.AsyncClient) -> dict[str, str]:
    password = "correct horse battery staple"
    created = await client.post(
        "/api/v1/auth/register",
        json={"username": "bench", "email": "bench@example.com", "password": password},
    )
    created.raise_for_status()
    login = await client.post(
        "/api/v1/auth/login", json={"username_or_email": "bench", "password": password}
    )
    login.raise_for_status()
    return {"id": created.json()["id"], "token": login.json()["access_token"]}
