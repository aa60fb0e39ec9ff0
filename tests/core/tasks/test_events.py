"""The in-process task event bus: who hears what."""

from __future__ import annotations

import asyncio

from app.core.tasks.events import TaskEvent, TaskEventBus


def event(user_id: str, task_id: str) -> TaskEvent:
    return TaskEvent(user_id=user_id, task_id=task_id, type="task.updated")


def drain(queue: asyncio.Queue[TaskEvent]) -> list[str]:
    seen = []
    while not queue.empty():
        seen.append(queue.get_nowait().task_id)
    return seen


async def test_a_wait_on_tasks_hears_only_those_tasks() -> None:
    bus = TaskEventBus()
    mine = bus.subscribe_tasks(["t1", "t2"])
    stream = bus.subscribe("u")  # the user's SSE stream hears everything of the user
    for task_id in ("t1", "t3", "t2", "t4"):
        bus.publish(event("u", task_id))
    assert drain(mine) == ["t1", "t2"]
    assert drain(stream) == ["t1", "t3", "t2", "t4"]


async def test_unsubscribing_a_wait_forgets_it() -> None:
    bus = TaskEventBus()
    queue = bus.subscribe_tasks(["t1"])
    assert bus.has_subscribers("someone", "t1")
    assert bus.subscriber_count() == 1
    bus.unsubscribe_tasks(["t1"], queue)
    assert not bus.has_subscribers("someone", "t1")
    assert bus.subscriber_count() == 0
    bus.publish(event("someone", "t1"))
    assert queue.empty()


async def test_two_waits_on_one_task_both_hear_it() -> None:
    bus = TaskEventBus()
    first, second = bus.subscribe_tasks(["t"]), bus.subscribe_tasks(["t"])
    bus.publish(event("u", "t"))
    assert drain(first) == drain(second) == ["t"]
    bus.unsubscribe_tasks(["t"], first)
    bus.publish(event("u", "t"))
    assert (drain(first), drain(second)) == ([], ["t"])
