"""Search over encrypted prompts with a blind index.

Prompts are stored only encrypted, so the database cannot `LIKE` them. Instead each prompt is
split into normalised words; every word and each of its prefixes (from `MIN_PREFIX` characters)
is turned into a keyed hash (HMAC-SHA256 under a key derived from the storage master key) and
stored in `task_search_terms`. A query matches a task when every query word's hash is among the
task's terms, so "sun" finds "sunset" and word order does not matter.

Trade-off (documented in docs/architecture.md): someone holding the raw database can see which
tasks share a word, never the word itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

MIN_PREFIX = 2
MAX_WORD = 32
MAX_TERMS_PER_TASK = 2000
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
    for text in texts:
        if not text:
            continue
        for word in normalise_words(text):
            for end in range(min(MIN_PREFIX, len(word)), len(word) + 1):
                terms.add(_hash(key, word[:end]))
                if len(terms) >= MAX_TERMS_PER_TASK:
                    return terms
    return terms


def query_terms(key: bytes, query: str) -> list[str]:
    """Hashes a query must all match; empty when the query has no searchable word."""
    return sorted({_hash(key, word) for word in normalise_words(query)})
