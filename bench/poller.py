"""Poller: N in-flight tasks against the simulator on loopback, one `genapi worker` process.

Setup: the simulator runs as its own process (`genapi simulator`) with tasks that never finish;
N real simulator tasks are created over HTTP, then N already-submitted rows pointing at them are
inserted directly. A database trigger (installed by the bench, not part of the app) records
every poll the worker writes: the task, its `next_poll_at` before the poll, and the time the
poll's result was written. From that:

1. Paced: `next_poll_at` spread evenly over one interval, the worker runs for 2.2 intervals.
   Polls per second (target N / interval), scheduling lag (poll written minus `next_poll_at`),
   the longest gap between two polls of one task (must stay within 2x the interval), the
   worker's CPU and peak RSS (/proc).
2. Backlog: every task due at once; how fast the worker drains N polls, against the baseline of
   N bare httpx GETs to the same simulator at the same concurrency, measured in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import Table as SATable
from sqlalchemy import bindparam, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.encryption import Encryptor
from app.core.tasks.payload import TaskPayload
from app.db.migrate import upgrade_to_head
from app.models import GenerationTask, User
from bench.common import (
    Check,
    Deadline,
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
    status_mb,
)
from bench.load import LoadResult, run_load

DEFAULT_TASKS, DEFAULT_INTERVAL = 10_000, 30.0
QUICK_TASKS, QUICK_INTERVAL = 1_000, 5.0
CONCURRENCY = 50  # the worker's MAX_CONCURRENT_TASKS default
WINDOW_FACTOR = 2.2
SIM_KEY = "sk-bench"
PROMPT = "benchmark poller task [sim:never]"
BACKLOG_MARK = datetime(2000, 1, 1, tzinfo=UTC)  # a next_poll_at no real schedule produces
BACKLOG_LIMIT = 60.0  # seconds; the rate is taken over what was polled by then

PG_TRIGGER = [
    "CREATE TABLE bench_polls (task_id varchar(36) NOT NULL, scheduled float8, polled float8)",
    """CREATE FUNCTION bench_log_poll() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO bench_polls VALUES (NEW.id, extract(epoch FROM OLD.next_poll_at)::float8,
                                      extract(epoch FROM clock_timestamp())::float8);
      RETURN NULL;
    END $$""",
    """CREATE TRIGGER bench_poll_log AFTER UPDATE ON generation_tasks FOR EACH ROW
    WHEN (NEW.poll_attempts IS DISTINCT FROM OLD.poll_attempts)
    EXECUTE FUNCTION bench_log_poll()""",
]
SQLITE_TRIGGER = [
    "CREATE TABLE bench_polls (task_id TEXT NOT NULL, scheduled REAL, polled REAL)",
    """CREATE TRIGGER bench_poll_log AFTER UPDATE OF poll_attempts ON generation_tasks
    WHEN NEW.poll_attempts IS NOT OLD.poll_attempts
    BEGIN
      INSERT INTO bench_polls VALUES (NEW.id,
        (julianday(OLD.next_poll_at) - 2440587.5) * 86400.0,
        (julianday('now') - 2440587.5) * 86400.0);
    END""",
]


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def _sleep_until(epoch: float) -> None:
    await asyncio.sleep(max(0.0, epoch - time.time()))


@contextlib.asynccontextmanager
async def _database(backend: str, wd: Path) -> AsyncIterator[str]:
    if backend == "postgres":
        async with pg_database("poller") as url:
            yield url
    else:
        url = f"sqlite+aiosqlite:///{wd / 'poller.db'}"
        await asyncio.to_thread(upgrade_to_head, url)
        yield url


async def _seed(engine: AsyncEngine, backend: str, upstream_ids: list[str], key: str) -> None:
    statements = PG_TRIGGER if backend == "postgres" else SQLITE_TRIGGER
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))
        user_id = str(uuid.uuid4())
        await conn.execute(
            insert(User).values(
                id=user_id,
                username="bench",
                email="bench@example.invalid",
                password_hash="!",
                storage_quota_bytes=1024**3,
            )
        )
        now = datetime.now(UTC)
        request = Encryptor(key).encrypt_json(
            TaskPayload(prompt=PROMPT, params={"duration": 10}, upstream_model="sora-2").to_json()
        )
        rows = [
            {
                "id": str(uuid.uuid4()),
                "user_id": user_id,
                "kind": "video",
                "model": "sora-2",
                "adapter": "sora",
                "status": "in_progress",
                "submit_state": "submitted",
                "progress": 1,
                "upstream_id": upstream_id,
                "tags": [],
                "favorite": False,
                "request_encrypted": request,
                "poll_attempts": 0,
                "consecutive_errors": 0,
                "has_webhook": False,
                "deadline_at": now + timedelta(days=2),
                # Parked until the worker is up; the phases below set the real schedule.
                "next_poll_at": now + timedelta(days=1),
                "created_at": now,
                "updated_at": now,
                "submitted_at": now,
                "started_at": now,
            }
            for upstream_id in upstream_ids
        ]
        for start in range(0, len(rows), 2000):
            await conn.execute(insert(GenerationTask), rows[start : start + 2000])


async def _spread_schedule(engine: AsyncEngine, t0: float, interval: float) -> dict[str, float]:
    table = cast(SATable, GenerationTask.__table__)
    async with engine.begin() as conn:
        ids = sorted((await conn.execute(text("SELECT id FROM generation_tasks"))).scalars())
        step = interval / len(ids)
        statement = (
            table.update()
            .where(table.c.id == bindparam("b_id"))
            .values(next_poll_at=bindparam("b_when"))
        )
        await conn.execute(
            statement,
            [{"b_id": tid, "b_when": _utc(t0 + i * step)} for i, tid in enumerate(ids)],
        )
    return {tid: t0 + i * step for i, tid in enumerate(ids)}


def _analyse_paced(
    polls: list[tuple[str, float, float]],
    schedule: dict[str, float],
    t0: float,
    t_end: float,
    t_eval: float,
    interval: float,
) -> dict[str, Any]:
    """Rate, lag and gaps of the paced window [t0, t_end] (polls landing until t_eval count).

    Each task is taken to have been polled one interval before its first scheduled time (the
    steady state the spread schedule imitates), so a first poll that is late shows as a long
    gap too. A poll still outstanding at t_eval counts with the lag it has so far."""
    by_task: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for tid, scheduled, polled in polls:
        if t0 <= polled <= t_eval and tid in schedule and scheduled >= t0 - 1:
            by_task[tid].append((scheduled, polled))
    lags: list[float] = []
    worst_gap, violations, never, outstanding = 0.0, 0, 0, 0
    for tid, first in schedule.items():
        events = sorted(by_task.get(tid, []), key=lambda e: e[1])
        lags.extend(p - s for s, p in events if s <= t_end)
        previous = first - interval
        worst = 0.0
        for _, polled in events:
            if polled > t_end:
                break
            worst = max(worst, polled - previous)
            previous = polled
        worst = max(worst, t_end - previous)
        due = events[-1][1] + interval if events else first
        if due <= t_end:  # due inside the window and not polled by t_eval
            lags.append(t_eval - due)
            outstanding += 1
        never += not events
        worst_gap = max(worst_gap, worst)
        violations += worst > 2 * interval
    in_window = sum(1 for tid, _, p in polls if t0 <= p <= t_end and tid in schedule)
    return {
        "polls": in_window,
        "rate": in_window / (t_end - t0),
        "lag_p50": percentile(lags, 50),
        "lag_p99": percentile(lags, 99),
        "lag_max": max(lags) if lags else float("nan"),
        "max_gap": worst_gap,
        "violations": violations,
        "never": never,
        "outstanding": outstanding,
    }


async def _count_polls(engine: AsyncEngine, mark: float) -> tuple[int, float | None]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT count(*), max(polled) FROM bench_polls "
                    "WHERE scheduled BETWEEN :low AND :high"
                ),
                {"low": mark - 0.5, "high": mark + 0.5},
            )
        ).one()
    return int(row[0]), row[1]


async def _run_backend(
    backend: str, wd: Path, sim_url: str, upstream_ids: list[str], interval: float
) -> dict[str, Any]:
    key = Fernet.generate_key().decode()
    async with _database(backend, wd) as url:
        engine = create_async_engine(url)
        try:
            await _seed(engine, backend, upstream_ids, key)
            worker = Server(
                f"worker-{backend}",
                python_module("app.cli", "worker"),
                child_env(
                    env="development",
                    database_url=url,
                    data_dir=wd / f"data-{backend}",
                    api_base_url=sim_url,
                    api_key=SIM_KEY,
                    polling_interval=interval,
                    max_concurrent_tasks=CONCURRENCY,
                    storage_master_key=key,
                    jwt_secret_key="bench-" + "j" * 40,
                ),
                wd,
            ).start()
            try:
                await worker.wait_log(r"task worker \S+ started", within=60)
                return await _measure(engine, worker, len(upstream_ids), interval)
            finally:
                worker.stop()
        finally:
            await engine.dispose()


async def _measure(engine: AsyncEngine, worker: Server, n: int, interval: float) -> dict[str, Any]:
    result: dict[str, Any] = {}
    # 1. Paced.
    t0 = time.time() + max(3.0, n / 2000)
    schedule = await _spread_schedule(engine, t0, interval)
    result["schedule_late"] = time.time() > t0
    t_end = t0 + WINDOW_FACTOR * interval
    await _sleep_until(t0)
    cpu_start = cpu_seconds(worker.pid)
    await _sleep_until(t_end)
    worker.check_alive()
    cpu_paced = cpu_seconds(worker.pid) - cpu_start
    result["rss_paced"] = status_mb(worker.pid, "VmRSS")
    await asyncio.sleep(2.0)  # let polls due just before the end land
    t_eval = time.time()
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT task_id, scheduled, polled FROM bench_polls"))
        ).all()
        polls = [(str(r[0]), float(r[1]), float(r[2])) for r in rows]
    result.update(_analyse_paced(polls, schedule, t0, t_end, t_eval, interval))
    result["cpu_paced"] = cpu_paced
    result["cpu_cores"] = cpu_paced / (t_end - t0)
    result["cpu_per_poll_ms"] = cpu_paced / max(1, result["polls"]) * 1000
    # 2. Backlog: every idle task due now.
    mark = BACKLOG_MARK.timestamp()
    cpu_start = cpu_seconds(worker.pid)
    started = time.time()
    table = cast(SATable, GenerationTask.__table__)
    async with engine.begin() as conn:
        updated = await conn.execute(
            table.update().where(table.c.lease_owner.is_(None)).values(next_poll_at=BACKLOG_MARK)
        )
    target = int(updated.rowcount)
    deadline = Deadline(BACKLOG_LIMIT)
    done, last = 0, None
    while not deadline.expired:
        worker.check_alive()
        done, last = await _count_polls(engine, mark)
        if done >= target:
            break
        await asyncio.sleep(0.25)
    result["backlog_target"] = target
    result["backlog_done"] = done
    ended = last if done >= target and last is not None else time.time()
    result["backlog_seconds"] = ended - started
    result["backlog_rate"] = done / result["backlog_seconds"] if done else 0.0
    result["backlog_cpu_ms"] = (cpu_seconds(worker.pid) - cpu_start) / max(1, done) * 1000
    result["rss_peak"] = status_mb(worker.pid, "VmHWM")
    log = worker.log_text()
    result["log_errors"] = log.count(" ERROR ") + log.count("Traceback")
    result["log_error_lines"] = _error_lines(log)
    return result


def _error_lines(log: str, limit: int = 3) -> list[str]:
    """The first distinct ERROR messages and exception lines of a worker log (the log itself
    goes with the benchmark's temporary directory)."""
    found: list[str] = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if " ERROR " in line:
            message = line.split(" ERROR ", 1)[1].strip()
        elif line.startswith("Traceback"):
            tail = next((x for x in lines[i + 1 :] if x and not x.startswith(" ")), "")
            message = tail.strip()
        else:
            continue
        if message and message[:200] not in found:
            found.append(message[:200])
        if len(found) >= limit:
            break
    return found


async def _create_upstream_tasks(client: httpx.AsyncClient, n: int) -> list[str]:
    ids: list[str | None] = [None] * n

    async def create(i: int) -> bool:
        response = await client.post(
            "/v2/videos/generations", json={"model": "sora-2", "prompt": PROMPT}
        )
        if response.status_code != 200:
            return False
        ids[i] = response.json()["task_id"]
        return True

    result = await run_load(n, CONCURRENCY, create, time_limit=180)
    created = [i for i in ids if i]
    if len(created) != n:
        raise RuntimeError(f"created {len(created)} of {n} simulator tasks ({result.first_error})")
    return created


async def _bare_gets(client: httpx.AsyncClient, ids: list[str]) -> LoadResult:
    async def get(i: int) -> bool:
        response = await client.get(f"/v2/videos/generations/{ids[i]}")
        return response.status_code == 200

    return await run_load(len(ids), CONCURRENCY, get, time_limit=180)


async def run(
    wd: Path,
    *,
    quick: bool,
    tasks: int | None = None,
    interval: float | None = None,
    backends: tuple[str, ...] | None = None,
) -> Report:
    n = tasks or (QUICK_TASKS if quick else DEFAULT_TASKS)
    every = interval or (QUICK_INTERVAL if quick else DEFAULT_INTERVAL)
    # SQLite doubles the run time: a second row by default only at --quick sizes.
    backends = backends or (("postgres", "sqlite") if quick else ("postgres",))
    report = Report("poller", "Poller: in-flight tasks, one worker", quick)
    port = free_port()
    sim_url = f"http://127.0.0.1:{port}"
    simulator = Server(
        "simulator",
        python_module("app.cli", "simulator", "--port", str(port), "--task-seconds", "1000000"),
        child_env(),
        wd,
    ).start()
    try:
        await simulator.wait_http(f"{sim_url}/health")
        headers = {"Authorization": f"Bearer {SIM_KEY}"}
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(
            base_url=sim_url, headers=headers, limits=limits, timeout=30
        ) as client:
            # In progress from the first poll (not queued), so every poll is paced by the interval.
            response = await client.post("/_sim/config", json={"queued_fraction": 0})
            response.raise_for_status()
            ids = await _create_upstream_tasks(client, n)
            await _bare_gets(client, ids[: min(n, 500)])  # warm-up
            sim_cpu = cpu_seconds(simulator.pid)
            bare = await _bare_gets(client, ids)
            bare_sim_cpu = cpu_seconds(simulator.pid) - sim_cpu
        results: dict[str, dict[str, Any]] = {}
        for backend in backends:
            sim_cpu = cpu_seconds(simulator.pid)
            results[backend] = await _run_backend(backend, wd, sim_url, ids, every)
            results[backend]["sim_cpu"] = cpu_seconds(simulator.pid) - sim_cpu
    finally:
        simulator.stop()

    target = n / every
    report.setup = [
        f"{n:,} in-flight tasks, polling interval {every:g} s: target {target:.0f} polls/s; "
        f"one `genapi worker` process, MAX_CONCURRENT_TASKS={CONCURRENCY} (default), "
        "default DB pool (DATABASE_POOL_SIZE 20 + DATABASE_MAX_OVERFLOW 10 on PostgreSQL).",
        "Simulator: `genapi simulator` subprocess on loopback, tasks that never finish "
        "(in progress, progress < 50, so the worker's pace is exactly the interval).",
        f"Paced phase: `next_poll_at` spread evenly over one interval, measured over "
        f"{WINDOW_FACTOR:g} intervals ({WINDOW_FACTOR * every:.0f} s). Lag = time the poll's "
        "result was written (trigger on generation_tasks) minus the task's `next_poll_at`.",
        "Backlog phase: every task due at once; time until each was polled once. Baseline: the "
        f"same number of bare httpx GETs to the simulator, {CONCURRENCY} concurrent, same run.",
    ]
    paced_rows = []
    for backend, r in results.items():
        paced_rows.append(
            [
                backend,
                f"{r['rate']:.0f} / {target:.0f}",
                ms(r["lag_p50"]),
                ms(r["lag_p99"]),
                ms(r["lag_max"]),
                f"{r['max_gap']:.1f} s",
                f"{r['cpu_paced']:.1f} s ({r['cpu_cores'] * 100:.0f}% of a core)",
                f"{r['cpu_per_poll_ms']:.2f} ms",
                f"{r['rss_peak']:.0f} MiB",
                f"{r['violations']}",
            ]
        )
    report.tables.append(
        Table(
            f"Paced: {n:,} tasks every {every:g} s",
            [
                "database",
                "polls/s (got / target)",
                "lag p50",
                "lag p99",
                "lag max",
                "max gap between polls",
                "worker CPU",
                "CPU per poll",
                "worker peak RSS",
                "tasks over 2x interval",
            ],
            paced_rows,
        )
    )
    bare_cpu_ms = bare.cpu_seconds / max(1, bare.done) * 1000
    backlog_rows = [
        [
            "bare httpx GETs (baseline)",
            f"{bare.done:,}",
            f"{bare.seconds:.1f} s",
            f"{bare.rate:.0f}",
            "1.00x",
            f"{bare_cpu_ms:.2f} ms (client)",
            f"{bare_sim_cpu / max(1, bare.done) * 1000:.2f} ms",
        ]
    ]
    for backend, r in results.items():
        backlog_rows.append(
            [
                f"worker on {backend}",
                f"{r['backlog_done']:,} of {r['backlog_target']:,}",
                f"{r['backlog_seconds']:.1f} s",
                f"{r['backlog_rate']:.0f}",
                f"{r['backlog_rate'] / bare.rate:.2f}x",
                f"{r['backlog_cpu_ms']:.2f} ms (worker)",
                f"{r['sim_cpu'] / max(1, r['polls'] + r['backlog_done']) * 1000:.2f} ms",
            ]
        )
    report.tables.append(
        Table(
            "Backlog: all tasks due at once, vs bare GETs",
            [
                "client",
                "requests",
                "time",
                "per second",
                "ratio vs bare",
                "CPU per request",
                "simulator CPU per request",
            ],
            backlog_rows,
        )
    )
    for backend, r in results.items():
        report.checks.append(
            Check(
                f"{backend}: every task polled within 2x its interval",
                f"gap <= {2 * every:g} s",
                f"max gap {r['max_gap']:.1f} s, {r['violations']} tasks over, "
                f"{r['never']} never polled",
                r["violations"] == 0,
            )
        )
        report.checks.append(
            Check(
                f"{backend}: sustains the target poll rate",
                f">= {0.95 * target:.0f} polls/s",
                f"{r['rate']:.0f} polls/s",
                r["rate"] >= 0.95 * target,
            )
        )
        if r["backlog_rate"]:
            report.notes.append(
                f"{backend}: draining the backlog at {r['backlog_rate']:.0f} polls/s, this worker "
                f"could keep {n:,} tasks polled at an interval of about "
                f"{n / r['backlog_rate']:.0f} s ({every:g} s asked) on this machine at this load."
            )
        if r["schedule_late"]:
            report.notes.append(f"{backend}: the schedule was written after its start time.")
        if r["log_errors"]:
            report.notes.append(
                f"{backend}: the worker logged {r['log_errors']} errors, e.g. "
                + "; ".join(f"`{line}`" for line in r["log_error_lines"])
            )
    if bare.errors:
        report.notes.append(f"{bare.errors} bare GETs failed ({bare.first_error}).")
    return report
