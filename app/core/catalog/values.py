"""Coercion of one parameter value to the type the catalog declares.

Clients send values from JSON bodies and from multipart forms (where everything is a string),
so `"15"` must become `15` and `"true"` must become `True`. Every function here returns the
canonical value or raises `InvalidValue` with a message fit for a client.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

Scalar = bool | int | float | str

_INT_RE = re.compile(r"^[+-]?\d+$")
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class InvalidValue(ValueError):
    """The value cannot be read as the declared type, or is outside the allowed values."""


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise InvalidValue("must be true or false")


def to_int(value: Any) -> int:
    # bool is a subclass of int: `True` must not silently become 1.
    if isinstance(value, bool):
        raise InvalidValue("must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value.strip())
    raise InvalidValue("must be an integer")


def to_number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise InvalidValue("must be a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INT_RE.match(text):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    raise InvalidValue("must be a number")


def check_range(value: int | float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise InvalidValue(f"must be at least {format_value(minimum)}")
    if maximum is not None and value > maximum:
        raise InvalidValue(f"must be at most {format_value(maximum)}")


def to_string(value: Any, max_length: int | None) -> str:
    if not isinstance(value, str):
        raise InvalidValue("must be a string")
    if max_length is not None and len(value) > max_length:
        raise InvalidValue(f"must be at most {max_length} characters long")
    return value


def _same(value: Any, allowed: Scalar) -> bool:
    # Compare with the type: 1 == True in Python, but an enum of booleans is not one of ints.
    return type(value) is type(allowed) and value == allowed


def _coerces_to(value: Any, allowed: Scalar) -> bool:
    try:
        if isinstance(allowed, bool):
            return to_bool(value) is allowed
        if isinstance(allowed, int):
            return to_int(value) == allowed
        if isinstance(allowed, float):
            return to_number(value) == allowed
    except InvalidValue:
        return False
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    # Strings match case-insensitively ("auto" for "Auto", "1k" for "1K").
    return str(value).strip().lower() == allowed.lower()


def match_enum(value: Any, allowed: Sequence[Scalar]) -> Scalar:
    """Return the allowed value `value` stands for (exact match first, then coerced)."""
    for candidate in allowed:
        if _same(value, candidate):
            return candidate
    for candidate in allowed:
        if _coerces_to(value, candidate):
            return candidate
    raise InvalidValue("must be one of " + ", ".join(format_value(a) for a in allowed))


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return repr(value)
    return str(value)
