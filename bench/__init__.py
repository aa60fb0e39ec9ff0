"""Benchmarks: `uv run python -m bench [poller|media|history|api] [--quick]`.

Not part of `make test`: each benchmark starts its own servers on loopback, measures against a
baseline taken in the same run (the machines are noisy), prints a table with the ratios and
rewrites its section of docs/benchmarks.md.
"""
