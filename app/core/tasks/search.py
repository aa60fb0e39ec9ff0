"""Search over encrypted prompts with a blind index.

Prompts are stored only encrypted, so the database cannot `LIKE` them. Instead each prompt is
split into normalised words; every word and each of its prefixes (from `MIN_PREFIX` characters)
is turned into a keyed hash (HMAC-SHA256 under a key derived from the storage master key) and
stored in `task_search_terms`. A query matches a task when every query word's hash is among the
task's terms, so "sun" finds "sunset" and word order does not matter.

Trade-off (documented in docs/architecture.md): someone holding the raw database can see which
tasks share a word, never the word itself.

A history search (`GET /api/v1/videos?search=`) matches a task when the query is in its title
(`title_matches`, a case-insensitive substring) or every query word is in its prompt
(`prompt_matches`); `app.core.tasks.service.list_tasks` decides how to run it (`few_matches`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Select, TextClause, and_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.db.base import escape_like
from app.models import GenerationTask, TaskSearchTerm

MIN_PREFIX = 2
MAX_WORD = 32
MAX_TERMS_PER_TASK = 2000
# Up to this many prompt matches a search fetches them by id (see few_matches).
FEW_MATCHES = 2000
_WORD = re.compile(r"\w+", re.UNICODE)


def derive_search_key(master_key: str) -> bytes:
    primary = master_key.split(",")[0].strip().encode()
    return hmac.new(primary, b"genapi/search-index/v1", hashlib.sha256).digest()


def normalise_words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return [w[:MAX_WORD] for w in _WORD.findall(stripped)]


def _hash(key: bytes, term: str) -> str:
    return hmac.new(key, term.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def index_terms(key: bytes, *texts: str | None) -> set[str]:
    """Hashes of every word and word prefix in `texts` (what a task is findable by)."""
    terms: set[str] = set()
    for source in texts:
        if not source:
            continue
        for word in normalise_words(source):
            for end in range(min(MIN_PREFIX, len(word)), len(word) + 1):
                terms.add(_hash(key, word[:end]))
                if len(terms) >= MAX_TERMS_PER_TASK:
                    return terms
    return terms


# A task's terms (often dozens) are written with one statement, not one per row: executemany
# cost more CPU than the whole rest of creating the task (bench/litellm/RESULTS.md).
_INSERT_TERMS_POSTGRES: TextClause = text(
    "INSERT INTO task_search_terms (task_id, term, user_id) "
    "SELECT t.task_id, t.term, t.user_id FROM unnest("
    "CAST(:task_ids AS VARCHAR[]), CAST(:terms AS VARCHAR[]), CAST(:user_ids AS VARCHAR[])"
    ") AS t(task_id, term, user_id)"
)
_INSERT_TERMS_SQLITE: TextClause = text(
    "INSERT INTO task_search_terms (task_id, term, user_id) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') "
    "FROM json_each(:entries)"
)


async def insert_terms(db: AsyncSession, entries: Iterable[tuple[str, str, str]]) -> None:
    """Write `(task_id, term, user_id)` rows of the blind index in one statement."""
    rows = list(entries)
    if not rows:
        return
    if db.get_bind().dialect.name == "postgresql":
        task_ids, terms, user_ids = (list(column) for column in zip(*rows, strict=True))
        params: dict[str, Any] = {"task_ids": task_ids, "terms": terms, "user_ids": user_ids}
        await db.execute(_INSERT_TERMS_POSTGRES, params)
    else:
        await db.execute(_INSERT_TERMS_SQLITE, {"entries": json.dumps(rows)})


def query_terms(key: bytes, query: str) -> list[str]:
    """Hashes a query must all match; empty when the query has no searchable word."""
    return sorted({_hash(key, word) for word in normalise_words(query)})


def title_matches(query: str) -> ColumnElement[bool]:
    """The title contains `query`, case-insensitively (titles are not secret: plain LIKE)."""
    return GenerationTask.title.ilike(f"%{escape_like(query)}%", escape="\\")


def prompt_matches(key: bytes, user_id: str, query: str) -> Select[Any] | None:
    """Ids of the user's tasks whose prompt has every word of `query` (as a word or a word
    prefix); None when the query has no searchable word.

    One index range per word, read index-only from (user_id, term, task_id), which returns each
    word's tasks sorted by id: several words are a merge join of those ranges (cheaper than
    grouping all their rows)."""
    terms = query_terms(key, query)
    if not terms:
        return None
    first = aliased(TaskSearchTerm)
    matches = select(first.task_id).where(first.user_id == user_id, first.term == terms[0])
    for term in terms[1:]:
        other = aliased(TaskSearchTerm)
        matches = matches.join(
            other,
            and_(other.task_id == first.task_id, other.user_id == user_id, other.term == term),
        )
    return matches


async def few_matches(db: AsyncSession, matches: Select[Any]) -> list[str] | None:
    """The ids `matches` selects when there are at most FEW_MATCHES of them, else None.

    A rare search is cheapest driven from its matches (read those tasks by id); a common one by
    walking the listing in page order and stopping when the page is full. Asking for one more
    than FEW_MATCHES bounds what this reads either way."""
    found = list((await db.scalars(matches.limit(FEW_MATCHES + 1))).all())
    return found if len(found) <= FEW_MATCHES else None
