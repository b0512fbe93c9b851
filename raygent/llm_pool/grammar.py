"""llama.cpp grammars (GBNF) that force tool calls to be well-formed for the offered tools.

A call must name an offered tool and carry arguments matching that tool's JSON schema; with
tool_choice "auto" the model may instead answer in plain text, which must not begin like a call
(`{`, a code fence, a tag, white space or `_`), so a half-hearted call cannot escape the grammar.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from raygent.schema import ToolSpec


class GrammarError(ValueError):
    """The tools' schemas cannot be turned into a grammar."""


def _call_schema(tools: Sequence[ToolSpec]) -> dict:
    alternatives = []
    for spec in tools:
        params = dict(spec.parameters) or {"type": "object", "properties": {}}
        alternatives.append({
            "type": "object",
            "properties": {"name": {"const": spec.name}, "arguments": params},
            "required": ["name", "arguments"],
        })
    return alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}


#: an answer may not start like a call, nor with "_": the `multistep` adapter writes `_Pods` (an
#: under-trained token) where it means `<tool_call>`, then the call's JSON as text
_ANSWER_RULE = "answer ::= [^{`<( \\t\\n_] [^\\x00]*\n"


def answer_grammar() -> str:
    """GBNF for a plain answer that does not begin like a call (no `{`, `<`, backtick, `(` or `_`)."""
    return "root ::= answer\n" + _ANSWER_RULE


def tool_call_grammar(tools: Sequence[ToolSpec], tool_choice: str = "auto", *, open_tag: str = "<tool_call>\n",
                      close_tag: str = "\n</tool_call>", max_calls: int = 3) -> str | None:
    """GBNF for Hermes-style calls; None without tools. tool_choice "none" allows only an answer."""
    if not tools:
        return None
    answer = _ANSWER_RULE
    if tool_choice == "none":
        return answer_grammar()
    if tool_choice not in ("auto", "required"):
        named = [t for t in tools if t.name == tool_choice]
        if not named:
            raise GrammarError(f"tool_choice names {tool_choice!r}, which is not among the offered tools "
                               f"({', '.join(t.name for t in tools)})")
        tools, max_calls = named, 1
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        body = json_schema_to_gbnf(json.dumps(_call_schema(tools)))
    except Exception as exc:  # the converter rejects some schema features
        raise GrammarError(f"cannot build a grammar from the tool schemas: {exc}") from exc
    body = body.replace("root ::=", "call-body ::=", 1)
    more = ' ("\\n" call)?' * max(0, max_calls - 1)
    calls = f"calls ::= call{more}\n"
    call = f"call ::= {json.dumps(open_tag)} call-body {json.dumps(close_tag)}\n"
    if tool_choice == "auto":
        root = "root ::= calls | answer\n" + answer
    else:
        root = "root ::= calls\n"
    return root + calls + call + body
