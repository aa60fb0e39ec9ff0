"""History: search and filter one user's large task history on PostgreSQL through the real app.

N tasks (default 100,000) for one user are bulk-loaded with COPY: prompts from a word list,
encrypted request payloads (`Encryptor.encrypt_json`, as the app writes them), blind-index
search terms (`app.core.tasks.search.index_terms`, the app's own function) and a media row per
completed task. Then `GET /api/v1/videos` pages of every query shape the history offers (no
filter, filters, date range, favourite, tag, each sort, a deep page, one-word / rare / two-word /
prefix searches with and without filters, a deep search page) are timed through the real app
(lifespan run, httpx ASGITransport, bearer token of a user registered over the API), against the
filtered page without `search` as the baseline, interleaved in one run; each shape is checked
against p95 < 100 ms.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet
from sqlalchemy import Table as SATable
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.tasks.payload import TaskPayload
from app.core.tasks.search import derive_search_key, index_terms, normalise_words
from app.main import create_app
from app.models import GenerationTask, Media
from bench.common import Check, Report, Table, ms, percentile, pg_database, ratio
from bench.words import PromptGenerator

DEFAULT_TASKS, QUICK_TASKS = 100_000, 10_000
DEFAULT_SAMPLES, QUICK_SAMPLES = 100, 30
P95_TARGET = 0.100
MODELS = [  # (catalog id, adapter, share)
    ("sora-2", "sora", 0.35),
    ("veo3-fast", "veo", 0.20),
    ("sora-2-pro", "sora", 0.15),
    ("veo3", "veo", 0.10),
    ("doubao-seedance-1-0-pro", "seedance", 0.10),
    ("veo3.1", "veo", 0.05),
    ("veo3.1-fast", "veo", 0.05),
]
STATUSES = [
    ("completed", 0.85),
    ("failed", 0.08),
    ("cancelled", 0.04),
    ("in_progress", 0.02),
    ("queued", 0.01),
]
FILTER = {"model": "sora-2", "status": "completed"}


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _record(table: Any, values: dict[str, Any]) -> tuple[Any, ...]:
    out = []
    for column in table.columns:
        value = values.get(column.name)
        if column.name == "tags":
            value = json.dumps(value or [])
        out.append(value)
    return tuple(out)


class Dataset:
    """Generated rows plus what the queries need to know about them (word frequencies)."""

    def __init__(self, user_id: str, n: int, master_key: str) -> None:
        self.user_id = user_id
        self.n = n
        self.encryptor = Encryptor(master_key)
        self.search_key = derive_search_key(master_key)
        self.word_tasks: Counter[str] = Counter()
        self.term_rows = 0

    def _terms(self, cache: dict[str, set[str]], prompt: str) -> set[str]:
        # index_terms is a union over words, so caching it per word gives the same set.
        terms: set[str] = set()
        for word in set(normalise_words(prompt)):
            if word not in cache:
                cache[word] = index_terms(self.search_key, word)
            terms |= cache[word]
        return terms

    def build(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        rng = random.Random(7)
        prompts = PromptGenerator(seed=7)
        tasks_table = cast(SATable, GenerationTask.__table__)
        media_table = cast(SATable, Media.__table__)
        cache: dict[str, set[str]] = {}
        tasks: list[tuple[Any, ...]] = []
        terms: list[tuple[Any, ...]] = []
        media: list[tuple[Any, ...]] = []
        start = datetime.now(UTC) - timedelta(days=365)
        step = timedelta(days=365) / self.n
        model_choices = [(m, a) for m, a, _ in MODELS]
        model_weights = [w for _, _, w in MODELS]
        for i in range(self.n):
            task_id = str(uuid.uuid4())
            prompt = prompts.prompt()
            model, adapter = rng.choices(model_choices, weights=model_weights)[0]
            status = rng.choices([s for s, _ in STATUSES], weights=[w for _, w in STATUSES])[0]
            created = start + step * i
            terminal = status in ("completed", "failed", "cancelled")
            payload = TaskPayload(
                prompt=prompt, params={"duration": 10, "aspect_ratio": "16:9"}, upstream_model=model
            )
            tasks.append(
                _record(
                    tasks_table,
                    {
                        "id": task_id,
                        "user_id": self.user_id,
                        "kind": "video",
                        "model": model,
                        "adapter": adapter,
                        "status": status,
                        "submit_state": "submitted",
                        "progress": 100 if status == "completed" else 0,
                        "upstream_id": f"task_{uuid.uuid4().hex}",
                        "title": prompts.title(),
                        "tags": ["favourites"] if rng.random() < 0.05 else [],
                        "favorite": rng.random() < 0.03,
                        "request_encrypted": self.encryptor.encrypt_json(payload.to_json()),
                        "error_code": "upstream_failed" if status == "failed" else None,
                        "poll_attempts": rng.randint(3, 40),
                        "consecutive_errors": 0,
                        "deadline_at": created + timedelta(hours=2),
                        "next_poll_at": None if terminal else datetime.now(UTC) + timedelta(days=1),
                        "has_webhook": False,
                        "created_at": created,
                        "updated_at": created + timedelta(minutes=3),
                        "submitted_at": created,
                        "started_at": created + timedelta(seconds=20),
                        "completed_at": created + timedelta(minutes=3) if terminal else None,
                    },
                )
            )
            task_terms = self._terms(cache, prompt)
            terms.extend((task_id, term, self.user_id) for term in task_terms)
            for word in set(normalise_words(prompt)):
                self.word_tasks[word] += 1
            if status == "completed":
                media_id = str(uuid.uuid4())
                media.append(
                    _record(
                        media_table,
                        {
                            "id": media_id,
                            "task_id": task_id,
                            "user_id": self.user_id,
                            "kind": "video",
                            "position": 0,
                            "state": "stored",
                            "storage_key": f"{self.user_id}/{media_id}.mp4",
                            "thumbnail_key": f"{self.user_id}/{media_id}.thumb.jpg",
                            "content_type": "video/mp4",
                            "bytes": rng.randint(2, 40) * 1024**2,
                            "thumbnail_bytes": 12_000,
                            "sha256": uuid.uuid4().hex * 2,
                            "width": 1280,
                            "height": 720,
                            "duration_seconds": 10.0,
                            "created_at": created + timedelta(minutes=3),
                        },
                    )
                )
        self.term_rows = len(terms)
        return tasks, terms, media


async def _load(url: str, dataset: Dataset) -> dict[str, float]:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    tasks, terms, media = await asyncio.to_thread(dataset.build)
    timings["generate"] = time.perf_counter() - started
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        started = time.perf_counter()
        # Rows are consistent by construction; skip the per-row foreign-key triggers.
        await conn.execute("SET session_replication_role = replica")
        for table, rows in (
            (cast(SATable, GenerationTask.__table__), tasks),
            (cast(SATable, Media.__table__), media),
        ):
            await conn.copy_records_to_table(
                table.name, records=rows, columns=[c.name for c in table.columns]
            )
        await _copy_terms(conn, terms)
        await conn.execute("SET session_replication_role = DEFAULT")
        timings["copy"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        timings["analyze"] = time.perf_counter() - started
        timings["db_mb"] = float(
            await conn.fetchval("SELECT pg_database_size(current_database())") / 1024**2
        )
    finally:
        await conn.close()
    return timings


async def _copy_terms(conn: asyncpg.Connection, terms: list[tuple[Any, ...]]) -> None:
    """COPY the terms with the table's indexes dropped and rebuilt afterwards (exactly as the
    migrations made them): one sorted build instead of millions of random B-tree inserts."""
    table = "task_search_terms"
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", table
    )
    primary = await conn.fetchval(
        "SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'", table
    )
    for index in indexes:
        if index["indexname"] == primary:
            await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{primary}"')
        else:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
    await conn.copy_records_to_table(table, records=terms, columns=["task_id", "term", "user_id"])
    await conn.execute("SET maintenance_work_mem = '512MB'")
    for index in indexes:
        await conn.execute(index["indexdef"])
        if index["indexname"] == primary:
            await conn.execute(
                f'ALTER TABLE {table} ADD CONSTRAINT "{primary}" '
                f'PRIMARY KEY USING INDEX "{primary}"'
            )


def _pick_words(dataset: Dataset) -> dict[str, str]:
    ranked = [w for w, _ in dataset.word_tasks.most_common() if len(w) >= 4]
    n = dataset.n

    def near(share: float) -> str:
        return min(ranked, key=lambda w: abs(dataset.word_tasks[w] / n - share))

    common, medium, rare = near(0.20), near(0.05), near(0.003)
    return {
        "common": common,
        "medium": medium,
        "rare": rare,
        "two words": f"{common} {medium}",
        "prefix": common[:3],
    }


BASELINE = "filters, no search (baseline)"
DEEP_PAGE = 1000  # offset 19,980: deep into the ~30% of tasks the filters keep


def _variants(words: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every query shape the history page can send: filters, search, sorts, deep pages.
    Page 1, size 20, sort -created unless the label says otherwise."""
    month_ago = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    common = words["common"]
    variants: dict[str, dict[str, Any]] = {
        "no filters, no search": {},
        BASELINE: dict(FILTER),
        "created_after (last 30 days)": {"created_after": month_ago},
        "favorite=true": {"favorite": "true"},
        "tags=favourites": {"tags": "favourites"},
        "filters, sort title": {**FILTER, "sort": "title"},
        "filters, sort -title": {**FILTER, "sort": "-title"},
        "filters, sort created (oldest first)": {**FILTER, "sort": "created"},
        f"filters, deep page {DEEP_PAGE}": {**FILTER, "page": DEEP_PAGE},
    }
    for label, query in words.items():
        variants[f"search {label}: {query!r} + filters"] = {**FILTER, "search": query}
    variants[f"search {common!r}, no filters"] = {"search": common}
    variants[f"search {common!r} + filters, sort title"] = {
        **FILTER,
        "search": common,
        "sort": "title",
    }
    variants[f"search {common!r}, no filters, page 500"] = {"search": common, "page": 500}
    return variants


async def run(wd: Path, *, quick: bool, tasks: int | None = None) -> Report:
    n = tasks or (QUICK_TASKS if quick else DEFAULT_TASKS)
    samples = QUICK_SAMPLES if quick else DEFAULT_SAMPLES
    report = Report("history", "History: search and filter one user's tasks", quick)
    master_key = Fernet.generate_key().decode()
    async with pg_database("history") as url:
        settings = Settings(
            _env_file=None,
            env="development",
            database_url=url,
            data_dir=wd / "data",
            jwt_secret_key="bench-" + "j" * 40,
            storage_master_key=master_key,
            bcrypt_rounds=4,
            run_worker=False,
            api_key="sk-unused",  # an upstream is "configured": no in-process simulator
            api_base_url="http://127.0.0.1:9",
        )
        app = create_app(settings)
        async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", timeout=60
            ) as client:
                password = "correct horse battery staple"
                created = await client.post(
                    "/api/v1/auth/register",
                    json={"username": "bench", "email": "bench@example.com", "password": password},
                )
                created.raise_for_status()
                login = await client.post(
                    "/api/v1/auth/login",
                    json={"username_or_email": "bench", "password": password},
                )
                login.raise_for_status()
                client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
                dataset = Dataset(created.json()["id"], n, master_key)
                timings = await _load(url, dataset)
                words = _pick_words(dataset)
                variants = _variants(words)
                latencies, totals = await _measure(client, variants, samples)
    base = latencies[BASELINE]
    rows = []
    for label, values in latencies.items():
        total, estimate = totals[label]
        rows.append(
            [
                label,
                f"{total:,}{'+' if estimate else ''}",
                ms(percentile(values, 50)),
                ms(percentile(values, 95)),
                ms(percentile(values, 99)),
                ratio(percentile(values, 50), percentile(base, 50)),
                ratio(percentile(values, 95), percentile(base, 95)),
            ]
        )
    report.setup = [
        f"{n:,} video tasks of one user on PostgreSQL, created over a year; "
        f"{dataset.term_rows:,} search-term rows ({dataset.term_rows / n:.0f} per task), "
        f"a media row per completed task; database {timings['db_mb']:,.0f} MiB. Load: "
        f"generate {timings['generate']:.0f} s, COPY {timings['copy']:.0f} s, "
        f"VACUUM ANALYZE {timings['analyze']:.0f} s.",
        f"Page 1, size 20, sort -created unless stated; 'filters' are model={FILTER['model']} "
        f"status={FILTER['status']} (~30% of tasks); {samples} samples per "
        "variant, variants interleaved; through the real app in-process (ASGITransport), so "
        "the latency is the app and the database, without a network hop.",
        "A total with '+' is a lower bound (`total_is_estimate`: the count stops at 10,000, "
        "1,000 with `search`, or at the end of the requested page).",
    ]
    report.tables.append(
        Table(
            "GET /api/v1/videos page latency",
            ["query shape", "total", "p50", "p95", "p99", "p50 vs baseline", "p95 vs baseline"],
            rows,
        )
    )
    for label, values in latencies.items():
        p95 = percentile(values, 95)
        report.checks.append(Check(f"{label}, p95", "< 100 ms", ms(p95), p95 < P95_TARGET))
    return report


async def _measure(
    client: httpx.AsyncClient, variants: dict[str, dict[str, Any]], samples: int
) -> tuple[dict[str, list[float]], dict[str, tuple[int, bool]]]:
    latencies: dict[str, list[float]] = {label: [] for label in variants}
    totals: dict[str, tuple[int, bool]] = {}
    for label, params in variants.items():  # warm-up (plans, caches), and the match counts
        for _ in range(3):
            response = await client.get("/api/v1/videos", params=params)
            response.raise_for_status()
        body = response.json()
        totals[label] = (int(body["total"]), bool(body.get("total_is_estimate")))
    deadline = time.monotonic() + 300
    for _ in range(samples):
        if time.monotonic() > deadline:
            break
        for label, params in variants.items():
            started = time.perf_counter()
            response = await client.get("/api/v1/videos", params=params)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            latencies[label].append(elapsed)
    return latencies, totals
