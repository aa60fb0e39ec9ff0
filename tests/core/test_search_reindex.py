"""After a key rotation the prompt search index is rebuilt under the new primary key."""

from __future__ import annotations

import httpx
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import select

from app.core.encryption import Encryptor
from app.core.key_rotation import rotate_all
from app.core.tasks.reindex import reindex_search_terms
from app.core.tasks.search import derive_search_key, index_terms, query_terms
from app.models import TaskSearchTerm
from tests.conftest import AuthedUser


async def test_reindex_after_rotation_keeps_prompts_searchable(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser, master_key: str
) -> None:
    created = await client.post(
        "/api/v1/videos",
        json={"model": "sora-2", "prompt": "Nebula over glaciers"},
        headers=user.headers,
    )
    assert created.status_code == 202, created.text
    task_id = created.json()["id"]
    await app.state.tasks.worker.stop()  # keep the worker from touching the row meanwhile

    new_key = Fernet.generate_key().decode()
    rotated_master = f"{new_key},{master_key}"
    encryptor = Encryptor(rotated_master)
    await rotate_all(app.state.db, encryptor)
    await reindex_search_terms(app.state.db, encryptor, rotated_master)

    new_search_key = derive_search_key(rotated_master)
    async with app.state.db.session() as db:
        stored = set(
            (
                await db.scalars(
                    select(TaskSearchTerm.term).where(TaskSearchTerm.task_id == task_id)
                )
            ).all()
        )
    assert stored == index_terms(new_search_key, "Nebula over glaciers")
    assert set(query_terms(new_search_key, "glac")) <= stored
    assert not set(query_terms(derive_search_key(master_key), "glac")) & stored
