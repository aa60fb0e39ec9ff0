"""Scale-out benchmark: 2 API + 2 worker processes on PostgreSQL against the one-process figure.

`uv run python -m bench.scale [--quick]`; see `bench/scale/run.py` for what is measured and
`bench/scale/RESULTS.md` for the last run.
"""

from bench.scale.run import run

__all__ = ["run"]
