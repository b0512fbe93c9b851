"""One loop for the steps that rewrite a call's argument values in place.

Percentages as fractions, 'City, State', dates in a named format, signed coordinates: each looks at
one top-level argument at a time (its name, value and the parameter's schema) and may give a new
value. This applies such a rule to every call and says what it changed, so the rules stay one
function each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from raygent.schema import ToolCall, ToolSpec

#: (argument name, value, the parameter's schema or None) -> the new value, or None to leave it
Rewrite = Callable[[str, Any, Any], Any]


def rewrite_values(calls: Sequence[ToolCall], tools: Sequence[ToolSpec] | None, rewrite: Rewrite,
                   why: str) -> tuple[list[ToolCall], list[str]]:
    """(calls with the values `rewrite` changes replaced, a note for each: "wrote x=... of 't' as ...: why")."""
    specs = {t.name: t for t in tools or ()}
    out: list[ToolCall] = []
    notes: list[str] = []
    for call in calls:
        properties = ((specs[call.name].parameters or {}).get("properties") or {}) if call.name in specs else {}
        fixed = {name: new for name, value in call.arguments.items()
                 if (new := rewrite(name, value, properties.get(name))) is not None and new != value}
        if fixed:
            notes.extend(f"wrote {name}={call.arguments[name]!r} of {call.name!r} as {new!r}: {why}"
                         for name, new in fixed.items())
            call = call.model_copy(update={"arguments": {**call.arguments, **fixed}})
        out.append(call)
    return out, notes
