"""The history listing (`service.list_tasks`) against a brute-force reference: search (both ways
it runs: few matches read by id, many walked in page order), filters, sorts and pages; and the
capped `total` (exact up to the cap or the end of the page, then a lower bound flagged
`total_is_estimate`)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi import FastAPI

from app.core.tasks import search, service
from app.core.tasks.search import derive_search_key, index_terms, normalise_words
from app.core.tasks.service import ListQuery, TaskContext
from app.db.base import new_uuid
from app.models import GenerationTask, TaskSearchTerm
from tests.conftest import AuthedUser

WORDS = ["harbour", "sunset", "piano", "cat", "glacier", "neon", "city", "film", "forest"]
MODELS = ["sora-2", "veo3"]
STATUSES = ["completed", "failed", "cancelled"]
N = 40


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"run_worker": False}


def _ctx(master_key: str) -> TaskContext:
    # list_tasks reads only the search key of the context.
    return cast(TaskContext, SimpleNamespace(search_key=derive_search_key(master_key)))


async def _seed(app: FastAPI, user_id: str, other_id: str, master_key: str) -> list[dict[str, Any]]:
    """N tasks of `user_id` (a few untitled, some sharing a title, one image) and a task of
    another user that matches every search."""
    rng = random.Random(4)
    key = derive_search_key(master_key)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    async with app.state.db.session() as db:
        for i in range(N + 2):
            owner = other_id if i == N + 1 else user_id
            prompt = " ".join(rng.sample(WORDS, 3))
            title = None if i % 4 == 0 else ("Same title" if i % 7 == 0 else f"Clip {i:02d} film")
            row = {
                "id": new_uuid(),
                "user_id": owner,
                "kind": "image" if i == N else "video",
                "model": MODELS[i % 2],
                "status": STATUSES[i % 3],
                "title": title,
                "favorite": i % 5 == 0,
                "created_at": start + timedelta(minutes=i if i != 3 else 2),  # a created tie
                "prompt": prompt,
            }
            rows.append(row)
            db.add(
                GenerationTask(
                    id=row["id"],
                    user_id=owner,
                    kind=row["kind"],
                    model=row["model"],
                    adapter="sora",
                    status=row["status"],
                    submit_state="submitted",
                    title=title,
                    tags=[],
                    favorite=row["favorite"],
                    request_encrypted="unused",
                    deadline_at=row["created_at"] + timedelta(hours=1),
                    created_at=row["created_at"],
                    updated_at=row["created_at"],
                )
            )
            await db.flush()
            for term in index_terms(key, prompt):
                db.add(TaskSearchTerm(task_id=row["id"], term=term, user_id=owner))
        await db.commit()
    return rows


def _matches(row: dict[str, Any], search: str) -> bool:
    if row["title"] and search.casefold() in row["title"].casefold():
        return True
    words = normalise_words(row["prompt"])
    return all(any(w.startswith(q) for w in words) for q in normalise_words(search))


def _expected(rows: list[dict[str, Any]], user_id: str, q: ListQuery) -> list[str]:
    kept = [
        r
        for r in rows
        if r["user_id"] == user_id
        and r["kind"] == "video"
        and (q.model is None or r["model"] == q.model)
        and (q.status is None or r["status"] in q.status)
        and (q.favorite is None or r["favorite"] is q.favorite)
        and (not q.search or _matches(r, q.search))
    ]
    if q.sort in ("created", "-created"):
        kept.sort(key=lambda r: (r["created_at"], r["id"]), reverse=q.sort == "-created")
    else:
        # title: by title, then id; -title: the reverse. Untitled last in both, in id order
        # (ascending for title, descending for -title).
        descending = q.sort == "-title"
        titled = sorted(
            (r for r in kept if r["title"]), key=lambda r: (r["title"], r["id"]), reverse=descending
        )
        untitled = sorted((r for r in kept if not r["title"]), key=lambda r: r["id"])
        kept = titled + (untitled[::-1] if descending else untitled)
    return [r["id"] for r in kept]


QUERIES = [
    {},
    {"model": "sora-2"},
    {"status": ["completed", "failed"], "favorite": False},
    {"search": "film"},  # title substring and prompt word
    {"search": "fil"},  # prompt prefix, title substring
    {"search": "ip 1"},  # title only (across a word boundary)
    {"search": "piano cat"},  # every prompt word
    {"search": "glacier neon", "model": "veo3"},
    {"search": "zebra"},
    {"sort": "created"},
    {"sort": "title"},
    {"sort": "-title"},
    {"sort": "title", "search": "sunset", "status": ["completed"]},
]


@pytest.mark.parametrize("few", [search.FEW_MATCHES, 0], ids=["few-by-id", "walked"])
async def test_listing_matches_a_brute_force_reference(
    app: FastAPI,
    user: AuthedUser,
    other_user: AuthedUser,
    master_key: str,
    monkeypatch: pytest.MonkeyPatch,
    few: int,
) -> None:
    monkeypatch.setattr(search, "FEW_MATCHES", few)
    rows = await _seed(app, user.id, other_user.id, master_key)
    ctx = _ctx(master_key)
    for params in QUERIES:
        size = 7
        expected = _expected(rows, user.id, ListQuery(**params))
        got: list[str] = []
        async with app.state.db.session() as db:
            for page in range(1, len(expected) // size + 3):  # one page past the end
                listed = await service.list_tasks(
                    db, ctx, user.id, "video", ListQuery(page=page, size=size, **params)
                )
                assert (listed.total, listed.total_is_estimate) == (len(expected), False), params
                got.extend(t.id for t in listed.tasks)
        if params.get("sort", "-created").endswith("title"):
            # Title collation differs per database (case, punctuation): compare the untitled
            # tail, and the titled ones as a set, in the database's own order.
            titled = sum(1 for r in rows if r["id"] in set(expected) and r["title"])
            assert got[titled:] == expected[titled:], params
            assert set(got[:titled]) == set(expected[:titled]), params
        else:
            assert got == expected, params


async def test_total_is_exact_up_to_the_cap_past_the_page_then_a_lower_bound(
    app: FastAPI,
    user: AuthedUser,
    other_user: AuthedUser,
    master_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = await _seed(app, user.id, other_user.id, master_key)
    videos = sum(1 for r in rows if r["user_id"] == user.id and r["kind"] == "video")
    monkeypatch.setattr(service, "COUNT_CAP", 10)
    ctx = _ctx(master_key)

    async def listed(**params: Any) -> service.TaskList:
        async with app.state.db.session() as db:
            return await service.list_tasks(db, ctx, user.id, "video", ListQuery(**params))

    first = await listed(page=1, size=5)
    assert (first.total, first.total_is_estimate) == (10, True)
    assert len(first.tasks) == 5
    # Past the cap the count stops at the end of the page: a page is never past the total.
    deep = await listed(page=5, size=5)
    assert (deep.total, deep.total_is_estimate) == (25, True)
    assert len(deep.tasks) == 5
    # The last page knows the exact total, and so does a page past the end.
    last = await listed(page=8, size=5)
    assert (last.total, last.total_is_estimate, len(last.tasks)) == (videos, False, 5)
    beyond = await listed(page=20, size=5)
    assert (beyond.total, beyond.total_is_estimate, beyond.tasks) == (videos, False, [])
    # Exactly the cap is still exact; fewer matches than the cap are always exact.
    monkeypatch.setattr(service, "COUNT_CAP", videos)
    exact = await listed(page=1, size=5)
    assert (exact.total, exact.total_is_estimate) == (videos, False)
    monkeypatch.setattr(service, "COUNT_CAP", 10)
    few = await listed(model="veo3", status=["completed"], size=2)
    expected = _expected(rows, user.id, ListQuery(model="veo3", status=["completed"]))
    assert 2 < len(expected) < 10
    assert (few.total, few.total_is_estimate) == (len(expected), False)
    # A search has its own, smaller cap.
    monkeypatch.setattr(service, "SEARCH_COUNT_CAP", 3)
    searched = await listed(search="film", size=2)
    assert len(_expected(rows, user.id, ListQuery(search="film"))) > 3
    assert (searched.total, searched.total_is_estimate) == (3, True)
