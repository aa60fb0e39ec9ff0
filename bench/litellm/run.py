"""LiteLLM's proxy and ours side by side before one simulator: `POST /v1/images/generations`.

    uv run python -m bench.litellm.run                 # default sizes (~10 minutes)
    uv run python -m bench.litellm.run --quick         # smoke run
    uv run python -m bench.litellm.run --db sqlite     # ours on a SQLite file instead of PostgreSQL
    uv run python -m bench.litellm.run --profile 100   # also py-spy our server at 100 clients

Three targets, each a single process on this machine, all answering the same request body
(`dall-e-3`, `response_format: url`: a model both gateways accept that field for):

- `direct`: the simulator itself (`genapi simulator --task-seconds 0`), the baseline;
- `litellm`: `litellm --config … --num_workers 1` (LiteLLM's proxy, master key, no database),
  its model `openai/dall-e-3` with `api_base` = the simulator's `/v1`;
- `ours`: `genapi serve` (one uvicorn process, the task worker in-process as by default) with
  `API_BASE_URL`/`API_KEY` = the simulator, authenticated with a `gk_` API key.

LiteLLM is never added to the project: it lives in its own virtualenv (`LITELLM_VENV`, default
/tmp/litellm-venv), created here when missing with
`uv venv /tmp/litellm-venv --python 3.11 && uv pip install --python /tmp/litellm-venv
'litellm[proxy]==<LITELLM_VERSION>' httptools py-spy`. httptools is added so both proxies run on
the same uvicorn stack (uvloop + httptools; `litellm[proxy]` alone falls back to h11); py-spy
is for `--profile`.

The load generator is one httpx.AsyncClient per target in this process, N concurrent clients,
a fixed number of requests per phase (bounded in time too). Targets are measured in alternating
rounds (order rotated) at each concurrency, so all three see the same machine. Added latency is
the target's percentile minus the direct percentile at the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import os
import platform
import re
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import (
    CLK_TCK,
    ROOT,
    Server,
    child_env,
    cpu_seconds,
    free_port,
    machine_summary,
    percentile,
    postgres_version,
    workdir,
)

HERE = Path(__file__).resolve().parent
RESULTS_DIR = ROOT / "bench" / "results"  # git-ignored
RESULTS_JSON = RESULTS_DIR / "litellm.json"
LOGS_DIR = RESULTS_DIR / "litellm-logs"
VENV = Path(os.environ.get("LITELLM_VENV", "/tmp/litellm-venv"))
LITELLM_VERSION = os.environ.get("LITELLM_VERSION", "1.108.7")
VENV_EXTRAS = ("httptools", "py-spy")
PG_ADMIN_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
PG_DATABASE = "genapi_litellm_bench"

MODEL = "dall-e-3"
UPSTREAM_KEY = "sk-bench-simulator"
LITELLM_MASTER_KEY = "sk-bench-litellm-master"
TARGETS = ("direct", "litellm", "ours")
LEVELS = (1, 10, 100)
# Requests per (target, concurrency, round); every phase also stops after PHASE_TIME_LIMIT.
DEFAULT_REQUESTS = {1: 200, 10: 500, 100: 1000}
QUICK_REQUESTS = {1: 50, 10: 150, 100: 300}
DEFAULT_ROUNDS, QUICK_ROUNDS = 3, 1
WARMUP_REQUESTS = 50
PHASE_TIME_LIMIT = 60.0
REQUEST_TIMEOUT = 60.0


# ----------------------------------------------------------------------------- LiteLLM venv


def litellm_bin() -> Path:
    return VENV / "bin" / "litellm"


def ensure_litellm_venv() -> str:
    """Create the benchmark-only virtualenv when missing; returns LiteLLM's version."""
    python = VENV / "bin" / "python"
    if not litellm_bin().exists():
        print(f"creating {VENV} with litellm[proxy]=={LITELLM_VERSION} ...", flush=True)
        subprocess.run(["uv", "venv", str(VENV), "--python", "3.11"], check=True)
        subprocess.run(
            [
                "uv",
                "pip",
                "install",
                "--python",
                str(python),
                f"litellm[proxy]=={LITELLM_VERSION}",
                *VENV_EXTRAS,
            ],
            check=True,
        )
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, sys;"
            "print(' '.join(f'{p}=={m.version(p)}' for p in sys.argv[1:]))",
            "litellm",
            "uvicorn",
            "fastapi",
            "httpx",
            "httptools",
            "uvloop",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


# ----------------------------------------------------------------------------- PostgreSQL


async def _pg_admin(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def database_url(kind: str, wd: Path, index: int = 0) -> Any:
    """Ours' database: a fresh `genapi_litellm_bench` (dropped afterwards; `_1`, … for more
    variants) or a SQLite file. `genapi serve` migrates it on start."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{(wd / f'ours{index}.db').resolve()}"
        return
    name = PG_DATABASE + (f"_{index}" if index else "")
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    await _pg_admin(drop)
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await _pg_admin(drop)


# ----------------------------------------------------------------------------- targets


@dataclass
class Phase:
    latencies: list[float]
    errors: int
    seconds: float
    server_cpu: float  # CPU seconds of the target's process during the phase
    simulator_cpu: float
    db_cpu: float  # of the PostgreSQL backends serving the target's database (ours only)
    db_connections: int  # new PostgreSQL connections opened during the phase
    loadgen_cpu: float  # of this process
    first_error: str | None = None


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    server: Server | None
    db_name: str | None = None
    phases: dict[int, list[Phase]] = field(default_factory=lambda: collections.defaultdict(list))


def request_body(i: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "prompt": f"a lighthouse on a cliff at dusk, watercolor, variation {i}",
        "n": 1,
        "size": "1024x1024",
        "response_format": "url",
    }


def answered(response: httpx.Response) -> bool:
    if response.status_code != 200:
        return False
    data = response.json().get("data") or []
    return len(data) == 1 and bool(data[0].get("url"))


async def run_phase(
    client: httpx.AsyncClient,
    target: Target,
    simulator: Server,
    concurrency: int,
    count: int,
    offset: int,
) -> Phase:
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    next_index = 0
    deadline = time.perf_counter() + PHASE_TIME_LIMIT

    async def worker() -> None:
        nonlocal next_index, errors, first_error
        while next_index < count and time.perf_counter() < deadline:
            index = next_index
            next_index += 1
            begin = time.perf_counter()
            try:
                response = await client.post(
                    target.url, json=request_body(offset + index), headers=target.headers
                )
                ok = answered(response)
                if not ok and first_error is None:
                    first_error = f"{response.status_code}: {response.text[:300]}"
            except httpx.HTTPError as exc:
                ok = False
                first_error = first_error or f"{type(exc).__name__}: {exc}"
            if ok:
                latencies.append(time.perf_counter() - begin)
            else:
                errors += 1

    pids = [p.pid for p in (target.server, simulator) if p is not None]
    db_before = await db_snapshot(target.db_name)
    cpu_before = {pid: cpu_seconds(pid) for pid in pids}
    loadgen_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    loadgen = time.process_time() - loadgen_before
    cpu = {pid: cpu_seconds(pid) - cpu_before[pid] for pid in pids}
    db_after = await db_snapshot(target.db_name)
    db_cpu, db_connections = db_cpu_between(db_before, db_after)
    return Phase(
        latencies=latencies,
        errors=errors,
        seconds=seconds,
        server_cpu=cpu[target.server.pid] if target.server is not None else 0.0,
        simulator_cpu=cpu[simulator.pid],
        db_cpu=db_cpu,
        db_connections=db_connections,
        loadgen_cpu=loadgen,
        first_error=first_error,
    )


@dataclass
class DbSnapshot:
    backends: dict[int, float]  # live backends of the database: CPU seconds so far
    reaped: float  # CPU seconds of the postmaster's exited children (all databases)
    sessions: int  # connections ever opened to the database (pg_stat_database.sessions)


def _children_cpu(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[13]) + int(fields[14])) / CLK_TCK


async def db_snapshot(db_name: str | None) -> DbSnapshot | None:
    """The CPU spent by the PostgreSQL backends of `db_name` (same machine, root). Backends
    that exit during a phase (the pool closes its overflow connections) are counted through
    the postmaster's reaped-children time, which also holds other databases' exited
    backends: an upper bound while other jobs use the server."""
    if not db_name:
        return None
    engine = create_async_engine(PG_ADMIN_URL)
    try:
        async with engine.connect() as conn:
            pids = [
                int(r[0])
                for r in await conn.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = :name"),
                    {"name": db_name},
                )
            ]
            sessions = await conn.scalar(
                text("SELECT sessions FROM pg_stat_database WHERE datname = :name"),
                {"name": db_name},
            )
            data_dir = await conn.scalar(text("SHOW data_directory"))
    finally:
        await engine.dispose()
    backends: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            backends[pid] = cpu_seconds(pid)
    reaped = float("nan")
    with contextlib.suppress(OSError, ValueError, IndexError):
        postmaster = int((Path(str(data_dir)) / "postmaster.pid").read_text().split()[0])
        reaped = _children_cpu(postmaster)
    return DbSnapshot(backends=backends, reaped=reaped, sessions=int(sessions or 0))


def db_cpu_between(before: DbSnapshot | None, after: DbSnapshot | None) -> tuple[float, int]:
    """(CPU seconds, connections opened) of the database's backends between two snapshots."""
    if before is None or after is None:
        return 0.0, 0
    live = sum(v - before.backends.get(pid, 0.0) for pid, v in after.backends.items())
    exited_before = sum(v for pid, v in before.backends.items() if pid not in after.backends)
    reaped = after.reaped - before.reaped
    if reaped != reaped:  # postmaster not readable: live backends only
        return live, after.sessions - before.sessions
    return live + reaped - exited_before, after.sessions - before.sessions


# ----------------------------------------------------------------------------- servers


def python_cli(*args: str) -> list[str]:
    """`genapi …` with this interpreter, so the pid is the server itself, not a wrapper."""
    return [sys.executable, "-m", "app.cli", *args]


async def start_simulator(wd: Path) -> tuple[Server, str]:
    port = free_port()
    server = Server(
        "simulator",
        python_cli("simulator", "--port", str(port), "--task-seconds", "0"),
        child_env(pythonpath=str(ROOT)),
        wd,
    ).start()
    base = f"http://127.0.0.1:{port}"
    await server.wait_http(f"{base}/health")
    return server, base


async def start_litellm(wd: Path, simulator_base: str) -> tuple[Server, str]:
    port = free_port()
    template = string.Template((HERE / "litellm_config.yaml.tmpl").read_text())
    config = wd / "litellm_config.yaml"
    config.write_text(
        template.substitute(
            model=MODEL,
            api_base=f"{simulator_base}/v1",
            upstream_key=UPSTREAM_KEY,
            master_key=LITELLM_MASTER_KEY,
        )
    )
    env = child_env(
        # Offline machine: use the bundled model-price map instead of fetching it at start.
        litellm_local_model_cost_map="True",
        no_proxy="127.0.0.1,localhost",
    )
    for var in ("DATABASE_URL", "REDIS_HOST", "REDIS_URL", "LITELLM_LOG"):
        env.pop(var, None)
    args = [
        str(litellm_bin()),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    server = Server("litellm", args, env, wd).start()
    base = f"http://127.0.0.1:{port}"
    await server.wait_http(f"{base}/health/liveliness", within=180)
    return server, base


async def start_ours(
    wd: Path,
    simulator_base: str,
    db_url: str,
    *,
    name: str = "ours",
    traced: bool = False,
    whatif: str = "",
) -> tuple[Server, str, str]:
    """`genapi serve`; or, with `traced`, the same app with spans and the `whatif` prototypes
    (bench/litellm/trace_app.py) under the same uvicorn settings, after `genapi migrate`."""
    port = free_port()
    env = child_env(
        bench_whatif=whatif or None,
        env="development",
        database_url=db_url,
        data_dir=wd / f"data-{name}",
        api_base_url=simulator_base,
        api_key=UPSTREAM_KEY,
        jwt_secret_key="bench-litellm-" + "j" * 40,
        storage_master_key=Fernet.generate_key().decode(),
        bcrypt_rounds=4,
        pythonpath=str(ROOT),
    )
    if traced:
        migrated = await asyncio.to_thread(
            subprocess.run, python_cli("migrate"), env=env, cwd=wd, capture_output=True, text=True
        )
        if migrated.returncode:
            raise RuntimeError(f"genapi migrate failed:\n{migrated.stderr[-2000:]}")
        args = [sys.executable, "-m", "uvicorn", "bench.litellm.trace_app:create_traced_app"]
        args += ["--factory", "--host", "127.0.0.1", "--port", str(port), "--proxy-headers"]
    else:
        args = python_cli("serve", "--host", "127.0.0.1", "--port", str(port))
    server = Server(name, args, env, wd).start()
    base = f"http://127.0.0.1:{port}"
    await server.wait_http(f"{base}/health", within=120)
    api_key = await create_api_key(base)
    return server, base, api_key


async def create_api_key(base: str) -> str:
    password = "correct horse battery staple"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        created = await client.post(
            "/api/v1/auth/register",
            json={"username": "bench", "email": "bench@example.com", "password": password},
        )
        created.raise_for_status()
        login = await client.post(
            "/api/v1/auth/login", json={"username_or_email": "bench", "password": password}
        )
        login.raise_for_status()
        token = login.json()["access_token"]
        key = await client.post(
            "/api/v1/keys",
            json={"name": "litellm-bench"},
            headers={"Authorization": f"Bearer {token}"},
        )
        key.raise_for_status()
        secret = str(key.json()["key"])
        assert secret.startswith("gk_"), "expected a gk_ API key"
        return secret


# ----------------------------------------------------------------------------- profiling


def py_spy_bin() -> Path:
    return VENV / "bin" / "py-spy"


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    if not py_spy_bin().exists():
        subprocess.run(
            ["uv", "pip", "install", "--python", str(VENV / "bin" / "python"), "py-spy"],
            check=True,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(py_spy_bin()),
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--rate",
        "200",
        "--gil",
    ]
    return subprocess.Popen(
        [*command, "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


async def profile_ours(
    target: Target, simulator: Server, concurrency: int, count: int, out_dir: Path
) -> Path:
    """py-spy (collapsed stacks, idle frames excluded) on ours while it serves one phase."""
    assert target.server is not None
    out = out_dir / f"{target.name}-c{concurrency}.collapsed"
    spy = start_py_spy(target.server.pid, out)
    try:
        await asyncio.sleep(1.0)  # py-spy attaches
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as client:
            await run_phase(client, target, simulator, concurrency, count, 10_000_000)
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=10)
    return out


def _frame_package(frame: str) -> str:
    match = re.search(r"\((.*?):\d+\)", frame)
    path = match.group(1) if match else frame
    if path.startswith("app/"):
        return "/".join(path.split("/")[:3])  # app/core/tasks, app/api/openai, …
    return path.split("/")[0] if "/" in path else "stdlib"


def summarize_profile(path: Path, top: int = 25) -> str:
    """py-spy collapsed stacks (GIL holder only, i.e. CPU): self time by package, the app/
    frames with most time under them, and the hottest leaf frames."""
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = stack.split(";")
        for frame in set(frames):
            if "(app/" in frame and "app/cli/" not in frame:
                inclusive[frame] += n
        self_time[frames[-1]] += n
        packages[_frame_package(frames[-1])] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples (200 Hz, GIL holder only)", "", "self time by package:"]
    lines += [f"  {n * 100 / total:5.1f}%  {k}" for k, n in packages.most_common(12)]
    lines += ["", "inclusive, app/ frames:"]
    lines += [f"  {n * 100 / total:5.1f}%  {k}" for k, n in inclusive.most_common(top)]
    lines += ["", "self, any frame:"]
    lines += [f"  {n * 100 / total:5.1f}%  {k}" for k, n in self_time.most_common(15)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- report


def fmt_ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:.1f}"


def phase_line(phase: Phase) -> str:
    p50, p99 = percentile(phase.latencies, 50), percentile(phase.latencies, 99)
    rate = len(phase.latencies) / phase.seconds if phase.seconds else float("nan")
    return f"p50 {fmt_ms(p50)} ms, p99 {fmt_ms(p99)} ms, {rate:.0f} req/s, {phase.errors} errors"


def fmt_added(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:+.1f}"


def summarize(targets: list[Target], levels: tuple[int, ...]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for level in levels:
        base: dict[str, float] = {}
        for target in targets:
            phases = target.phases[level]
            latencies = [x for p in phases for x in p.latencies]
            done = sum(len(p.latencies) for p in phases)
            errors = sum(p.errors for p in phases)
            seconds = sum(p.seconds for p in phases)
            p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
            if target.name == "direct":
                base = {"p50": p50, "p99": p99}
            rows.append(
                {
                    "concurrency": level,
                    "target": target.name,
                    "requests": done,
                    "errors": errors,
                    "p50": p50,
                    "p99": p99,
                    "added_p50": p50 - base["p50"],
                    "added_p99": p99 - base["p99"],
                    "rps": done / seconds if seconds else float("nan"),
                    "rps_per_round": [
                        len(p.latencies) / p.seconds if p.seconds else float("nan") for p in phases
                    ],
                    "cpu_ms_per_request": (
                        sum(p.server_cpu for p in phases) / done * 1000 if done else float("nan")
                    ),
                    "db_cpu_ms_per_request": (
                        sum(p.db_cpu for p in phases) / done * 1000 if done else float("nan")
                    ),
                    "db_connections_per_100_requests": (
                        sum(p.db_connections for p in phases) / done * 100 if done else 0.0
                    ),
                    "loadgen_cpu_ms_per_request": (
                        sum(p.loadgen_cpu for p in phases) / done * 1000 if done else float("nan")
                    ),
                    "simulator_cpu_ms_per_request": (
                        sum(p.simulator_cpu for p in phases) / done * 1000 if done else float("nan")
                    ),
                    "first_error": next((p.first_error for p in phases if p.first_error), None),
                }
            )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| clients | target | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s "
        "| errors | CPU ms/req: server | PostgreSQL | simulator | load generator "
        "| new PG connections per 100 req |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        direct = r["target"] == "direct"
        db = r["db_cpu_ms_per_request"]
        conns = r["db_connections_per_100_requests"]
        server = "—" if direct else f"{r['cpu_ms_per_request']:.1f}"
        out.append(
            f"| {r['concurrency']} | {r['target']} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} "
            f"| {'—' if direct else fmt_added(r['added_p50'])} "
            f"| {'—' if direct else fmt_added(r['added_p99'])} | {r['rps']:.0f} "
            f"| {r['errors']} of {r['requests'] + r['errors']} "
            f"| {server} "
            f"| {f'{db:.1f}' if db else '—'} "
            f"| {r['simulator_cpu_ms_per_request']:.1f} | {r['loadgen_cpu_ms_per_request']:.1f} "
            f"| {f'{conns:.0f}' if db else '—'} |"
        )
    return "\n".join(out)


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    by = {(r["concurrency"], r["target"]): r for r in rows}
    lines = []
    names = [n for n in ("ours", "ours+whatif") if any(r["target"] == n for r in rows)]
    for level in sorted({r["concurrency"] for r in rows}):
        theirs = by[(level, "litellm")]
        for name in names:
            ours = by[(level, name)]
            checks = {
                "added p50": ours["added_p50"] < theirs["added_p50"],
                "added p99": ours["added_p99"] < theirs["added_p99"],
                "req/s": ours["rps"] > theirs["rps"],
            }
            text_checks = ", ".join(f"{k} {'WIN' if v else 'LOSS'}" for k, v in checks.items())
            lines.append(f"- {level} concurrent, {name} vs litellm: {text_checks}")
    return lines


# ----------------------------------------------------------------------------- main


async def run_levels(
    targets: list[Target],
    simulator: Server,
    levels: tuple[int, ...],
    rounds: int,
    counts: dict[int, int],
) -> None:
    """Warm up, then `rounds` alternating phases per target at each concurrency."""
    offset = 0
    for level in levels:
        limits = httpx.Limits(max_connections=level, max_keepalive_connections=level)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as client:
            for target in targets:  # connections, pools, statement caches
                warm = await run_phase(client, target, simulator, level, WARMUP_REQUESTS, offset)
                offset += WARMUP_REQUESTS
                if warm.errors:
                    raise RuntimeError(f"{target.name} warm-up: {warm.first_error}")
            for round_no in range(rounds):
                shift = round_no % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    phase = await run_phase(client, target, simulator, level, counts[level], offset)
                    offset += counts[level]
                    target.phases[level].append(phase)
                    print(
                        f"c={level:<3} round {round_no + 1}/{rounds} "
                        f"{target.name:<12} {phase_line(phase)}",
                        flush=True,
                    )


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    levels = tuple(int(x) for x in args.levels.split(","))
    requests = QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS
    counts = {level: args.requests or requests[level] for level in levels}
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    versions = ensure_litellm_venv()
    started = time.monotonic()
    load_before = os.getloadavg()
    profile_text = ""
    path = "/v1/images/generations"
    variants = [("ours", "")]
    if args.whatif:
        variants.append(("ours+whatif", args.whatif))
    with workdir("litellm") as wd:
        async with contextlib.AsyncExitStack() as stack:
            servers: list[Server] = []
            try:
                simulator, sim_base = await start_simulator(wd)
                servers.append(simulator)
                targets = [
                    Target(
                        "direct", sim_base + path, {"Authorization": f"Bearer {UPSTREAM_KEY}"}, None
                    )
                ]
                litellm, litellm_base = await start_litellm(wd, sim_base)
                servers.append(litellm)
                auth = {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"}
                targets.append(Target("litellm", litellm_base + path, auth, litellm))
                for index, (name, whatif) in enumerate(variants):
                    db_url = await stack.enter_async_context(database_url(args.db, wd, index))
                    # Stopped before its database is dropped (callbacks run last-in, first-out).
                    ours, base, key = await start_ours(
                        wd, sim_base, db_url, name=name, traced=bool(whatif), whatif=whatif
                    )
                    servers.append(ours)
                    stack.callback(ours.stop)
                    db_name = None if args.db == "sqlite" else make_url(db_url).database
                    auth = {"Authorization": f"Bearer {key}"}
                    targets.append(Target(name, base + path, auth, ours, db_name=db_name))
                await run_levels(targets, simulator, levels, rounds, counts)
                for target in targets[2:] if args.profile else []:
                    collapsed = await profile_ours(
                        target,
                        simulator,
                        args.profile,
                        args.profile_requests,
                        RESULTS_DIR / "litellm-profile",
                    )
                    summary = f"== {target.name}\n{summarize_profile(collapsed)}"
                    profile_text += summary + "\n\n"
                    print(summary, flush=True)
                for server in servers:
                    server.check_alive()
            finally:
                for server in reversed(servers):
                    if server.name in ("simulator", "litellm"):
                        server.stop()
                await stack.aclose()
                save_logs(servers)
    rows = summarize(targets, levels)
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_summary(await postgres_version()),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "python": platform.python_version(),
        "litellm_venv": versions,
        "database": "PostgreSQL" if args.db == "postgres" else "SQLite",
        "code": git_state(),
        "whatif": args.whatif,
        "quick": args.quick,
        "rounds": rounds,
        "requests_per_phase": {lvl: args.requests or requests[lvl] for lvl in levels},
        "seconds": time.monotonic() - started,
        "rows": rows,
        "profile": profile_text,
    }


def save_logs(servers: list[Server]) -> None:
    """Keep the servers' logs (the work directory is deleted) for post-mortems of errors."""
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    for server in servers:
        (LOGS_DIR / f"{server.name}.log").write_text(server.log_text())


def git_state() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "app")
    suffix = " + uncommitted changes in app/" if dirty else ""
    return git("rev-parse", "--short", "HEAD") + suffix


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.litellm.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one round")
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--rounds", type=int, help="alternating rounds per concurrency")
    parser.add_argument("--requests", type=int, help="requests per phase (all levels)")
    parser.add_argument(
        "--profile", type=int, metavar="N", help="also py-spy ours under N concurrent clients"
    )
    parser.add_argument("--profile-requests", type=int, default=1500)
    parser.add_argument(
        "--whatif",
        default="",
        help="also run ours with prototype fixes (trace_app.py): authcache",
    )
    parser.add_argument("--json", type=Path, default=RESULTS_JSON, help="where to save results")
    args = parser.parse_args()
    result = asyncio.run(measure(args))
    print()
    print(f"{result['date']}; {result['machine']}; ours on {result['database']}")
    print(f"LiteLLM venv: {result['litellm_venv']}")
    print(markdown_table(result["rows"]))
    print("\n".join(verdicts(result["rows"])))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str))
    print(f"saved {args.json}")


if __name__ == "__main__":
    main()
