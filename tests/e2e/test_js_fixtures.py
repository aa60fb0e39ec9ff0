"""The front-end unit tests (js_tests/) read the model catalog as GET /api/v1/models serves
it from a JSON fixture; this keeps the fixture identical to the built-in catalog.

Regenerate with `uv run python -m tests.e2e.test_js_fixtures`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.core.catalog import ModelList, ModelOut
from app.core.catalog.loader import load_catalog

FIXTURE = Path(__file__).resolve().parents[2] / "js_tests" / "fixtures" / "models.json"


def catalog_payload() -> dict[str, Any]:
    # The built-in catalog alone, whatever MODELS_FILE this machine sets.
    models = ModelList(data=[ModelOut.from_spec(m) for m in load_catalog().visible()])
    payload: dict[str, Any] = models.model_dump(mode="json")
    return payload


def test_js_catalog_fixture_matches_the_builtin_catalog() -> None:
    assert json.loads(FIXTURE.read_text()) == catalog_payload(), (
        "js_tests/fixtures/models.json is stale: run `uv run python -m tests.e2e.test_js_fixtures`"
    )


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(catalog_payload(), indent=1) + "\n")
