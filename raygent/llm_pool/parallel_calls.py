"""Sets of calls of one tool in a reply: the one call a small model leaves out of a grid the request
spells out, the calls it leaves out of a list the request spells out, and a call it wrote twice,
the second time with an option added.

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

from raygent.llm_pool.call_filter import _leaves
from raygent.llm_pool.stated_options import latest_request
from raygent.schema import Message, ToolCall, ToolSpec

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


def drop_fragment_calls(calls: Sequence[ToolCall], messages: Sequence[Message]) -> tuple[list[ToolCall], list[str]]:
    """(calls without those whose one differing text is a fragment of another call's, one note per
    call dropped).

    "start Docker on window using docker start" gets `execute("start")`, `execute("docker start")`
    and `execute("docker")` from the 0.5B: one command written whole and in pieces. Where calls of
    one tool take the same parameters and differ in one text only, a call whose text's words all
    stand in the other's longer text is dropped, unless the request lists it as an item of its own
    ("pizza and pizza hut"). None of BFCL's answer sets holds such a pair."""
    request = latest_request(messages)
    out, notes = [], []
    for call in calls:
        whole = next((other for other in calls if _fragment_of(call, other) and not _in_a_list(
            next(v for k, v in call.arguments.items() if other.arguments[k] != v), request)), None)
        if whole is not None:
            notes.append(f"dropped {call.name}({json.dumps(call.arguments)}): a piece of the call "
                         f"{json.dumps(whole.arguments)}")
            continue
        out.append(call)
    return out, notes


def _fragment_of(call: ToolCall, other: ToolCall) -> bool:
    if call is other or call.name != other.name or call.arguments.keys() != other.arguments.keys():
        return False
    differing = [k for k, v in call.arguments.items() if other.arguments[k] != v]
    if len(differing) != 1 or not all(isinstance(c.arguments[differing[0]], str) for c in (call, other)):
        return False
    piece = re.findall(r"\w+", call.arguments[differing[0]].lower())
    whole = re.findall(r"\w+", other.arguments[differing[0]].lower())
    return bool(piece) and len(piece) < len(whole) and all(w in whole for w in piece)


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


# -- the rest of a list the request spells out ---------------------------------------------------
#: what goes from one item of a list to the next: a comma, "and", "or", "&", "as well as", then maybe
#: a word that points back ("and also in", "and another one in") and a preposition ("and from")
_NEXT_ITEM = re.compile(r"\s*(?:,\s*(?:and\s+|or\s+)?|(?:and|or|&|as well as|vs\.?)\s+)"
                        r"(?:(?:also|then|another(?:\s+one)?|one|the\s+other|same\s+for)\s+)?"
                        r"(?:(?:in|from|at|for|of|to|on|by|with|about)\s+)?(?:the\s+)?", re.IGNORECASE)
_AND_OR = re.compile(r"\b(?:and|or|as well as|vs)\b|&", re.IGNORECASE)
#: a capitalised word ("San", "D.C", "Madrid's"), a name of several ("Museum of Modern Art"), and a
#: state code after a comma ("Boston, MA")
_NAME_WORD = r"[A-Z](?:[\w'’-]|\.(?!\s|$))*"
_NAME = re.compile(_NAME_WORD + r"(?:\s+(?:of\s+|de\s+)?(?:" + _NAME_WORD + r"|\d+\b))*(?:,\s*[A-Z]{2}\b)?")
#: what qualifies a name rather than lists another one: "Paris, France", "Riga, Latvia"
_QUALIFIER = re.compile(r",\s*" + _NAME_WORD + r"(?:\s+" + _NAME_WORD + r")*")
_QUOTED = re.compile(r"['\"‘“]([^'\"’”\n]{1,60})['\"’”]")
_LISTED_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?![\w.])")
#: capitalised words that open a sentence or a request rather than name something
SENTENCE_OPENERS = frozenset("I I'm I've I'd Can Could Would Will Please Find What Where When Who How Is Are Do Does "
                             "Get Give Tell Show List Calculate Also Then Next After Afterwards First Second Third "
                             "Fourth Lastly Finally Additionally Furthermore Moreover Hi Hello Thanks Thank The A An "
                             "And Or In On For My Me It This That Help Let Lets Let's Make Search Check "
                             "Book".split())
#: a parameter that takes several items in one value ("a comma-separated list of cities")
_TAKES_SEVERAL = re.compile(r"comma|separated|list of|multiple|one or more|several", re.IGNORECASE)


def plain_text(value: Any) -> str:
    """A value's words, lower-cased, one space between them: how items and call values are compared."""
    return re.sub(r"[\W_]+", " ", str(value).lower()).strip()


def _used(item: str, calls: Sequence[ToolCall]) -> bool:
    """Whether some call's value is the item or holds it whole, or the item holds the value
    ("Los Angeles, CA" for a call's "Los Angeles")."""
    item = plain_text(item)
    for call in calls:
        for value in _leaves(call.arguments):
            if isinstance(value, bool) or value is None:
                continue
            value = plain_text(value)
            if item == value or any(len(a) >= 3 and re.search(rf"(?<!\w){re.escape(a)}(?!\w)", b)
                                    for a, b in ((item, value), (value, item))):
                return True
    return False


def _calls_since_request(messages: Sequence[Message]) -> list[ToolCall]:
    """The calls made since the latest user message."""
    out: list[ToolCall] = []
    for message in reversed(messages):
        if message.role == "user":
            break
        out.extend(message.tool_calls or ())
    return out


def _kind(request: str, start: int, end: int, value: Any, schema: dict[str, Any]) -> str | None:
    """How the request writes the call's value, so that the next item is read the same way."""
    if schema.get("enum"):
        return "member"
    if isinstance(value, (int, float)):
        return "number"
    if 0 < start and end < len(request) and request[start - 1] in "'\"‘“" and request[end] in "'\"’”":
        return "quoted"
    if value[:1].isupper():
        return "name"
    return None  # a lower-case phrase: where the next item ends is a guess


def _next_item(request: str, end: int, kind: str, schema: dict[str, Any]) -> tuple[str, int] | None:
    """(the list's next item after `end`, where it ends), read as the same kind as the one before."""
    link = _NEXT_ITEM.match(request, end)
    if link is None or (kind == "name" and not _AND_OR.search(link.group())):
        return None  # "Rome, Italy" is a place and its country, "Paris and Rome" a list
    at, rest = link.end(), request[link.end():]
    if kind == "quoted":
        match = _QUOTED.match(rest)
        return (match.group(1), at + match.end()) if match else None
    if kind == "member":
        for member in sorted((m for m in schema["enum"] if isinstance(m, str) and len(m) >= 3), key=len, reverse=True):
            if re.match(rf"{re.escape(member.replace('_', ' '))}(?!\w)", rest.replace("_", " "), re.IGNORECASE):
                return member, at + len(member)
        return None
    if kind == "number":
        match = _LISTED_NUMBER.match(rest)
        return (match.group(), at + match.end()) if match else None
    match = _NAME.match(rest)
    first = match.group().split()[0] if match else ""
    if match is None or first in SENTENCE_OPENERS or re.sub(r"['’]s$", "", first) in SENTENCE_OPENERS:
        return None
    return re.sub(r"['’]s$", "", match.group().rstrip(".'’")), at + match.end()


def complete_lists(calls: Sequence[ToolCall], tools: Sequence[ToolSpec] | None, messages: Sequence[Message],
                   max_calls: int) -> tuple[list[ToolCall], list[str]]:
    """(calls with one call added for each item of a list the request spells out that no call uses,
    one note per added call).

    "Theft cases in 'New York' and from 'San Francisco'", "the time in London and another one in
    Tokyo", "music or theater events": the 0.5B writes the call for the first item and stops. Where
    a call's value (a scalar the schema does not describe as taking several) is written in the
    request and the request goes on to list another item of the same kind after it, the call is
    made again with that item: a name after a name, joined by "and"/"or" ("Rome, Italy" is one
    place), a quoted text after a quoted text, a number after a number, a member of the parameter's
    enum after another. An item some call already uses ("Los Angeles, CA" for "Los Angeles") adds
    nothing. Offline: over BFCL's 2,351 answer sets taken as replies, 5 gain a call (a ticker's
    exchange then the next company's name; "genres Sci-fi and Action" where the answer takes one);
    the recorded replies of sessions 29 and 30 gain 4 right cases each and lose none."""
    request = latest_request(messages, lower=False)
    specs = {t.name: t for t in tools or ()}
    out, notes = list(calls), []
    earlier = _calls_since_request(messages)  # a later step: the items called before count as used
    for call in calls:
        properties = ((specs[call.name].parameters or {}).get("properties") or {}) if call.name in specs else {}
        for name, value in call.arguments.items():
            schema = properties.get(name)
            if (not isinstance(schema, dict) or schema.get("type") not in ("string", "integer", "number")
                    or isinstance(value, bool) or not isinstance(value, (str, int, float))
                    or _TAKES_SEVERAL.search(str(schema.get("description") or ""))):
                continue
            # a number inside a larger one ("10" in "$10,000") is not the call's value
            at = re.search(rf"(?<![\w.,]){re.escape(str(value))}(?!\w|[.,]\d)", request, re.IGNORECASE)
            kind = _kind(request, at.start(), at.end(), value, schema) if at else None
            if kind is None:
                continue
            end = at.end() + (kind == "quoted")
            if kind == "name" and (qualifier := _QUALIFIER.match(request, end)):
                end = qualifier.end()
            while len(out) < max_calls and (item := _next_item(request, end, kind, schema)) is not None:
                text, end = item
                if plain_text(text) == plain_text(value) or _used(text, [*earlier, *out]):
                    continue
                new_value: Any = text
                if kind == "number":
                    new_value = float(text) if schema.get("type") == "number" and "." in text else int(float(text))
                added = ToolCall(name=call.name, arguments={**call.arguments, name: new_value})
                out.insert(max(i for i, c in enumerate(out) if c.name == call.name) + 1, added)
                notes.append(f"added {call.name}({json.dumps(added.arguments)}): the request lists "
                             f"{text!r} after {value!r}")
    return out, notes
