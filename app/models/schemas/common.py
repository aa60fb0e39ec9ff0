"""Pieces shared by request schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, field_validator
from pydantic_core import PydanticCustomError

NUL = "\x00"
NUL_MESSAGE = "must not contain NUL (\\u0000) characters"


def contains_nul(value: Any) -> bool:
    """Whether any string in `value` (keys of mappings included, at any depth) has a NUL.

    Iterative: a deeply nested JSON body must not be able to exhaust the stack here.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if NUL in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def _in_utc_range(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # e.g. 0001-01-01T00:00+01:00 or 9999-12-31T23:59-14:00: the databases compare in UTC
        raise PydanticCustomError(
            "datetime_out_of_range", "datetime is out of range once converted to UTC"
        ) from None


# A datetime input that is representable in UTC (aware ones are converted to UTC): without
# this check, such a value fails inside the database driver as a 500.
UtcDatetime = Annotated[datetime, AfterValidator(_in_utc_range)]


class InputModel(BaseModel):
    """Base of request bodies. No text in them may contain NUL (U+0000): PostgreSQL cannot
    store it in a text column, so it is refused up front as a 422 naming the field, on every
    database backend alike (SQLite would have stored it)."""

    @field_validator("*", mode="before")
    @classmethod
    def _reject_nul(cls, value: Any) -> Any:
        if contains_nul(value):
            raise PydanticCustomError("string_nul", NUL_MESSAGE)
        return value
