"""One download in a fresh process, so its peak RSS (VmHWM) is its own.

`python -m bench.media_child MODE URL DEST` prints one JSON line. Modes:
- `bare`: httpx stream straight into a file (the baseline),
- `download`: `app.core.media.download.download_to_temp` (the worker's streaming download),
- `fetch`: `app.core.tasks.results.fetch_result` (download + probe + thumbnail, as the worker).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

MAX_BYTES = 8 * 1024**3


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _bare(url: str, dest: Path) -> dict[str, Any]:
    async with (
        httpx.AsyncClient(timeout=120) as client,
        client.stream("GET", url) as response,
    ):
        response.raise_for_status()
        size = 0
        with dest.open("wb") as handle:
            async for chunk in response.aiter_bytes():
                handle.write(chunk)
                size += len(chunk)
    return {"bytes": size}


async def _download(url: str, dest: Path) -> dict[str, Any]:
    from app.clients.http import build_http_client
    from app.core.config import Settings
    from app.core.media.download import DownloadPolicy, download_to_temp

    settings = Settings(_env_file=None)
    async with build_http_client(settings) as client:
        result = await download_to_temp(
            client,
            url,
            dest=dest,
            max_bytes=MAX_BYTES,
            policy=DownloadPolicy(trusted_hosts={"127.0.0.1"}),
        )
    return {"bytes": result.size, "type": result.sniffed_type, "sha256": result.sha256}


async def _fetch(url: str, dest: Path) -> dict[str, Any]:
    from app.clients.base import UpstreamResult
    from app.clients.http import build_http_client
    from app.core.config import Settings
    from app.core.media.download import DownloadPolicy
    from app.core.media.storage import create_media_storage
    from app.core.tasks.results import discard_temp, fetch_result

    settings = Settings(_env_file=None, data_dir=dest.parent / "data", media_max_bytes=MAX_BYTES)
    storage = create_media_storage(settings)
    async with build_http_client(settings) as client:
        fetched = await fetch_result(
            client,
            storage,
            settings,
            DownloadPolicy(trusted_hosts={"127.0.0.1"}),
            UpstreamResult(url=url),
            0,
        )
    try:
        if fetched.file is None:
            raise RuntimeError(f"fetch failed: {fetched.failure_reason} {fetched.failure_message}")
        return {
            "bytes": fetched.file.size,
            "type": fetched.content_type,
            "thumbnail": fetched.thumbnail_path is not None,
        }
    finally:
        discard_temp(fetched)


async def _main(mode: str, url: str, dest: Path) -> None:
    # Import everything the mode needs before measuring the starting RSS.
    run = {"bare": _bare, "download": _download, "fetch": _fetch}[mode]
    if mode != "bare":
        import app.core.media.download
        import app.core.tasks.results  # noqa: F401
    rss_before = _status_mb("VmRSS")
    started, cpu = time.perf_counter(), time.process_time()
    result = await run(url, dest)
    result.update(
        mode=mode,
        seconds=time.perf_counter() - started,
        cpu=time.process_time() - cpu,
        rss_before_mb=rss_before,
        hwm_mb=_status_mb("VmHWM"),
    )
    dest.unlink(missing_ok=True)  # noqa: ASYNC240 (after the measurement)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
