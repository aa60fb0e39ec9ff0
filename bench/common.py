"""Shared plumbing: subprocess servers, /proc readings, throwaway PostgreSQL databases,
percentiles, and the report that is printed and written into docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
DOCS_FILE = ROOT / "docs" / "benchmarks.md"
RESULTS_DIR = ROOT / "bench" / "results"
PG_ADMIN_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Settings fields a developer's shell might carry; children get only what the bench sets.
_SETTING_NAMES = {
    "ENV",
    "HOST",
    "PORT",
    "DATA_DIR",
    "DATABASE_URL",
    "API_BASE_URL",
    "API_KEY",
    "JWT_SECRET_KEY",
    "STORAGE_MASTER_KEY",
    "RUN_WORKER",
    "POLLING_INTERVAL",
    "MAX_CONCURRENT_TASKS",
    "TASK_LEASE_SECONDS",
    "TASK_DEADLINE_MINUTES",
    "BCRYPT_ROUNDS",
    "MEDIA_MAX_BYTES",
    "MEDIA_DOWNLOAD_ALLOWED_HOSTS",
    "SIMULATOR_TASK_SECONDS",
    "SIMULATOR_API_KEY",
    "MODELS_FILE",
    "BACKUP_ENABLED",
    "CORS_ORIGINS",
}


# ----------------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:.1f} ms"


def ratio(value: float, baseline: float) -> str:
    if not baseline or value != value or baseline != baseline:
        return "n/a"
    return f"{value / baseline:.2f}x"


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/<pid>/stat)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces; the fields after its closing parenthesis do not.
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_mb(pid: int, key: str) -> float:
    """A kB line of /proc/<pid>/status (VmHWM: peak RSS, VmRSS: current) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_env(**overrides: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k.upper(): str(v) for k, v in overrides.items() if v is not None})
    return env


class Server:
    """A child process (a server), logging to a file; stopped by its own pid only."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Server:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.args,
            cwd=self.workdir,  # no stray .env is picked up
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = "\n".join(self.log_text().splitlines()[-30:])
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    async def wait_http(self, url: str, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                self.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(url)
                    if response.status_code < 500:
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} did not answer {url} within {within} s")

    async def wait_log(self, pattern: str, within: float = 60.0) -> None:
        regex = re.compile(pattern)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.check_alive()
            if regex.search(self.log_text()):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} did not log {pattern!r} within {within} s")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def python_module(module: str, *args: str) -> list[str]:
    """Run a module with this interpreter (the pid is then the server itself, not a wrapper)."""
    return [sys.executable, "-m", module, *args]


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"genapi-bench-{name}-") as path:
        yield Path(path)


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    @property
    def left(self) -> float:
        return self.until - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.left <= 0


# ----------------------------------------------------------------------------- PostgreSQL


async def _admin_execute(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def pg_database(prefix: str) -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database, dropped afterwards; yields its URL."""
    from app.db.migrate import upgrade_to_head

    name = f"genapi_bench_{prefix}_{uuid.uuid4().hex[:8]}"
    await _admin_execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(upgrade_to_head, url)
        yield url
    finally:
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def postgres_version() -> str:
    engine = create_async_engine(PG_ADMIN_URL)
    try:
        async with engine.connect() as conn:
            version = await conn.scalar(text("SHOW server_version"))
            return f"PostgreSQL {version}"
    except Exception as exc:
        return f"PostgreSQL unreachable ({type(exc).__name__})"
    finally:
        await engine.dispose()


# ----------------------------------------------------------------------------- reports


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Check:
    name: str
    target: str
    measured: str
    passed: bool


@dataclass
class Report:
    name: str
    title: str
    quick: bool
    setup: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    machine: str = ""
    load: str = ""

    def text(self) -> str:
        out = [f"== {self.title}{' (--quick)' if self.quick else ''}", *self.setup, ""]
        for table in self.tables:
            out.append(table.title)
            out.extend(_text_table(table.headers, table.rows))
            out.append("")
        if self.checks:
            out.extend(
                _text_table(
                    ["check", "target", "measured", "result"],
                    [[c.name, c.target, c.measured, _verdict(c.passed)] for c in self.checks],
                )
            )
            out.append("")
        out.extend(f"note: {n}" for n in self.notes)
        out.append(f"({self.seconds:.0f} s; load average {self.load})")
        return "\n".join(out)

    def markdown(self) -> str:
        size = "`--quick` sizes" if self.quick else "default sizes"
        out = [
            f"_Last run: {self.machine}; {size}; took {self.seconds:.0f} s; 1-minute load "
            f"average at start / end: {self.load} (2 cores: above 2 means other jobs competed "
            "for the CPU)._",
            "",
        ]
        out.extend(f"- {line}" for line in self.setup)
        out.append("")
        for table in self.tables:
            out.append(f"**{table.title}**")
            out.append("")
            out.extend(_md_table(table.headers, table.rows))
            out.append("")
        if self.checks:
            out.extend(
                _md_table(
                    ["Check", "Target", "Measured", "Result"],
                    [[c.name, c.target, c.measured, _verdict(c.passed)] for c in self.checks],
                )
            )
            out.append("")
        out.extend(f"> {note}\n" for note in self.notes)
        return "\n".join(out).rstrip() + "\n"


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _text_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return out


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out.extend("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)
    return out


def load_average() -> float:
    """The 1-minute load average: how busy the machine was (other jobs share these cores)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def machine_summary(pg_version: str) -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = float("nan")
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024**2
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{today}, {os.cpu_count()} cores ({cpu or platform.machine()}), {mem_gib:.1f} GiB RAM, "
        f"Python {platform.python_version()}, {pg_version}"
    )


def write_docs(report: Report) -> None:
    """Replace the report's section in docs/benchmarks.md (between its markers)."""
    begin, end = f"<!-- bench:{report.name}:begin -->", f"<!-- bench:{report.name}:end -->"
    content = DOCS_FILE.read_text() if DOCS_FILE.exists() else ""
    block = f"{begin}\n{report.markdown()}{end}"
    if begin in content and end in content:
        head, rest = content.split(begin, 1)
        _, tail = rest.split(end, 1)
        content = head + block + tail
    else:
        content = content.rstrip() + f"\n\n## {report.title}\n\n{block}\n"
    DOCS_FILE.write_text(content)


def save_json(report: Report) -> Path:
    import json
    from dataclasses import asdict

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{report.name}.json"
    path.write_text(json.dumps(asdict(report), indent=2))
    return path
