"""`uv run python -m bench.scale [--quick] [--tasks N] [--fleet-only]`: the scale-out benchmark.

Prints the report and rewrites bench/scale/RESULTS.md (exit code 1 when a check fails). The same
run is `uv run python -m bench scale`, and part of the default `python -m bench` (`make bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from bench.common import Report, load_average, machine_summary, postgres_version, workdir
from bench.scale.run import CLIENTS, run

RESULTS_FILE = Path(__file__).resolve().parent / "RESULTS.md"


def write_results(report: Report) -> Path:
    """Rewrite bench/scale/RESULTS.md with `report` (docs/benchmarks.md quotes it by hand)."""
    RESULTS_FILE.write_text(f"# {report.title}\n\n{report.markdown()}")
    return RESULTS_FILE


async def _main(args: argparse.Namespace) -> int:
    machine = machine_summary(await postgres_version())
    print(f"machine: {machine}", flush=True)
    started = time.monotonic()
    load_start = load_average()
    with workdir("scale") as wd:
        report = await run(
            wd,
            quick=args.quick,
            tasks=args.tasks,
            clients=args.clients,
            single=not args.fleet_only,
        )
    report.seconds = time.monotonic() - started
    report.machine = machine
    report.load = f"{load_start:.1f} / {load_average():.1f}"
    print(report.text(), flush=True)
    if not args.no_results:
        print(f"wrote {write_results(report)}")
    return 0 if all(check.passed for check in report.checks) else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 tasks instead of 5,000")
    parser.add_argument("--tasks", type=int, default=None, help="number of tasks per scenario")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="concurrent HTTP clients")
    parser.add_argument("--fleet-only", action="store_true", help="skip the one-process comparison")
    parser.add_argument(
        "--no-results", action="store_true", help="do not rewrite bench/scale/RESULTS.md"
    )
    sys.exit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
