"""A bounded async load generator: `count` calls spread over `concurrency` clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of this (the load-generating) process
    stopped_by_time: bool = False

    @property
    def done(self) -> int:
        return len(self.latencies) + self.errors

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else float("nan")


async def run_load(
    count: int,
    concurrency: int,
    call: Callable[[int], Awaitable[bool]],
    *,
    time_limit: float,
) -> LoadResult:
    """Run `call(i)` for i in range(count) with `concurrency` clients, stopping after
    `time_limit` seconds whatever is left. `call` returns False (or raises) for an error."""
    result = LoadResult()
    next_index = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    deadline = started + time_limit

    async def client() -> None:
        nonlocal next_index
        while next_index < count:
            if time.perf_counter() > deadline:
                result.stopped_by_time = True
                return
            index = next_index
            next_index += 1
            begin = time.perf_counter()
            try:
                ok = await call(index)
            except Exception as exc:
                ok = False
                result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
            if ok:
                result.latencies.append(time.perf_counter() - begin)
            else:
                result.errors += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu_started
    return result
