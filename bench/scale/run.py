"""Scale-out: 2 API + 2 worker processes on PostgreSQL, against one process doing everything.

Setup, per scenario, from scratch: the PostgreSQL database `genapi_scale` (dropped if left over,
created, migrated; dropped at the end), a standalone simulator (`genapi simulator --port P
--task-seconds 1`) that every process talks to over loopback, and then

- fleet: 2 API processes (`genapi serve --no-migrate`, RUN_WORKER=false, two ports) and
  2 `genapi worker` processes, all on that database and one media directory;
- one process: 1 API process (`genapi serve --no-migrate`) with the worker inside it.

Load: N sora-2 tasks (5,000; 1,000 with --quick), each with a unique prompt, created by 100
concurrent httpx clients (10 users, keep-alive) spread round-robin over the API ports, each
create with its own Idempotency-Key (sent again under the same key after a transport error).
Then the benchmark waits (bounded) until every task is terminal, reading the database.

Checks, per scenario: every task completed; the simulator saw exactly one create per prompt and
no other create (`/_sim/stats`), so no task was submitted twice; exactly one stored media row
per task. Reported: create throughput and latency p50/p99, completion throughput (tasks from the
first create to the last completion, by the database's own timestamps), end-to-end task latency,
the app processes' CPU per task; and the fleet / one-process ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.config import Settings
from app.models import GenerationTask, Media
from bench.common import (
    PG_ADMIN_URL,
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
    python_module,
    ratio,
)
from bench.load import LoadResult, run_load
from bench.words import PromptGenerator

DATABASE_NAME = "genapi_scale"
DEFAULT_TASKS, QUICK_TASKS = 5_000, 1_000
CLIENTS = 100
USERS = 10
SIM_KEY = "sk-bench-scale"
TASK_SECONDS = 1.0
POLLING_INTERVAL = 1.0
CREATE_TIME_LIMIT = 900.0
CREATE_ATTEMPTS = 3
PASSWORD = "correct horse battery staple"
TERMINAL = ("completed", "failed", "cancelled")


# The service's own pool defaults (DATABASE_POOL_SIZE, DATABASE_MAX_OVERFLOW).
DEFAULT_POOL: tuple[int, int] = (
    Settings.model_fields["database_pool_size"].default,
    Settings.model_fields["database_max_overflow"].default,
)


@dataclass
class Scenario:
    name: str
    apis: int
    workers: int  # separate `genapi worker` processes; 0: the worker runs inside the API
    # Per-process connection pool (DATABASE_POOL_SIZE, DATABASE_MAX_OVERFLOW), always set in the
    # children's environment so a value in the caller's shell cannot change the figures.
    pool: tuple[int, int] = DEFAULT_POOL


# 4 processes x 15 connections (+ a LISTEN connection and a lock connection each at most)
# stay well under PostgreSQL's default max_connections of 100; 4 x 30 would not.
FLEET = Scenario("2 API + 2 workers", apis=2, workers=2, pool=(10, 5))
SINGLE = Scenario("1 process", apis=1, workers=0)


@dataclass
class Outcome:
    scenario: Scenario
    tasks: int
    create: LoadResult = field(default_factory=LoadResult)
    completion_seconds: float = float("nan")
    e2e: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    sim_creates: int = -1
    sim_create_requests: int = -1
    prompts_created_once: int = 0
    prompts_not_ours: int = 0
    media_rows: int = -1
    media_tasks: int = -1
    app_cpu: float = float("nan")
    peak_connections: int = 0  # to genapi_scale, sampled every second
    peak_connections_all: int = 0  # to the whole server (other users of it included)
    max_connections: int = 0
    retries: int = 0  # creates sent again after a transport error (same Idempotency-Key)
    replays: int = 0  # of which the service answered as a replay of an earlier create
    timed_out: bool = False

    @property
    def create_rate(self) -> float:
        return self.create.rate

    @property
    def completion_rate(self) -> float:
        seconds = self.completion_seconds
        return self.statuses.get("completed", 0) / seconds if seconds == seconds else float("nan")

    def checks(self) -> list[Check]:
        n, label = self.tasks, self.scenario.name
        completed = self.statuses.get("completed", 0)
        others = {k: v for k, v in self.statuses.items() if k != "completed"}
        return [
            Check(
                f"{label}: every create answered (202, or 200 for a replay)",
                f"{n:,}",
                f"{len(self.create.latencies):,} ({self.create.errors} errors; "
                f"{self.retries} resent, {self.replays} replays)",
                len(self.create.latencies) == n and self.create.errors == 0,
            ),
            Check(
                f"{label}: every task completed",
                f"{n:,} completed",
                f"{completed:,} completed" + (f", other: {others}" if others else ""),
                completed == n and not others,
            ),
            Check(
                f"{label}: one upstream create per task (simulator)",
                f"{n:,} prompts x 1 create",
                f"{self.prompts_created_once:,} prompts created once, "
                f"{self.sim_creates:,} creates in all, {self.prompts_not_ours} unknown prompts",
                self.prompts_created_once == n
                and self.sim_creates == n
                and self.sim_create_requests == n
                and self.prompts_not_ours == 0,
            ),
            Check(
                f"{label}: one stored media row per task",
                f"{n:,} rows, {n:,} tasks",
                f"{self.media_rows:,} rows, {self.media_tasks:,} tasks",
                self.media_rows == n and self.media_tasks == n,
            ),
        ]


# ----------------------------------------------------------------------------- database


def _database_url() -> str:
    return make_url(PG_ADMIN_URL).set(database=DATABASE_NAME).render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def scale_database() -> AsyncIterator[str]:
    """`genapi_scale`, fresh and migrated; dropped afterwards (and first, if left over)."""
    from app.db.migrate import upgrade_to_head

    await _admin(f'DROP DATABASE IF EXISTS "{DATABASE_NAME}" WITH (FORCE)')
    await _admin(f'CREATE DATABASE "{DATABASE_NAME}"')
    url = _database_url()
    try:
        await asyncio.to_thread(upgrade_to_head, url)
        yield url
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{DATABASE_NAME}" WITH (FORCE)')


# ----------------------------------------------------------------------------- processes


def _cli(*args: str) -> list[str]:
    """`genapi …` (`python -m app.cli`, so no installed script is needed)."""
    return python_module("app.cli", *args)


async def _start_fleet(
    scenario: Scenario, wd: Path, url: str, sim_url: str
) -> tuple[list[Server], list[Server], list[str]]:
    base = wd / scenario.name.replace(" ", "-").replace("+", "")
    base.mkdir(parents=True, exist_ok=True)
    env = child_env(
        env="development",
        database_url=url,
        data_dir=base / "data",  # one media store for the whole fleet
        api_base_url=sim_url,
        api_key=SIM_KEY,
        jwt_secret_key="bench-" + "j" * 40,
        storage_master_key=Fernet.generate_key().decode(),
        bcrypt_rounds=4,
        polling_interval=POLLING_INTERVAL,
        run_worker="false" if scenario.workers else "true",
        database_pool_size=scenario.pool[0],
        database_max_overflow=scenario.pool[1],
        pythonpath=str(ROOT),
    )
    apis: list[Server] = []
    workers: list[Server] = []
    urls: list[str] = []
    try:
        for index in range(scenario.apis):
            port = free_port()
            apis.append(
                Server(
                    f"api-{index + 1}",
                    _cli("serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)),
                    env,
                    base,
                ).start()
            )
            urls.append(f"http://127.0.0.1:{port}")
        for index in range(scenario.workers):
            workers.append(Server(f"worker-{index + 1}", _cli("worker"), env, base).start())
        for server, api_url in zip(apis, urls, strict=True):
            await server.wait_http(f"{api_url}/health", within=120)
        for worker in workers:
            await worker.wait_log(r"task worker \S+ started", within=120)
    except BaseException:
        for server in (*apis, *workers):
            server.stop()
        raise
    return apis, workers, urls


# ----------------------------------------------------------------------------- load


async def _sign_up(client: httpx.AsyncClient, count: int) -> list[str]:
    tokens = []
    for index in range(count):
        name = f"scale{index}"
        created = await client.post(
            "/api/v1/auth/register",
            json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
        )
        created.raise_for_status()
        login = await client.post(
            "/api/v1/auth/login", json={"username_or_email": name, "password": PASSWORD}
        )
        login.raise_for_status()
        tokens.append(login.json()["access_token"])
    return tokens


def _prompts(count: int, seed: int) -> list[str]:
    words = PromptGenerator(seed=seed)
    # The suffix makes each prompt unique: the simulator counts creates per prompt.
    return [f"{words.prompt()} (take {index})" for index in range(count)]


async def _create_all(
    urls: list[str], tokens: list[str], prompts: list[str], clients: int
) -> tuple[LoadResult, list[str], int, int]:
    http = [
        httpx.AsyncClient(
            base_url=url,
            timeout=120,
            limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients),
        )
        for url in urls
    ]
    ids: list[str] = []

    counts = {"retries": 0, "replays": 0}

    async def post(index: int) -> bool:
        # A keep-alive connection the server closes just as a request goes out fails with a
        # transport error, and the client cannot know whether the task was created. Like any
        # careful client it sends the same request again under the same Idempotency-Key: the
        # service answers a replay with the first task, never a second one.
        headers = {
            "Authorization": f"Bearer {tokens[index % len(tokens)]}",
            "Idempotency-Key": f"scale-{index}",
        }
        body = {"model": "sora-2", "prompt": prompts[index], "params": {"duration": 10}}
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                response = await http[index % len(http)].post(
                    "/api/v1/videos", json=body, headers=headers
                )
                break
            except httpx.TransportError:
                if attempt == CREATE_ATTEMPTS:
                    raise
                counts["retries"] += 1
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        if response.status_code != (200 if replayed else 202):
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        counts["replays"] += replayed
        ids.append(response.json()["id"])
        return True

    try:
        result = await run_load(len(prompts), clients, post, time_limit=CREATE_TIME_LIMIT)
    finally:
        for client in http:
            await client.aclose()
    return result, ids, counts["retries"], counts["replays"]


async def _wait_terminal(
    engine: AsyncEngine, count: int, within: float, servers: list[Server]
) -> bool:
    """True when all `count` tasks are terminal; False when `within` seconds passed first."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for server in servers:
            server.check_alive()
        async with engine.connect() as conn:
            done = await conn.scalar(
                select(func.count())
                .select_from(GenerationTask)
                .where(GenerationTask.status.in_(TERMINAL))
            )
        if (done or 0) >= count:
            return True
        await asyncio.sleep(0.5)
    return False


async def _collect(engine: AsyncEngine, outcome: Outcome) -> None:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(GenerationTask.status, func.count()).group_by(GenerationTask.status)
        )
        outcome.statuses = {status: int(n) for status, n in rows.all()}
        times = (
            await conn.execute(
                select(GenerationTask.created_at, GenerationTask.completed_at).where(
                    GenerationTask.status == "completed"
                )
            )
        ).all()
        outcome.media_rows = int(
            await conn.scalar(
                select(func.count()).select_from(Media).where(Media.state == "stored")
            )
            or 0
        )
        outcome.media_tasks = int(
            await conn.scalar(select(func.count(func.distinct(Media.task_id)))) or 0
        )
    spans = [(created, completed) for created, completed in times if completed is not None]
    if spans:
        first = min(created for created, _ in spans)
        last = max(completed for _, completed in spans)
        outcome.completion_seconds = (last - first).total_seconds()
        outcome.e2e = [(completed - created).total_seconds() for created, completed in spans]


async def _simulator_stats(sim_url: str, prompts: list[str], outcome: Outcome) -> None:
    async with httpx.AsyncClient(
        base_url=sim_url, timeout=60, headers={"Authorization": f"Bearer {SIM_KEY}"}
    ) as client:
        response = await client.get("/_sim/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
    outcome.sim_creates = int(stats["creates"])
    outcome.sim_create_requests = int(stats["create_requests"])
    by_prompt: dict[str, dict[str, int]] = stats["by_prompt"]
    ours = set(prompts)
    outcome.prompts_created_once = sum(
        1 for prompt in prompts if by_prompt.get(prompt, {}).get("creates") == 1
    )
    outcome.prompts_not_ours = sum(1 for prompt in by_prompt if prompt not in ours)


async def run_scenario(
    scenario: Scenario, wd: Path, *, tasks: int, clients: int, seed: int
) -> Outcome:
    outcome = Outcome(scenario, tasks)
    prompts = _prompts(tasks, seed)
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    simulator = Server(
        f"simulator-{scenario.apis}x{scenario.workers}",
        _cli("simulator", "--port", str(sim_port), "--task-seconds", str(TASK_SECONDS)),
        child_env(simulator_api_key=SIM_KEY, pythonpath=str(ROOT)),
        wd,
    ).start()
    try:
        await simulator.wait_http(f"{sim_url}/health")
        async with scale_database() as url:
            apis, workers, urls = await _start_fleet(scenario, wd, url, sim_url)
            servers = [*apis, *workers]
            engine = create_async_engine(url)
            sampler = asyncio.create_task(_sample_connections(engine, outcome))
            try:
                async with httpx.AsyncClient(base_url=urls[0], timeout=60) as client:
                    tokens = await _sign_up(client, USERS)
                cpu_before = sum(cpu_seconds(s.pid) for s in servers)
                outcome.create, ids, outcome.retries, outcome.replays = await _create_all(
                    urls, tokens, prompts, clients
                )
                if outcome.create.first_error:
                    print(f"  first create error: {outcome.create.first_error}", flush=True)
                within = 120.0 + tasks * 0.2
                outcome.timed_out = not await _wait_terminal(engine, len(ids), within, servers)
                outcome.app_cpu = sum(cpu_seconds(s.pid) for s in servers) - cpu_before
                await _collect(engine, outcome)
                await _simulator_stats(sim_url, prompts, outcome)
                if not all(check.passed for check in outcome.checks()):
                    _print_log_errors(servers)
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
                await engine.dispose()
                for server in servers:
                    server.stop()
    finally:
        simulator.stop()
    return outcome


async def _sample_connections(engine: AsyncEngine, outcome: Outcome) -> None:
    """Peak PostgreSQL connections, ours and the server's: a fleet's pools must fit together
    under max_connections (with whatever else uses the server)."""
    query = text(
        "SELECT count(*) FILTER (WHERE datname = current_database()), count(*), "
        "current_setting('max_connections')::int FROM pg_stat_activity"
    )
    while True:
        with contextlib.suppress(Exception):
            async with engine.connect() as conn:
                ours, total, limit = (await conn.execute(query)).one()
            outcome.peak_connections = max(outcome.peak_connections, int(ours))
            outcome.peak_connections_all = max(outcome.peak_connections_all, int(total))
            outcome.max_connections = int(limit)
        await asyncio.sleep(1.0)


def _print_log_errors(servers: list[Server], limit: int = 12) -> None:
    """The first error lines of each process's log, to say why a check failed."""
    for server in servers:
        lines = [
            line
            for line in server.log_text().splitlines()
            if "Error" in line or "error" in line.split(":", 1)[0] or "Traceback" in line
        ]
        if lines:
            print(f"  {server.name}: {len(lines)} error lines, the first ones:", flush=True)
            for line in lines[:limit]:
                print(f"    {line[:300]}", flush=True)


# ----------------------------------------------------------------------------- report


def _row(outcome: Outcome) -> list[str]:
    create = outcome.create
    return [
        outcome.scenario.name,
        f"{create.rate:.0f}",
        ms(percentile(create.latencies, 50)),
        ms(percentile(create.latencies, 99)),
        f"{outcome.completion_rate:.1f}",
        f"{percentile(outcome.e2e, 50):.1f} s",
        f"{percentile(outcome.e2e, 99):.1f} s",
        f"{outcome.app_cpu / max(1, outcome.tasks) * 1000:.1f} ms",
        f"{outcome.peak_connections} / {outcome.peak_connections_all} of {outcome.max_connections}",
    ]


def build_report(fleet: Outcome, single: Outcome | None, *, quick: bool) -> Report:
    report = Report("scale", "Scale-out: 2 API + 2 worker processes vs one process", quick)
    report.setup = [
        f"{fleet.tasks:,} sora-2 tasks with unique prompts, created by {CLIENTS} concurrent "
        f"httpx clients ({USERS} users, keep-alive) spread round-robin over the API ports.",
        f"Upstream: `genapi simulator --task-seconds {TASK_SECONDS:g}` (a subprocess on "
        f"loopback, shared by all processes); POLLING_INTERVAL={POLLING_INTERVAL:g} s, "
        "MAX_CONCURRENT_TASKS=50 per worker (the default).",
        f"Database: PostgreSQL `{DATABASE_NAME}`, created and migrated per scenario, dropped "
        "afterwards. Fleet: 2 `genapi serve --no-migrate` (RUN_WORKER=false) + 2 `genapi "
        f"worker`, one media directory, each process's connection pool capped at "
        f"{FLEET.pool[0]} + {FLEET.pool[1]} overflow (DATABASE_POOL_SIZE / "
        f"DATABASE_MAX_OVERFLOW; 4 x the default {sum(DEFAULT_POOL)} would pass PostgreSQL's "
        "max_connections of 100). One process: `genapi serve --no-migrate` with its worker "
        f"inside and the default pool ({DEFAULT_POOL[0]} + {DEFAULT_POOL[1]}).",
        "Each create carries its own Idempotency-Key; one that fails at the transport level "
        "(a keep-alive connection closed by the server as the request went out) is sent "
        f"again, at most {CREATE_ATTEMPTS} attempts, under the same key.",
        "Completion throughput: completed tasks / (last completed_at - first created_at); "
        "end-to-end: completed_at - created_at per task. App CPU: user+system time of the "
        "API and worker processes during the run (simulator and PostgreSQL excluded).",
    ]
    outcomes = [fleet] + ([single] if single is not None else [])
    report.tables.append(
        Table(
            "Throughput and latency",
            [
                "setup",
                "creates/s",
                "create p50",
                "create p99",
                "completions/s",
                "task p50",
                "task p99",
                "app CPU per task",
                "PG connections: ours / all, peak",
            ],
            [_row(o) for o in outcomes],
        )
    )
    if single is not None:
        report.tables.append(
            Table(
                "Fleet / one process",
                ["creates/s", "create p50", "create p99", "completions/s", "task p50", "task p99"],
                [
                    [
                        ratio(fleet.create_rate, single.create_rate),
                        ratio(
                            percentile(fleet.create.latencies, 50),
                            percentile(single.create.latencies, 50),
                        ),
                        ratio(
                            percentile(fleet.create.latencies, 99),
                            percentile(single.create.latencies, 99),
                        ),
                        ratio(fleet.completion_rate, single.completion_rate),
                        ratio(percentile(fleet.e2e, 50), percentile(single.e2e, 50)),
                        ratio(percentile(fleet.e2e, 99), percentile(single.e2e, 99)),
                    ]
                ],
            )
        )
    report.notes.append(
        f"All processes (API, workers, simulator, PostgreSQL and the load generator) share this "
        f"machine's {os.cpu_count()} cores: more processes cannot add CPU here, so the ratios "
        "show how the work is spread, not how far more machines would take it."
    )
    for outcome in outcomes:
        report.checks.extend(outcome.checks())
        if outcome.timed_out:
            report.notes.append(f"{outcome.scenario.name}: not every task ended in time.")
    return report


async def run(
    wd: Path,
    *,
    quick: bool,
    tasks: int | None = None,
    clients: int = CLIENTS,
    single: bool = True,
) -> Report:
    """Both scenarios (the fleet first), as a `bench.common.Report` named "scale"."""
    count = tasks or (QUICK_TASKS if quick else DEFAULT_TASKS)
    seeds = itertools.count(17)
    print(f"  fleet: {FLEET.name}, {count:,} tasks", flush=True)
    fleet = await run_scenario(FLEET, wd, tasks=count, clients=clients, seed=next(seeds))
    one: Outcome | None = None
    if single:
        print(f"  one process: {count:,} tasks", flush=True)
        one = await run_scenario(SINGLE, wd, tasks=count, clients=clients, seed=next(seeds))
    return build_report(fleet, one, quick=quick)
