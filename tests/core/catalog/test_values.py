"""Coercion of single values: what a form or JSON body may send for each declared type."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.catalog.values import InvalidValue, match_enum, to_bool, to_int, to_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("FALSE", False),
        ("1", True),
        ("off", False),
        (1, True),
        (0, False),
        (" yes ", True),
    ],
)
def test_to_bool(raw: Any, expected: bool) -> None:
    assert to_bool(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", 2, None, 1.0, [], ""])
def test_to_bool_rejects(raw: Any) -> None:
    with pytest.raises(InvalidValue):
        to_bool(raw)


@pytest.mark.parametrize(
    ("raw", "expected"), [(15, 15), ("15", 15), (" -1 ", -1), (15.0, 15), ("+3", 3)]
)
def test_to_int(raw: Any, expected: int) -> None:
    value = to_int(raw)
    assert value == expected
    assert type(value) is int


@pytest.mark.parametrize("raw", [True, 1.5, "1.5", "ten", float("inf"), None, "", "1e3"])
def test_to_int_rejects(raw: Any) -> None:
    with pytest.raises(InvalidValue):
        to_int(raw)


@pytest.mark.parametrize(("raw", "expected"), [(1, 1), (0.5, 0.5), ("0.25", 0.25), ("7", 7)])
def test_to_number(raw: Any, expected: float) -> None:
    assert to_number(raw) == expected


@pytest.mark.parametrize("raw", [False, "nan", float("nan"), "inf", "x", None])
def test_to_number_rejects(raw: Any) -> None:
    with pytest.raises(InvalidValue):
        to_number(raw)


@pytest.mark.parametrize(
    ("raw", "allowed", "expected"),
    [
        ("15", [10, 15], 15),
        (15.0, [10, 15], 15),
        ("auto", ["Auto", "1:1"], "Auto"),
        ("1k", ["1K", "2K"], "1K"),
        (4, ["4", "8"], "4"),
        ("true", [True], True),
    ],
)
def test_match_enum(raw: Any, allowed: list[Any], expected: Any) -> None:
    value = match_enum(raw, allowed)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("raw", "allowed"),
    [(True, [1, 0]), ("25", [10, 15]), (None, ["a"]), ([10], [10]), ("16:10", ["16:9"])],
)
def test_match_enum_rejects(raw: Any, allowed: list[Any]) -> None:
    with pytest.raises(InvalidValue, match="must be one of"):
        match_enum(raw, allowed)
