"""`uv run python -m bench [poller|media|history|api|scale ...] [--quick]`: run benchmarks (all by
default), print their tables and rewrite their sections of docs/benchmarks.md (`scale` rewrites
bench/scale/RESULTS.md instead; its section there is a hand-written summary)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.common import (
    Report,
    load_average,
    machine_summary,
    postgres_version,
    save_json,
    workdir,
    write_docs,
)

# `scale` last: about 6 minutes at full size (both scenarios), like the slower of the others.
NAMES = ("poller", "media", "history", "api", "scale")


def _runner(name: str, args: argparse.Namespace) -> Callable[[Path], Awaitable[Report]]:
    if name == "poller":
        from bench import poller

        backends = (
            tuple(b.strip() for b in args.backends.split(",") if b.strip())
            if args.backends
            else None
        )
        return lambda wd: poller.run(
            wd, quick=args.quick, tasks=args.tasks, interval=args.interval, backends=backends
        )
    if name == "media":
        from bench import media

        return lambda wd: media.run(wd, quick=args.quick, size_mb=args.size_mb)
    if name == "history":
        from bench import history

        return lambda wd: history.run(wd, quick=args.quick, tasks=args.tasks)
    if name == "scale":
        from bench.scale import run as run_scale
        from bench.scale.run import CLIENTS

        return lambda wd: run_scale(
            wd,
            quick=args.quick,
            tasks=args.tasks,
            clients=args.clients or CLIENTS,
            single=not args.fleet_only,
        )
    from bench import api

    return lambda wd: api.run(wd, quick=args.quick, requests=args.requests)


async def _main(args: argparse.Namespace) -> int:
    names = [n for n in NAMES if n in args.benchmarks] if args.benchmarks else list(NAMES)
    machine = machine_summary(await postgres_version())
    print(f"machine: {machine}", flush=True)
    failed = 0
    for name in names:
        print(f"\n... running {name}{' --quick' if args.quick else ''}", flush=True)
        started = time.monotonic()
        load_start = load_average()
        try:
            with workdir(name) as wd:
                report = await _runner(name, args)(wd)
        except Exception:
            traceback.print_exc()
            print(f"benchmark {name} could not run", file=sys.stderr)
            failed += 1
            continue
        report.seconds = time.monotonic() - started
        report.machine = machine
        report.load = f"{load_start:.1f} / {load_average():.1f}"
        print(report.text(), flush=True)
        save_json(report)
        if name == "scale":
            # Its section of docs/benchmarks.md is a hand-written summary of RESULTS.md. A
            # failed check (a task lost or run twice) fails the run, as `python -m bench.scale`.
            if not args.no_docs:
                from bench.scale.__main__ import write_results

                print(f"wrote {write_results(report)}", flush=True)
            failed += 0 if all(check.passed for check in report.checks) else 1
        elif not args.no_docs:
            write_docs(report)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "benchmarks",
        nargs="*",
        help=f"any of {', '.join(NAMES)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help="do not touch docs/benchmarks.md (nor bench/scale/RESULTS.md)",
    )
    parser.add_argument("--tasks", type=int, help="poller/history/scale: number of tasks")
    parser.add_argument("--interval", type=float, help="poller: polling interval in seconds")
    parser.add_argument(
        "--backends",
        help="poller: databases, e.g. postgres,sqlite (default: postgres; both with --quick)",
    )
    parser.add_argument("--size-mb", type=int, help="media: size of the streamed result")
    parser.add_argument("--requests", type=int, help="api: requests per endpoint and server")
    parser.add_argument("--clients", type=int, help="scale: concurrent HTTP clients")
    parser.add_argument(
        "--fleet-only", action="store_true", help="scale: skip the one-process comparison"
    )
    args = parser.parse_args()
    unknown = [name for name in args.benchmarks if name not in NAMES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()
