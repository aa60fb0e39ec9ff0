"""The declarative model catalog: which models exist, their parameters and rules.

`get_catalog()` gives the service's catalog (built-in + `MODELS_FILE`, minus `MODELS_HIDDEN`);
`validate_request()` checks a generation request against it.
"""

from app.core.catalog.loader import CatalogError, CatalogSettings, get_catalog, load_catalog
from app.core.catalog.schema import (
    ADAPTER_KINDS,
    Capabilities,
    Catalog,
    Mode,
    ModelKind,
    ModelList,
    ModelOut,
    ModelSpec,
    ParameterSpec,
    Rule,
)
from app.core.catalog.validation import ValidatedRequest, validate_request

__all__ = [
    "ADAPTER_KINDS",
    "Capabilities",
    "Catalog",
    "CatalogError",
    "CatalogSettings",
    "Mode",
    "ModelKind",
    "ModelList",
    "ModelOut",
    "ModelSpec",
    "ParameterSpec",
    "Rule",
    "ValidatedRequest",
    "get_catalog",
    "load_catalog",
    "validate_request",
]
