"""A rate the user gives in percent, written as the fraction a rate parameter takes.

"An annual interest rate of 3%" makes the 0.5B write `annual_interest_rate=3.0`, where the tool
computes with 0.03: the future value of $1,000 at "3" is a hundred times too large. Over BFCL's
categories (every case whose request writes a percentage that a call's number parameter gets),
the fraction was wanted 56 times for `number` parameters named or described as a rate, a return,
a yield, a growth or a probability, and the percentage itself only for `integer` parameters and
those described as a percentage or from 0 to 100 (screen brightness, volume, a confidence score).
So a call's number is rewritten as a fraction where all of these hold:

- the parameter is a `number` (never an `integer`);
- its description says "as a decimal", "5% is 0.05" or gives a default between 0 and 1; or else
  its name or description speaks of a rate, return, yield, growth, interest, discount or
  probability and its description does not say "percent"/"percentage" or "100" (then it wants the
  percentage);
- the value is above 1 and the latest request writes it as a percentage ("3%", "3 percent").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from raygent.llm_pool.call_filter import identifier_words
from raygent.llm_pool.stated_options import latest_request
from raygent.llm_pool.value_rewrites import rewrite_values
from raygent.schema import Message, ToolCall, ToolSpec

_RATE_WORDS = frozenset("rate rates return returns yield growth interest discount probability prob "
                        "chance".split())
_DECIMAL = re.compile(r"(?:as|in) (?:a )?decimal|\d%\s*(?:is|=|would be)\s*0\.\d|default(?: value)?(?: is|:|=)?\s*0?\.\d")
_PERCENT_SCALE = re.compile(r"percent|\b100\b")
_PERCENTAGE = re.compile(r"(\d+(?:\.\d+)?)\s?(?:%|percent\b|per cent\b)")


def _wants_fraction(name: str, prop: dict[str, Any]) -> bool:
    if prop.get("type") not in ("number", "float"):
        return False
    description = str(prop.get("description") or "").lower()
    default = prop.get("default")
    if _DECIMAL.search(description) or (isinstance(default, float) and 0 < default < 1):
        return True
    if _PERCENT_SCALE.search(description):
        return False
    return bool(_RATE_WORDS & (set(identifier_words(name)) | set(re.findall(r"[a-z]+", description))))


def rates_as_fractions(calls: Sequence[ToolCall], tools: Sequence[ToolSpec] | None,
                       messages: Sequence[Message]) -> tuple[list[ToolCall], list[str]]:
    """(calls with percentages written as fractions where the parameter wants one, a note for each)."""
    percentages = {float(p) for p in _PERCENTAGE.findall(latest_request(messages))}
    if not percentages or not tools:
        return list(calls), []

    def as_fraction(name: str, value: Any, prop: Any) -> float | None:
        if (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 1
                and float(value) in percentages and isinstance(prop, dict) and _wants_fraction(name, prop)):
            return round(value / 100, 10)
        return None

    return rewrite_values(calls, tools, as_fraction, "the request gives it in percent")
