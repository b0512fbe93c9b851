"""The one call a small model leaves out of a grid of parallel calls the request spells out.

"The winning percentage of Lakers and Bulls in NBA seasons 2018 and 2020" asks for four calls, one
per team and season. The 0.5B writes three of them (Lakers 2018, Bulls 2020, Lakers 2020) and
stops: its missing parallel calls are repeats of a pattern, not new requests. Where a tool's calls
in one reply agree on every argument but two, those two take two or more values each, exactly one
combination is missing, and the request lists each argument's values together ("Lakers and Bulls",
"2018 and 2020"), the missing combination is added.

Over BFCL's parallel categories, the answers hold 8 full 2 x 2 grids (4 with both lists written
together) and 4 "L-shaped" sets of three calls that must not be completed, none of which has both
lists written together (parallel_168: a payout of 5 then 6 million, shares of 2 then 2.5 million,
in separate sentences).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from typing import Any

from raygent.llm_pool.stated_options import latest_request
from raygent.schema import Message, ToolCall

#: what may stand between two values of one list: a comma, "and", "or", "&", and one word ("2018 and 2020")
_BETWEEN = re.compile(r"\s*(?:,\s*(?:and\s+|or\s+)?|and\s+|or\s+|&\s*|vs\.?\s+)?(?:\w+\s+)?", re.IGNORECASE)


def _text(value: Any) -> str:
    return value.lower() if isinstance(value, str) else json.dumps(value)


def listed_together(values: Sequence[Any], request: str) -> bool:
    """Whether the (lower-cased) request writes the values one after another as a list, in any order:
    "lakers and bulls", "2018, 2019 and 2020"."""
    spans = []
    for value in values:
        match = re.search(rf"(?<!\w){re.escape(_text(value))}(?!\w)", request)
        if match is None:
            return False
        spans.append(match.span())
    spans.sort()
    return all(_BETWEEN.fullmatch(request[end:start]) for (_, end), (start, _) in zip(spans, spans[1:]))


def complete_grids(calls: Sequence[ToolCall], messages: Sequence[Message],
                   max_calls: int | None = None) -> tuple[list[ToolCall], list[str]]:
    """(calls with each grid's one missing combination added, one note per added call)."""
    request = latest_request(messages)
    out, notes = list(calls), []
    by_tool: dict[str, list[ToolCall]] = {}
    for call in calls:
        by_tool.setdefault(call.name, []).append(call)
    for name, group in by_tool.items():
        if len(group) < 3 or len({frozenset(c.arguments) for c in group}) != 1:
            continue
        missing = _missing_cell(group, request)
        if missing is None or (max_calls is not None and len(out) >= max_calls):
            continue
        added = ToolCall(name=name, arguments={**group[0].arguments, **missing})
        out.insert(out.index(group[-1]) + 1, added)
        notes.append(f"added {name}({json.dumps(added.arguments)}): the request lists "
                     f"{' and '.join(missing)}'s values together and the other calls cover the rest")
    return out, notes


def _missing_cell(group: list[ToolCall], request: str) -> dict[str, Any] | None:
    keys = sorted(group[0].arguments)
    for p, q in itertools.combinations(keys, 2):
        rest = {json.dumps({k: v for k, v in c.arguments.items() if k not in (p, q)}, sort_keys=True) for c in group}
        if len(rest) != 1:
            continue
        ps = list(dict.fromkeys(_text(c.arguments[p]) for c in group))
        qs = list(dict.fromkeys(_text(c.arguments[q]) for c in group))
        present = {(_text(c.arguments[p]), _text(c.arguments[q])) for c in group}
        if len(ps) < 2 or len(qs) < 2 or len(present) != len(group) or len(ps) * len(qs) - len(present) != 1:
            continue
        if not (listed_together(ps, request) and listed_together(qs, request)):
            continue
        (pv, qv), = set(itertools.product(ps, qs)) - present
        value_of = {_text(c.arguments[k]): c.arguments[k] for c in group for k in (p, q)}
        return {p: value_of[pv], q: value_of[qv]}
    return None
