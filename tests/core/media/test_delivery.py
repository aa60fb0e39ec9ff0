"""`redirect_origin`: where the pages' CSP must let media load from when downloads redirect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.core.media.delivery import redirect_origin
from app.core.media.storage import LocalMediaStorage


class PresigningStore(LocalMediaStorage):
    """A local store that signs URLs like an S3 store would (or fails to, like one without
    credentials)."""

    def __init__(self, root: Path, url: str | None, presign: bool = True) -> None:
        super().__init__(root)
        self.presign = presign
        self.url = url

    async def presigned_url(self, key: str, expires: int | None = None, **_: Any) -> str:
        if self.url is None:
            raise RuntimeError("Unable to locate credentials")
        return f"{self.url}/{key}?X-Amz-Expires={expires}&X-Amz-Signature=abc"


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:9000/bucket", "http://127.0.0.1:9000"),
        ("https://media.s3.eu-west-1.amazonaws.com", "https://media.s3.eu-west-1.amazonaws.com"),
    ],
)
async def test_the_origin_is_read_from_a_signed_url(tmp_path: Path, url: str, origin: str) -> None:
    assert await redirect_origin(PresigningStore(tmp_path, url)) == origin


async def test_no_origin_without_presigning(tmp_path: Path) -> None:
    assert await redirect_origin(LocalMediaStorage(tmp_path)) is None
    assert await redirect_origin(PresigningStore(tmp_path, "http://s3", presign=False)) is None


async def test_a_store_that_cannot_sign_keeps_the_pages_same_origin(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert await redirect_origin(PresigningStore(tmp_path, None)) is None
    assert "could not presign" in caplog.text
