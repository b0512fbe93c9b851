"""Optional arguments the user stated but a small model left out of its call.

The 0.5B writes the required arguments and mostly stops there, even where the request spells out an
option: "the temperature in Celsius" gives `get_weather(location=...)` without `unit="celsius"`,
"with the timelines aligned" gives `star_history(repos=...)` without `aligned=true`. On BFCL this
was the commonest fault of otherwise right calls (7 of the 14 wrong `parallel` cases of session 26).
So, after the model has chosen its calls, an optional parameter the call leaves out is filled where
the user's request names its value unambiguously:

- a string enum parameter, when exactly one of its members (three characters or more) appears in
  the request as a whole word ("celsius", "female", "ongoing");
- a boolean parameter, set to true, when every telling word of its name appears in the request
  (matched on five letters: "detailed" for `detail`, "aligned" for `aligned`, "tolls" for
  `avoid_tolls`), and no "no", "not", "without", "don't" or "exclude" comes just before.

Only the latest user message counts: the current request, not earlier turns or tool results.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from raygent.llm_pool.call_filter import identifier_words
from raygent.schema import Message, ToolCall, ToolSpec

#: name words that say nothing about what a flag turns on
_FLAG_FILLER = frozenset("include includes with show get calculate use enable enabled flag should return want "
                         "need data info".split())
_NEGATION = re.compile(r"\b(?:no|not|without|don't|dont|do not|exclude|excluding|never|skip)\W+(?:\w+\W+){0,2}$")
_TOKEN = re.compile(r"\w+", re.UNICODE)


def latest_request(messages: Sequence[Message]) -> str:
    """The last user message, lower-cased ("" without one)."""
    return next(((m.content or "").lower() for m in reversed(messages) if m.role == "user"), "")


def _stated_flag(name: str, request: str) -> bool:
    words = [w for w in identifier_words(name) if len(w) >= 4 and w not in _FLAG_FILLER]
    if not words:
        return False
    for word in words:
        match = next((m for m in _TOKEN.finditer(request) if m.group().startswith(word[:5])), None)
        if match is None or _NEGATION.search(request[: match.start()]):
            return False
    return True


def _stated_member(enum: Sequence[Any], request: str) -> str | None:
    hits = [e for e in enum if isinstance(e, str) and len(e) >= 3
            and re.search(rf"(?<!\w){re.escape(e.lower())}(?!\w)", request)]
    return hits[0] if len(hits) == 1 else None


def fill_stated_options(calls: Sequence[ToolCall], tools: Sequence[ToolSpec] | None,
                        messages: Sequence[Message]) -> tuple[list[ToolCall], list[str]]:
    """(calls with stated options filled, one note per argument added)."""
    request = latest_request(messages)
    specs = {t.name: t for t in tools or ()}
    if not request or not specs:
        return list(calls), []
    out: list[ToolCall] = []
    notes: list[str] = []
    for call in calls:
        schema = (specs[call.name].parameters or {}) if call.name in specs else {}
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        added: dict[str, Any] = {}
        for name, prop in properties.items():
            if name in call.arguments or name in required or not isinstance(prop, dict):
                continue
            if prop.get("enum") and prop.get("type", "string") == "string":
                member = _stated_member(prop["enum"], request)
                if member is not None:
                    added[name] = member
            elif prop.get("type") == "boolean" and _stated_flag(name, request):
                added[name] = True
        if added:
            notes.extend(f"added {name}={value!r} to the call to {call.name!r}: the request states it"
                         for name, value in added.items())
            call = call.model_copy(update={"arguments": {**call.arguments, **added}})
        out.append(call)
    return out, notes
