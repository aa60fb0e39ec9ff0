"""Fan-out of task changes to Server-Sent-Event subscribers.

The worker and the task service publish after each committed transition. Subscribers are per
user; a slow subscriber loses its oldest events rather than slowing the worker (the SSE stream
also re-reads the database now and then, which covers dropped events).

Across processes: on PostgreSQL a relay (`pg_events.PgEventRelay`, started by the task
runtime) attaches itself as the bus's forwarder, sends every local publication to the other
processes with NOTIFY and hands theirs to `deliver`, which reaches local subscribers only
(never forwarded again, so an event crosses the database once).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

SUBSCRIBER_QUEUE_SIZE = 256


@dataclass(frozen=True)
class TaskEvent:
    user_id: str
    task_id: str
    type: str  # task.created | task.updated | task.completed | task.failed | task.cancelled | …
    data: dict[str, Any] = field(default_factory=dict)
    # The ended task's row and media as the worker committed them, for requests of this
    # process waiting on it (they answer without reading them back). Never leaves the process.
    outcome: TaskOutcome | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TaskOutcome:
    task: Any  # GenerationTask (detached); Any keeps this module free of the models
    media: list[Any]  # its Media rows, as committed


Forwarder = Callable[[TaskEvent], None]


class TaskEventBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[TaskEvent]]] = defaultdict(set)
        self._any: set[asyncio.Queue[TaskEvent]] = set()
        self._by_task: dict[str, set[asyncio.Queue[TaskEvent]]] = defaultdict(set)
        self._forwarder: Forwarder | None = None

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

    def subscribe_tasks(self, task_ids: Iterable[str]) -> asyncio.Queue[TaskEvent]:
        """A queue of these tasks' events only: a request waiting on its own tasks is not woken
        by every other task of the same user (with many concurrent requests from one key that
        fan-out was quadratic)."""
        queue: asyncio.Queue[TaskEvent] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE_SIZE)
        for task_id in task_ids:
            self._by_task[task_id].add(queue)
        return queue

    def unsubscribe_tasks(self, task_ids: Iterable[str], queue: asyncio.Queue[TaskEvent]) -> None:
        for task_id in task_ids:
            queues = self._by_task.get(task_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._by_task[task_id]

    def set_forwarder(self, forwarder: Forwarder | None) -> None:
        """Also hand every `publish`ed event to `forwarder` (None: stop forwarding).

        The forwarder is called synchronously from `publish` and must not block or raise.
        """
        self._forwarder = forwarder

    @property
    def forwarding(self) -> bool:
        return self._forwarder is not None

    def publish(self, event: TaskEvent) -> None:
        """An event of this process: to local subscribers and, if set, to the forwarder."""
        self.deliver(event)
        if self._forwarder is not None:
            self._forwarder(event)

    def deliver(self, event: TaskEvent) -> None:
        """To local subscribers only (events that came from another process)."""
        for queue in (
            *self._subscribers.get(event.user_id, ()),
            *self._any,
            *self._by_task.get(event.task_id, ()),
        ):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    def has_subscribers(self, user_id: str, task_id: str | None = None) -> bool:
        return (
            bool(self._any)
            or user_id in self._subscribers
            or (task_id is not None and task_id in self._by_task)
        )

    def subscriber_count(self) -> int:
        """Subscriptions of users (SSE streams) and of all users, plus the number of tasks
        waited on singly (zero means nobody here listens at all)."""
        return sum(len(q) for q in self._subscribers.values()) + len(self._any) + len(self._by_task)
