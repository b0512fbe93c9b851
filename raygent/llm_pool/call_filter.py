"""Which of a small model's several calls in one reply to keep.

Allowed more than one call per reply, a 0.5B model fills the extra slots with repeats of its first
call, or with calls copied from the prompt's exemplars. Both are easy to tell from real parallel
calls ("the weather in Boston and in Paris"): a real extra call differs from the calls before it in
values the user actually wrote, or combines values already used in a new way. So the first call is
always kept; exact repeats are dropped; a further call of a tool already called is kept where one of
its values new to that tool's calls is grounded in the conversation's user messages or tool
results, or where it has no new value (a new combination).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from raygent.schema import Message, ToolCall

_WORD = re.compile(r"[^\W_]{3,}", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
#: words too common to ground a value by themselves
_COMMON = frozenset("the and for with from into that this what which when where who how are was were per "
                    "not all any can get set use new one two".split())


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _number_forms(value: float) -> set[str]:
    forms = {repr(value), str(value)}
    if float(value).is_integer():
        forms.add(str(int(value)))
        if abs(value) >= 1000:
            forms.add(f"{int(value):,}")
    else:
        forms.add(f"{value:g}")
        if 0 < abs(value) < 1:  # 0.05 written as 5%
            forms.add(f"{value * 100:g}%")
    return forms


def grounded(value: Any, text: str) -> bool:
    """Whether a leaf argument value appears in `text` (lower-cased conversation text): a number in
    any usual form, a string whole, by one of its words, by a two-character piece of CJK text, or by
    a number inside it ("3.5*4-2" for "3.5 乘以 4 再减去 2")."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float)):
        return any(re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", text) for f in _number_forms(value))
    s = str(value).strip().lower()
    if not s:
        return False
    if s in text:
        return True
    if _CJK.search(s):  # no spaces to split on: any two-character piece of it
        return any(s[i:i + 2] in text for i in range(len(s) - 1))
    words = [w for w in _WORD.findall(s) if w not in _COMMON]
    if any(re.search(rf"\b{re.escape(w)}", text) for w in words):
        return True
    return any(grounded(float(n), text) for n in _NUMBER.findall(s))


def conversation_text(messages: Sequence[Message], roles: tuple[str, ...] = ("user", "tool")) -> str:
    """What the user wrote and the tools returned (and the other `roles` said), lower-cased: where a
    call's values may come from."""
    return "\n".join((m.content or "") for m in messages if m.role in roles).lower()


def keep_grounded_calls(calls: Sequence[ToolCall], messages: Sequence[Message]) -> tuple[list[ToolCall], list[str]]:
    """(calls kept, one reason per call dropped)."""
    if len(calls) <= 1:
        return list(calls), []
    text = conversation_text(messages)
    kept: list[ToolCall] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for call in calls:
        key = call.name + json.dumps(call.arguments, sort_keys=True, default=str)
        if key in seen:
            dropped.append(f"dropped a repeat of the call to {call.name!r}")
            continue
        if kept and call.arguments:
            # another call of a tool already called must bring a value of its own; a call of a new
            # tool may share its values with the others ("the weather and the time in Boston")
            same_tool = [c for c in kept if c.name == call.name]
            earlier = {json.dumps(v, sort_keys=True, default=str) for c in same_tool for v in _leaves(c.arguments)}
            new = [v for v in _leaves(call.arguments) if json.dumps(v, sort_keys=True, default=str) not in earlier]
            # no new value at all: a new combination of values already used ("Lakers 2020" after
            # "Lakers 2018" and "Bulls 2020"), kept; otherwise one new value must come from the text
            if new and not any(grounded(v, text) for v in new):
                dropped.append(f"dropped an extra call to {call.name!r}: none of its new values "
                               f"({', '.join(json.dumps(v, default=str)[:40] for v in new[:4]) or 'none'}) "
                               "appear in the conversation")
                continue
        seen.add(key)
        kept.append(call)
    return kept, dropped


def _schema_constants(schema: Any) -> set[str]:
    """Every enum value and default in a JSON schema, as JSON: values a call may rightly carry
    without the user having written them."""
    out: set[str] = set()
    if isinstance(schema, dict):
        for value in schema.get("enum") or ():
            out.add(json.dumps(value, sort_keys=True, default=str))
        if "default" in schema:
            out.add(json.dumps(schema["default"], sort_keys=True, default=str))
        if "const" in schema:
            out.add(json.dumps(schema["const"], sort_keys=True, default=str))
        for sub in schema.values():
            out |= _schema_constants(sub)
    elif isinstance(schema, list):
        for sub in schema:
            out |= _schema_constants(sub)
    return out


def invented_call(call: ToolCall, parameters: dict[str, Any] | None, messages: Sequence[Message]) -> bool:
    """Whether a call's values are mostly made up: it has values the user might have given (not
    booleans, not the schema's enum members or defaults), and fewer than half of them appear in what
    the user wrote, a tool returned or the assistant answered.

    Why: where no offered tool fits the request ("What's the capital of France?" with only
    `calculate_bmi` offered), a small model that opens a call anyway has nothing to fill the
    arguments with and invents them (`{"weight": 70, "height": 175}`); where a tool fits, its
    values come from the request. A request that leaves most values out ("book me a one-way
    flight") is better answered (with a question) than acted on with invented ones. A call without
    such values (`current_datetime()`) is never called invented. On the first 50 of seed 0 of five
    BFCL categories (docs/evaluation.md) "fewer than half" and "none" cost the same 2 of 150 right
    calls (currency codes written as names, a full house's deck size) and "fewer than half" turned 4
    more of 100 made-up calls into answers."""
    constants = _schema_constants(parameters or {})
    values = [v for v in _leaves(call.arguments) if not isinstance(v, bool) and v is not None
              and str(v).strip() and json.dumps(v, sort_keys=True, default=str) not in constants]
    if not values:
        return False
    # earlier answers count too: "add 5 to that" may use a number the model said a turn ago
    text = conversation_text(messages, ("user", "tool", "assistant"))
    return 2 * sum(grounded(v, text) for v in values) < len(values)
