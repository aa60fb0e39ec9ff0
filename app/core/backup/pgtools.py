"""Running the PostgreSQL client tools (pg_dump, pg_restore) against our DATABASE_URL.

The connection goes to the tools through libpq environment variables (PGHOST, PGPASSWORD, …),
never on the command line, where any local user could read the password in the process list.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import shutil
from pathlib import Path

from sqlalchemy.engine import make_url

from app.core.backup.errors import BackupError, BackupToolMissing

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
# How much of a failing tool's stderr goes into the error message.
MAX_STDERR_CHARS = 2000

# asyncpg spells TLS as ?ssl=…; libpq wants PGSSLMODE.
_SSL_TO_SSLMODE = {
    "true": "require",
    "1": "require",
    "false": "disable",
    "0": "disable",
    "disable": "disable",
    "allow": "allow",
    "prefer": "prefer",
    "require": "require",
    "verify-ca": "verify-ca",
    "verify-full": "verify-full",
}


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/([0-9.]+)/bin", path)
    if not match:
        return (0,)
    return tuple(int(part) for part in match.group(1).split(".") if part.isdigit())


def find_pg_tool(name: str) -> str:
    """Path of `name` (pg_dump, pg_restore): PATH first, then the newest Debian-style install."""
    found = shutil.which(name)
    if found:
        return found
    candidates = [
        os.path.join(directory, name)
        for directory in glob.glob(PG_BIN_GLOB)
        if os.access(os.path.join(directory, name), os.X_OK)
    ]
    if candidates:
        return max(candidates, key=_version_key)
    raise BackupToolMissing(
        f"{name} was not found on PATH or in {PG_BIN_GLOB}; install the PostgreSQL client "
        "tools (e.g. apt-get install postgresql-client) at least as new as the server"
    )


def libpq_env(database_url: str, *, database: str | None = None) -> dict[str, str]:
    """The process environment plus the connection of `database_url` as PG* variables."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        raise BackupError("pg_dump/pg_restore need a PostgreSQL DATABASE_URL")
    env = dict(os.environ)
    query = {key: value if isinstance(value, str) else value[0] for key, value in url.query.items()}
    values = {
        "PGHOST": url.host or query.get("host"),
        "PGPORT": str(url.port) if url.port else query.get("port"),
        "PGUSER": url.username or query.get("user"),
        "PGPASSWORD": url.password if url.password is not None else None,
        "PGDATABASE": database or url.database,
    }
    ssl = query.get("sslmode") or query.get("ssl")
    if ssl is not None:
        values["PGSSLMODE"] = _SSL_TO_SSLMODE.get(ssl.lower(), ssl)
    for variable, value in values.items():
        if value:
            env[variable] = str(value)
    env.setdefault("PGAPPNAME", "genapi-backup")
    env["PGCONNECT_TIMEOUT"] = env.get("PGCONNECT_TIMEOUT", "30")
    return env


async def run_pg_tool(name: str, args: list[str], env: dict[str, str]) -> str:
    """Run a client tool to completion; returns its stdout, raises `BackupError` on failure."""
    executable = find_pg_tool(name)
    process = await asyncio.create_subprocess_exec(
        executable,
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await process.communicate()
    except BaseException:
        # Cancelled (service shutting down): don't leave a pg_dump running behind us.
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        message = stderr.decode("utf-8", errors="replace").strip()[-MAX_STDERR_CHARS:]
        raise BackupError(f"{name} failed (exit {process.returncode}): {message}")
    return stdout.decode("utf-8", errors="replace")


_TOC_TABLE = re.compile(r"^\s*\d+;\s+\d+\s+\d+\s+TABLE\s+(\S+)\s+(\S+)\s", re.MULTILINE)


async def dump_tables(dump_file: Path, env: dict[str, str]) -> set[str]:
    """Names of the tables a custom-format dump creates (its table of contents)."""
    listing = await run_pg_tool("pg_restore", ["--list", str(dump_file)], env)
    return {match.group(2) for match in _TOC_TABLE.finditer(listing)}
