"""Dates written in the format a tool's schema names.

A schema often says how it wants a date: "the date of the journey in the format 'MM/DD/YYYY'",
"formatted as 'DD-MM-YYYY'". A 0.5B model writes dates the one way it has seen most (ISO,
"2023-10-11"), and sometimes drops a zero ("2023-05-2"); the service then rejects the date or reads
another day. Where a string parameter's description names exactly one numeric date format, a call's
value that is a whole date the model wrote unambiguously (ISO year first, or "March 7, 2023") is
rewritten in that format. A value already in the named shape only gets its missing zeros; values
with a time, several dates, or day and month in an order that cannot be told apart are left.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import Any

from raygent.llm_pool.value_rewrites import rewrite_values
from raygent.schema import ToolCall, ToolSpec

#: the numeric date formats descriptions name, as (order of fields, separator)
_FORMATS = {"YYYY-MM-DD": ("ymd", "-"), "YYYY/MM/DD": ("ymd", "/"), "MM/DD/YYYY": ("mdy", "/"),
            "DD/MM/YYYY": ("dmy", "/"), "MM-DD-YYYY": ("mdy", "-"), "DD-MM-YYYY": ("dmy", "-"),
            "%Y-%M-%D": ("ymd", "-"), "%M/%D/%Y": ("mdy", "/"), "%D/%M/%Y": ("dmy", "/")}
_NAMED = re.compile(r"(?<![\w%])(" + "|".join(re.escape(f) for f in _FORMATS) + r")(?![\w])", re.IGNORECASE)
_MONTHS = {m: i for i, m in enumerate("january february march april may june july august september october "
                                      "november december".split(), 1)}
_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_NUMERIC = re.compile(r"(\d{1,4})([-/])(\d{1,2})\2(\d{1,4})")
_MONTH_FIRST = re.compile(r"([a-z]{3,9})\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})", re.IGNORECASE)
_DAY_FIRST = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]{3,9})\.?,?\s+(\d{4})", re.IGNORECASE)


def described_date_format(prop: Any) -> str | None:
    """The one numeric date format a string parameter's description names ('MM/DD/YYYY'), or None
    (none, or several: which one the service takes is then not known)."""
    if not isinstance(prop, dict) or prop.get("type", "string") != "string":
        return None
    named = {f.upper() for f in _NAMED.findall(str(prop.get("description") or ""))}
    return named.pop() if len(named) == 1 else None


def _month(word: str) -> int | None:
    word = word.lower()
    return next((n for name, n in _MONTHS.items() if name.startswith(word) and len(word) >= 3), None)


def _make(year: int, month: int | None, day: int) -> date | None:
    try:
        return date(year, month, day) if month else None
    except ValueError:
        return None


def read_date(value: str, shape: str | None = None) -> date | None:
    """The date a whole value spells unambiguously: ISO ("2023-5-2"), a month by name ("March 7th,
    2023", "7 March 2023"), or, where `shape` ('mdy', 'dmy') says the order, day and month in digits."""
    text = value.strip()
    if m := _ISO.fullmatch(text):
        return _make(int(m[1]), int(m[2]), int(m[3]))
    if m := _MONTH_FIRST.fullmatch(text):
        return _make(int(m[3]), _month(m[1]), int(m[2]))
    if m := _DAY_FIRST.fullmatch(text):
        return _make(int(m[3]), _month(m[2]), int(m[1]))
    if shape in ("mdy", "dmy") and (m := _NUMERIC.fullmatch(text)) and len(m[4]) == 4:
        first, second = int(m[1]), int(m[3])
        month, day = (first, second) if shape == "mdy" else (second, first)
        return _make(int(m[4]), month, day)
    return None


def write_date(day: date, fmt: str) -> str:
    order, sep = _FORMATS[fmt.upper()]
    fields = {"y": f"{day.year:04d}", "m": f"{day.month:02d}", "d": f"{day.day:02d}"}
    return sep.join(fields[f] for f in order)


def in_described_format(value: str, prop: Any) -> str | None:
    """`value` rewritten in the date format the parameter's description names; None to leave it."""
    fmt = described_date_format(prop)
    if fmt is None:
        return None
    order, sep = _FORMATS[fmt]
    numeric = _NUMERIC.fullmatch(value.strip())
    if numeric and numeric[2] != sep and not _ISO.fullmatch(value.strip()):
        return None  # "10/11/2023" where 'DD-MM-YYYY' is asked: which is the day is not known
    day = read_date(value, order if numeric and numeric[2] == sep else None)
    if day is None:
        return None
    written = write_date(day, fmt)
    return written if written != value else None


def format_dates(calls: Sequence[ToolCall], tools: Sequence[ToolSpec] | None) -> tuple[list[ToolCall], list[str]]:
    """(calls with their dates in the formats the schemas name, a note for each value changed)."""
    def formatted(name: str, value: Any, prop: Any) -> str | None:
        return in_described_format(value, prop) if isinstance(value, str) else None

    return rewrite_values(calls, tools, formatted, "the format its schema names")
