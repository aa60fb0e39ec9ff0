"""Build the catalog: the built-in models, merged with an operator's file, minus hidden ids.

Operators change the catalog without code changes through two environment variables (also
read from `.env`):

- `MODELS_FILE`: a YAML or JSON file with the same schema as `builtin.yaml` (a `models` list,
  or a bare list). An entry whose `id` is a built-in model overrides it field by field
  (`capabilities` key by key; `parameters` and `rules` as whole lists); an entry with a new
  `id` adds a model, either complete or as `extends: <existing id>` plus the fields that
  differ.
- `MODELS_HIDDEN`: comma-separated model ids to hide (`hidden: true` in the file does the same).
  Hidden models are not listed and not accepted for generation.

An unreadable or invalid file raises `CatalogError` (a `ConfigurationError`) that names the
file and the offending model, so the service refuses to start instead of serving a half
catalog.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.catalog.schema import Catalog
from app.core.secrets import ConfigurationError

logger = logging.getLogger(__name__)

BUILTIN_RESOURCE = "builtin.yaml"


class CatalogError(ConfigurationError):
    """The catalog (built-in or MODELS_FILE) cannot be loaded; the message says why."""


class CatalogSettings(BaseSettings):
    """The two catalog settings. Kept here so the catalog owns its configuration."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    models_file: Path | None = None
    models_hidden: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("models_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("models_hidden", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def _definitions(document: Any, source: str) -> list[dict[str, Any]]:
    """The model entries of a parsed file: `{models: [...]}` (plus `x-*` keys) or a list."""
    if isinstance(document, dict):
        unknown = [k for k in document if k != "models" and not str(k).startswith("x-")]
        if unknown:
            raise CatalogError(f"{source}: unknown top-level key(s) {unknown}; expected 'models'")
        document = document.get("models", [])
    if document is None:
        return []
    if not isinstance(document, list):
        raise CatalogError(f"{source}: expected a list of models or a mapping with 'models'")
    for index, entry in enumerate(document):
        if not isinstance(entry, dict):
            raise CatalogError(f"{source}: model #{index} is not a mapping")
        if not isinstance(entry.get("id"), str) or not entry["id"]:
            raise CatalogError(f"{source}: model #{index} has no 'id'")
    # Anchors in YAML share objects between entries: copy so merging never aliases.
    return copy.deepcopy(document)


def _parse(text: str, source: str, *, as_json: bool) -> Any:
    try:
        return json.loads(text) if as_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CatalogError(f"{source}: not valid {'JSON' if as_json else 'YAML'}: {exc}") from exc


def builtin_definitions() -> list[dict[str, Any]]:
    text = resources.files("app.core.catalog").joinpath(BUILTIN_RESOURCE).read_text("utf-8")
    return _definitions(_parse(text, BUILTIN_RESOURCE, as_json=False), BUILTIN_RESOURCE)


def read_models_file(path: Path | str) -> list[dict[str, Any]]:
    path = Path(path)
    source = f"MODELS_FILE {path}"
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{source}: cannot be read: {exc}") from exc
    return _definitions(_parse(text, source, as_json=path.suffix.lower() == ".json"), source)


def _override(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if key == "capabilities" and isinstance(value, dict):
            merged["capabilities"] = {**merged.get("capabilities", {}), **value}
        else:
            merged[key] = value
    return merged


def merge_definitions(
    base: list[dict[str, Any]], extra: list[dict[str, Any]], source: str = "MODELS_FILE"
) -> list[dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {entry["id"]: entry for entry in base}
    order = [entry["id"] for entry in base]
    for entry in extra:
        entry = dict(entry)
        model_id = entry["id"]
        parent = entry.pop("extends", None)
        if parent is not None:
            if model_id in by_id:
                raise CatalogError(f"{source}: {model_id!r} exists; 'extends' is for new ids")
            if parent not in by_id:
                raise CatalogError(f"{source}: {model_id!r} extends unknown model {parent!r}")
            # A derived model calls the same upstream model unless it says otherwise, and is
            # visible even when its parent is hidden.
            template = {k: v for k, v in by_id[parent].items() if k != "hidden"}
            template.setdefault("upstream_model", parent)
            entry = _override(template, entry)
        elif model_id in by_id:
            entry = _override(by_id[model_id], entry)
        if model_id not in by_id:
            order.append(model_id)
        by_id[model_id] = entry
    return [by_id[model_id] for model_id in order]


def _format_error(exc: ValidationError, definitions: list[dict[str, Any]]) -> str:
    lines = []
    for error in exc.errors()[:10]:
        loc = list(error.get("loc", ()))
        where = ""
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
            where = f"model {definitions[loc[1]].get('id')!r}"
            loc = loc[2:]
        path = ".".join(str(part) for part in loc)
        where = " ".join(part for part in (where, path) if part) or "catalog"
        lines.append(f"{where}: {error.get('msg')}")
    return "; ".join(lines)


def build_catalog(
    definitions: list[dict[str, Any]], hidden: Iterable[str] = (), source: str = "catalog"
) -> Catalog:
    hidden_ids = set(hidden)
    known = {entry["id"] for entry in definitions}
    missing = sorted(hidden_ids - known)
    if missing:
        # Not fatal: a model removed from a later release must not stop the service.
        logger.warning("MODELS_HIDDEN names unknown model(s): %s", ", ".join(missing))
    for entry in definitions:
        if entry["id"] in hidden_ids:
            entry["hidden"] = True
    try:
        return Catalog.model_validate({"models": definitions})
    except ValidationError as exc:
        raise CatalogError(f"{source} is invalid: {_format_error(exc, definitions)}") from exc


def load_catalog(models_file: Path | str | None = None, hidden: Iterable[str] = ()) -> Catalog:
    """The built-in catalog, merged with `models_file` and with `hidden` ids hidden."""
    definitions = builtin_definitions()
    source = "built-in catalog"
    if models_file is not None and str(models_file).strip():
        definitions = merge_definitions(
            definitions, read_models_file(models_file), f"MODELS_FILE {models_file}"
        )
        source = f"catalog (with MODELS_FILE {models_file})"
    return build_catalog(definitions, hidden, source)


@lru_cache
def get_catalog() -> Catalog:
    """The service's catalog, loaded once from the environment. Raises `CatalogError`."""
    settings = CatalogSettings()
    return load_catalog(settings.models_file, settings.models_hidden)
