"""Pydantic v2 request and response schemas, one module per resource (auth, keys, logs, …).

Import from the resource module (`from app.models.schemas.auth import UserOut`); this package
re-exports nothing, so resource modules can be added without touching it.
"""
