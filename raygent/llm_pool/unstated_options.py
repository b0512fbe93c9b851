"""Optional text arguments the model made up.

A 0.5B model fills optional string parameters with plausible inventions: `title="The Great Gatsby"`
for "historical fiction books in New York", `mission="Level 1"` for "the rewards of Fortnite on
PlayStation", `category="Physics"` for "Einstein's contribution on March 17, 1915", or the literal
text "null". Each narrows what the tool returns to something the user never asked for. An optional
argument is left out (the tool's default applies) where its value is a text of three characters or
more that appears nowhere in the conversation: not in what the user or system wrote, a tool returned
or the assistant said, not even by a word's first four letters ("transit" for "public
transportation") or a number in it ("24h" for "24 hour format"). Enum members and schema defaults
stay, as do dates and times (the model rewrites "March 12th" as "2023-03-12"), required arguments,
numbers and flags.

A list of texts keeps only the items stated somewhere, where at least one is: whole or by every
word of it, or, for a member of the items' enum, by one of its words ("working hours" states
`opening_hours`). "The nearest public library in Boston with English fiction section and free
Wi-Fi" gave `facilities=["Wi-Fi", "Reading Room", "Fiction", "Children Section", "Cafe"]`, every
member of the enum; "Reading Room" and "Cafe" go ("Children Section" stays, by "section"). Of
BFCL's 252 answer lists of texts, two would lose an item: `columns=["email", "ssn"]` for "email and
social security number", `categories=["vegan", ...]` for "vegetarian".

Offline, taking BFCL's answer calls (9,711 values) as the model's calls, 3 values the answers need
would be left out ("women" for "woman tennis", "intermediate" for "beginners ... nothing too
complex") and 55 that the answers allow to leave out; over the recorded replies of session 29, three
cases went from wrong to right and none from right to wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from raygent.llm_pool.call_filter import _COMMON, _WORD, _key, _schema_constants, conversation_text, grounded
from raygent.schema import Message, ToolCall, ToolSpec

_DATE_OR_TIME = re.compile(r"\d{1,4}[-/:.]\d{1,2}")
_DIGITS = re.compile(r"\d+(?:\.\d+)?")


class _Conversation:
    """The conversation's lower-cased text and the first four letters of each of its words, read once
    for all the values of a reply."""

    def __init__(self, text: str):
        self.text = text
        self.stems = _stems(text, keep_common=True)


def _stems(text: str, keep_common: bool = False) -> set[str]:
    return {w[:4] for w in _WORD.findall(text.lower()) if keep_common or w not in _COMMON}


def stated_somewhere(value: str, text: str | _Conversation) -> bool:
    """Whether a text value could come from the (lower-cased) conversation: found as `grounded`
    finds it, by a word's first four letters, or by a number in it."""
    said = text if isinstance(text, _Conversation) else _Conversation(text)
    if grounded(value, said.text) or _stems(value) & said.stems:
        return True
    return any(re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", said.text) for n in _DIGITS.findall(value))


def _made_up(value: Any, prop: Any, said: _Conversation) -> bool:
    return (isinstance(value, str) and len(value.strip()) >= 3 and not _DATE_OR_TIME.search(value)
            and isinstance(prop, dict) and _key(value) not in _schema_constants(prop)
            and not stated_somewhere(value, said))


def _stated_items(value: Any, prop: Any, said: _Conversation) -> list[str] | None:
    """The stated items of a list of texts some of whose items are made up; None to leave it."""
    if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value) and isinstance(prop, dict)):
        return None
    # an enum member by any of its words ("working hours" for `opening_hours`), other texts by all
    members = _schema_constants(prop)
    stated = [v for v in value if _item_stated(v, said, any_word=_key(v) in members)]
    return stated if stated and len(stated) < len(value) else None


def _item_stated(item: str, said: _Conversation, any_word: bool = False) -> bool:
    """An item of a list is stated where the text holds it whole or every word of it (`any_word`: one
    word of it), each by its first four letters: "Fiction" is, "Reading Room" is not, for "...
    with English fiction section"."""
    if item.strip().lower() in said.text:
        return True
    stems = _stems(item)
    found = stems & said.stems
    return bool(found) if any_word else bool(stems) and found == stems


def drop_unstated_options(calls: Sequence[ToolCall], tools: Sequence[ToolSpec] | None,
                          messages: Sequence[Message]) -> tuple[list[ToolCall], list[str]]:
    """(calls without their made-up optional text arguments and list items, a note for each)."""
    specs = {t.name: t for t in tools or ()}
    said = _Conversation(conversation_text(messages, ("system", "user", "tool", "assistant")))
    out: list[ToolCall] = []
    notes: list[str] = []
    for call in calls:
        schema = (specs[call.name].parameters or {}) if call.name in specs else {}
        required = set(schema.get("required") or ())
        properties = schema.get("properties") or {}
        dropped = [name for name, value in call.arguments.items()
                   if name not in required and _made_up(value, properties.get(name), said)]
        arguments = {k: v for k, v in call.arguments.items() if k not in dropped}
        notes.extend(f"left {name}={call.arguments[name]!r} out of the call to {call.name!r}: an optional "
                     "value found nowhere in the conversation" for name in dropped)
        for name, value in arguments.items():
            items = _stated_items(value, properties.get(name), said)
            if items is not None:
                notes.append(f"kept {items!r} of {name}={value!r} in the call to {call.name!r}: the other items "
                             "appear nowhere in the conversation")
                arguments[name] = items
        if arguments != call.arguments:
            call = call.model_copy(update={"arguments": arguments})
        out.append(call)
    return out, notes
