"""Coordinates the request gives with a hemisphere letter, as signed numbers.

"The forecast at 37.8651 N, 119.5383 W" means longitude -119.5383; the 0.5B copies the digits and
drops the hemisphere (`longitude=119.5383`, a point in China's Qinghai instead of Yosemite). A
positive number of a coordinate argument (its name, or the name of the list holding it, has "lat",
"lon", "lng" or "coord") that the latest request writes followed by S or W ("119.5383 W",
"33.9° S", "118.24 west") is made negative. "100 W" of a lamp or "10 s" are left: their
parameters are no coordinates. Offline: none of BFCL's 3,152 answer calls changes (their
coordinates are already signed); of the recorded replies, live_simple_39 becomes right.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from raygent.llm_pool.call_filter import identifier_words
from raygent.llm_pool.stated_options import latest_request
from raygent.llm_pool.value_rewrites import rewrite_values
from raygent.schema import Message, ToolCall

_MARKED = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*°?\s*(S|W|south|west)\b", re.IGNORECASE)
_COORDINATE_WORDS = ("lat", "lon", "lng", "coord")


def _is_coordinate(name: str) -> bool:
    return any(w.startswith(_COORDINATE_WORDS) for w in identifier_words(name))


def _signed(value: Any, southwest: set[float]) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return -value if value > 0 and float(value) in southwest else value
    if isinstance(value, list):
        return [_signed(v, southwest) for v in value]
    return value


def signed_coordinates(calls: Sequence[ToolCall], messages: Sequence[Message]) -> tuple[list[ToolCall], list[str]]:
    """(calls with south and west coordinates negative, a note for each argument changed)."""
    request = latest_request(messages)
    southwest = {float(number) for number, _ in _MARKED.findall(request)}
    if not southwest:
        return list(calls), []

    def signed(name: str, value: Any, prop: Any) -> Any:
        return _signed(value, southwest) if _is_coordinate(name) else None

    return rewrite_values(calls, None, signed, "the request gives it south or west")
