"""In-process fan-out of task changes to Server-Sent-Event subscribers.

The worker publishes after each committed transition. Subscribers are per user; a slow
subscriber loses its oldest events rather than slowing the worker (the SSE stream also re-reads
the database periodically, which covers events from other processes and dropped ones).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

SUBSCRIBER_QUEUE_SIZE = 256


@dataclass(frozen=True)
class TaskEvent:
    user_id: str
    task_id: str
    type: str  # task.created | task.updated | task.completed | task.failed | task.cancelled | …
    data: dict[str, Any] = field(default_factory=dict)


class TaskEventBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[TaskEvent]]] = defaultdict(set)
        self._any: set[asyncio.Queue[TaskEvent]] = set()

    def subscribe(self, user_id: str | None) -> asyncio.Queue[TaskEvent]:
        """A queue of the user's events (all users' when `user_id` is None)."""
        queue: asyncio.Queue[TaskEvent] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE_SIZE)
        if user_id is None:
            self._any.add(queue)
        else:
            self._subscribers[user_id].add(queue)
        return queue

    def unsubscribe(self, user_id: str | None, queue: asyncio.Queue[TaskEvent]) -> None:
        if user_id is None:
            self._any.discard(queue)
            return
        queues = self._subscribers.get(user_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._subscribers[user_id]

    def publish(self, event: TaskEvent) -> None:
        for queue in (*self._subscribers.get(event.user_id, ()), *self._any):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    def subscriber_count(self) -> int:
        return sum(len(q) for q in self._subscribers.values()) + len(self._any)
