"""Sets of calls of one tool in a reply: the one call a small model leaves out of a grid the request
spells out, and a call it wrote twice, the second time with an option added.

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

#: words that ask for a call again with something changed ("then the same but in 'genbank' format")
_AGAIN = re.compile(r"\b(?:again|same|repeat|once more|instead|another|also|then|as well|both|respectively|each|"
                    r"too|with and without)\b")
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


def drop_subsumed_calls(calls: Sequence[ToolCall], messages: Sequence[Message]) -> tuple[list[ToolCall], list[str]]:
    """(calls without those another call of the same tool contains whole, one note per call dropped).

    The 0.5B writes a call and then the same call again with an option added (`send_email(to,
    subject)` then `send_email(to, subject, body)`; `find_movies(genre)` then `find_movies(director,
    genre)`): one request, written twice. A call whose arguments are all in another call of its tool
    with the same values is dropped, unless the request asks for a call again with a change ("then
    the same but in 'genbank' format", "instead", "also", "with and without") or lists the larger
    call's added value with another ("resistivity of copper and aluminum"): BFCL's parallel answers
    hold such pairs, each asked for so. Offline: of BFCL's 440 answer sets of two calls or more, none
    loses a call as written, 3 where an option an answer allows to leave out is left out ("the
    status and trial date of case XY1234"); the recorded replies of session 29 gain 2 (an email
    written twice, a movie search without and with its director) and lose none.
    """
    request = latest_request(messages)
    if len(calls) < 2 or _AGAIN.search(request):
        return list(calls), []
    items = [{(k, json.dumps(v, sort_keys=True)) for k, v in c.arguments.items()} for c in calls]
    out, notes = [], []
    for i, call in enumerate(calls):
        larger = next((j for j, other in enumerate(calls) if other.name == call.name and items[i] < items[j]), None)
        if larger is not None and not any(_in_a_list(calls[larger].arguments[k], request)
                                          for k in calls[larger].arguments.keys() - call.arguments.keys()):
            notes.append(f"dropped {call.name}({json.dumps(call.arguments)}): the reply's call "
                         f"{json.dumps(calls[larger].arguments)} holds it whole")
            continue
        out.append(call)
    return out, notes


def _in_a_list(value: Any, request: str) -> bool:
    """Whether the (lower-cased) request writes `value` next to another item of a list ("copper and
    aluminum", "'civil' and 'criminal'")."""
    text = _text(value).strip("'\"")
    at = request.find(text)
    if not text or at < 0:
        return False
    before, after = request[max(0, at - 40):at], request[at + len(text):at + len(text) + 40]
    return bool(re.match(r"['\"]?\s*(?:,|and\b|or\b|&)\s*['\"]?\w", after)
                or re.search(r"\w['\"]?\s*(?:,|\band|\bor|&)\s*['\"]?$", before))
