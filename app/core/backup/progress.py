"""Progress reporting hooks, so the core can drive a terminal progress bar without knowing it."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Called from the event loop and from worker threads; implementations must tolerate both."""

    def phase(self, name: str, total: int | None, unit: str = "B") -> None:
        """A new phase starts; `total` in `unit`s when known."""
        ...

    def advance(self, amount: int) -> None:
        """`amount` more units of the current phase are done."""
        ...


class NullProgress:
    def phase(self, name: str, total: int | None, unit: str = "B") -> None:
        return None

    def advance(self, amount: int) -> None:
        return None
