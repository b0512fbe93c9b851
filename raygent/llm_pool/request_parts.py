"""The part of a request each of several calls of one tool answers.

"The resonant frequency with an inductance of 0.5 and a capacitance of 0.1, rounded to 3 decimals,
and then with an inductance of 0.7 and a capacitance of 0.2, rounded to 4" asks for two calls of one
tool, each with its own `round_off`. Read against the whole request, "rounded to" stands next to
two numbers, so nothing can be filled. Each call's values that set it apart from the tool's other
calls (0.5 and 0.1; 0.7 and 0.2) show where its part lies: a part ends at the last clause break
(". ", "; ", ", ", " and ") between one call's values and the next call's, so that "a large bird
with black feathers" keeps "large" with its own call. Parts are only given where every call has
such a value in the request and the calls' values come in the reply's order.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from raygent.llm_pool.call_filter import _key, _leaves, _number_forms
from raygent.schema import ToolCall


#: where one clause of a request ends and the next begins
_BREAK = re.compile(r"[.;:!?]\s+|,\s+|\n+|\s+(?:and|then)\s+")


def _written(value: Any) -> str:
    return str(value) if not isinstance(value, float) or not value.is_integer() else str(int(value))


def _first_position(value: Any, request: str, start: int) -> int | None:
    """Where a leaf value first appears in the lower-cased request at or after `start`."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        forms = sorted(_number_forms(value), key=len, reverse=True)
        spots = [m.start() for f in forms
                 for m in [re.compile(rf"(?<![\d.]){re.escape(f)}(?![\d])").search(request, start)] if m]
        return min(spots) if spots else None
    text = str(value).strip().lower()
    if len(text) < 2:
        return None
    at = request.find(text, start)
    return at if at >= 0 else None


def call_parts(calls: Sequence[ToolCall], request: str) -> dict[int, str]:
    """{index of a call in `calls`: the part of the (lower-cased) request it answers}, for the calls
    of tools called more than once where their parts can be told; other calls are not in it."""
    by_tool: dict[str, list[int]] = defaultdict(list)
    for i, call in enumerate(calls):
        by_tool[call.name].append(i)
    parts: dict[int, str] = {}
    for indices in by_tool.values():
        if len(indices) < 2:
            continue
        leaves = {i: list(_leaves(calls[i].arguments)) for i in indices}
        counts = Counter(key for i in indices for key in {_key(v) for v in leaves[i]})  # calls holding a value
        spans: list[tuple[int, int]] = []  # where each call's own values begin and end
        cursor = 0
        for i in indices:
            own = [v for v in leaves[i] if counts[_key(v)] == 1]  # values no other call of the tool has
            found = [(p, p + len(_written(v))) for v in own if (p := _first_position(v, request, cursor)) is not None]
            if not found:
                break
            spans.append((min(p for p, _ in found), max(e for _, e in found)))
            cursor = spans[-1][0] + 1
        if len(spans) != len(indices):
            continue
        # a part ends at the last break (". ", "; ", ", ") between one call's values and the next's:
        # "... near a lake. The third one was a medium-sized bird with a brown color ..."
        bounds = [0]
        for (_, end), (start, _) in zip(spans, spans[1:]):
            breaks = [m.end() for m in _BREAK.finditer(request, min(end, start), start)]
            bounds.append(breaks[-1] if breaks else start)
        bounds.append(len(request))
        for n, i in enumerate(indices):
            parts[i] = request[bounds[n]:bounds[n + 1]]
    return parts
