"""Text replies that spell out a call instead of making it.

Where a tool fits, the 0.5B model sometimes answers in prose or code that names the tool's own
parameters: "The customer query 'Need ATM location' should be classified under the
'atm_finder_start' intent" (a parameter of `record`), a Python snippet passing `"fabricName":
"Network1"`, "you can call `legal_case.fetch` ... it requires the `case_id`". The user wanted the
call. A reply that writes one of an offered tool's parameter names that reads as code (an
identifier of five characters or more with an underscore or an inner capital: `case_id`,
`fabricName`; not `location`) names that tool; the model is then asked once more for one call
(`LlamaCppChatModel(call_described=True)`), kept unless its values are made up.

Over the recorded BFCL replies of session 29, such names appear in 5 of the text replies where a
call was wanted (live_simple, multiple) and in none of the 80 right text replies of the irrelevance
categories, where a tool's name appears three times (so tool names alone do not count).

A request can name the tool too: "Who supplies the product in order A-1042?" holds a key shaped
like the example of `lookup_order`'s parameter ("the order number, e.g. Z-9001": letters, then
digits), and the 0.5B answered it with a made-up supplier. A text reply to a request holding such
a key (`keyed_tools`) is asked again the same way. Over BFCL's 1,124 irrelevance requests, none
holds a key of an offered parameter's example shape.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from raygent.schema import ToolSpec

_CODE_LIKE = re.compile(r"^(?=.{5,}$)[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+|[a-z0-9][A-Z][A-Za-z0-9]*)+$")


def code_like(name: str) -> bool:
    """An identifier nobody writes in prose: `case_id`, `fabricName`, `atm_finder_start`."""
    return bool(_CODE_LIKE.match(name))


def described_tools(text: str, tools: Sequence[ToolSpec] | None) -> list[ToolSpec]:
    """The offered tools one of whose code-like parameter names the text writes as a whole word."""
    if not text or not tools:
        return []
    found = []
    for tool in tools:
        names = ((tool.parameters or {}).get("properties") or {}).keys()
        if any(code_like(n) and re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", text) for n in names):
            found.append(tool)
    return found


#: an example key in a parameter's description: "e.g. Z-9001", "for example TRK-00001"
_EXAMPLE_KEY = re.compile(r"(?:e\.g\.,?|for example,?|such as)\s+['\"`]?([A-Za-z]{1,5}[-_]?\d{2,})(?![\w-])",
                          re.IGNORECASE)
_KEY = re.compile(r"(?<![\w-])[A-Za-z]{1,5}[-_]?\d{2,}(?![\w-])")


def _key_shape(key: str) -> str:
    """"Z-9001" -> "A-dddd": letters and digits by kind, separators kept (letter case kept apart)."""
    return re.sub(r"\d", "d", re.sub(r"[A-Z]", "A", re.sub(r"[a-z]", "a", key)))


def keyed_tools(request: str, tools: Sequence[ToolSpec] | None) -> list[ToolSpec]:
    """The offered tools with a parameter whose description's example key has the shape of a key
    the request writes (A-1042 for "e.g. Z-9001"), the example itself not counted."""
    keys = {_key_shape(k) for k in _KEY.findall(request or "")}
    if not keys or not tools:
        return []
    found = []
    for tool in tools:
        for schema in ((tool.parameters or {}).get("properties") or {}).values():
            example = _EXAMPLE_KEY.search(str(schema.get("description") or "")) if isinstance(schema, dict) else None
            if example and _key_shape(example.group(1)) in keys and example.group(1) not in request:
                found.append(tool)
                break
    return found
