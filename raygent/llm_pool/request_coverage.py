"""The parts of a request that no call of a reply answers.

A request with several tasks ("First, the top 5 defence teams of 2018. Second, sort [23, 45, 12]
in descending order. Lastly, the CAGR of $5000 that grew to $15000 in 7 years") gets one or two
calls from the 0.5B, which then closes its reply: 22 of the 76 parallel cases of session 30 made
fewer calls than asked, 7 of them leaving a whole task out. What a part asks for is told by what
it names: quoted texts, names (capitalised words not opening a sentence), numbers, and the words of
an offered tool's name ("sorted" for `array_sort`). A part is answered where a call uses one of
its items, or names a called tool and no tool left uncalled. A part is left out where nothing of
it is used and it names an uncalled tool or holds two items or more; only where another part of
the request is answered (a one-part request the reply got wrong is not "partly answered").

Over session 30's recorded BFCL replies: 7 of the 22 replies with too few calls have such a part,
1 of the 156 right replies does (a music search whose "I really like their music" names
`Music_3_PlayMedia`; the call asked for there must still bring the part's own item or tool).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raygent.llm_pool.call_filter import _leaves, _numbers_in, named_in, naming_stems
from raygent.llm_pool.parallel_calls import SENTENCE_OPENERS, plain_text
from raygent.llm_pool.stated_options import latest_request
from raygent.schema import Message, ToolCall, ToolSpec

#: where one task of a request ends: a sentence, a ";", a line, "then", "Also", "Second", "Lastly"
_TASK_BREAK = re.compile(r"(?<=[.?!])\s+|;\s*|\n+|,?\s+(?:and\s+)?then\s+|\b(?:Also|Additionally|After that|Lastly|"
                         r"Finally|Second(?:ly)?|Third(?:ly)?|Furthermore|Moreover)\b,?\s*", re.IGNORECASE)
_QUOTED = re.compile(r"(?<!\w)['\"‘“]([^'\"’”\n]{2,60})['\"’”](?!\w)")
_NAME = re.compile(r"(?<![\w'])([A-Z][\w.&'-]*(?:\s+(?:of\s+|de\s+|del\s+)?[A-Z][\w.&'-]*)*)")
_NUMBER = re.compile(r"(?<![\w.])\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?")
_SENTENCE_START = re.compile(r"(?:^|[.!?\n]\s*|[:;]\s+|\"\s*)$")


@dataclass(frozen=True)
class LeftPart:
    """A part of the request no call answers: its text, the items it names, the uncalled tools it names."""

    text: str
    items: tuple[str, ...]
    tools: tuple[str, ...]


def _items(part: str) -> list[tuple[str, str]]:
    """(kind, text) of what a part of a request names: quoted texts, names, numbers."""
    out = [("text", m.group(1)) for m in _QUOTED.finditer(part)]
    for m in _NAME.finditer(part):
        words = m.group(1).split()
        if words[0] in SENTENCE_OPENERS or words[0].removesuffix("'s") in SENTENCE_OPENERS:
            words = words[1:]
        elif _SENTENCE_START.search(part[:m.start()]) and len(words) == 1:
            continue  # one capitalised word opening a sentence
        if words:
            out.append(("text", " ".join(words)))
    out += [("number", m.group()) for m in _NUMBER.finditer(part)]
    return out


def _used(kind: str, item: str, calls: Sequence[ToolCall]) -> bool:
    leaves = [v for c in calls for v in _leaves(c.arguments) if not isinstance(v, bool) and v is not None]
    if kind == "number":
        numbers = {float(v) for v in leaves if isinstance(v, (int, float))}
        numbers.update(n for v in leaves if isinstance(v, str) for n in _numbers_in(v))
        x = float(item.strip("$%").replace(",", ""))
        # "3.5%" is used as 3.5 or as 0.035
        return any(abs(x - n) < 1e-9 or abs(x / 100 - n) < 1e-9 for n in numbers)
    text = " ".join(plain_text(v) for v in leaves)
    item = plain_text(item)
    words = [w for w in item.split() if len(w) >= 3]
    return not item or item in text or (bool(words) and all(w in text for w in words))


def left_parts(messages: Sequence[Message], calls: Sequence[ToolCall],
               tools: Sequence[ToolSpec] | None) -> list[LeftPart]:
    """The parts of the latest request no call answers, where another part is answered."""
    request = latest_request(messages, lower=False)
    called = {c.name for c in calls}
    left, answered = [], 0
    for part in (p.strip() for p in _TASK_BREAK.split(request) if p and p.strip()):
        items = _items(part)
        lower = part.lower()
        # a word that names a called tool too ("pricing" for `hotel_room_pricing.get` and
        # `car_rental_pricing.get`) says nothing about the uncalled one
        called_stems = {s for name in called for s in naming_stems(name, lower)}
        named = [t.name for t in tools or () if t.name not in called and named_in(t.name, lower)]
        uncalled = tuple(name for name in named if naming_stems(name, lower) - called_stems)
        if any(_used(kind, item, calls) for kind, item in items) or (
                not named and any(named_in(name, lower) for name in called)):
            answered += 1
        elif uncalled or len(items) >= 2:
            left.append(LeftPart(part, tuple(item for _, item in items), uncalled))
    return left if answered else []


def answers_a_left_part(call: ToolCall, left: Sequence[LeftPart]) -> bool:
    """Whether a further call answers a left part: it calls a tool the part names, or uses one of
    its items."""
    for part in left:
        if call.name in part.tools:
            return True
        if any(_used("number" if re.fullmatch(_NUMBER.pattern, item) else "text", item, [call])
               for item in part.items):
            return True
    return False


def anticipates_a_result(call: ToolCall, earlier: Sequence[ToolCall], messages: Sequence[Message]) -> bool:
    """Whether a further call takes a piece of an earlier call's text that the request writes only
    inside it: "Parse the address 浙江杭州市江干区九堡镇三村村一区, then read the district name aloud" gets
    `text_to_speech("三村村一区")` beside `address_parse(...)`, a guess at what the parse returns.
    The earlier call's whole value ("the Louvre Museum" for the travel time to "the museum") is no
    such piece."""
    request = latest_request(messages, lower=False)
    pieces = [v for v in _leaves(call.arguments) if isinstance(v, str) and v.strip()]
    wholes = [v for c in earlier for v in _leaves(c.arguments) if isinstance(v, str)]
    return any(piece != whole and piece in whole and request.count(piece) <= request.count(whole)
               for piece in pieces for whole in wholes)
