"""Drafts for speculative decoding inside a tool call, from the tool schemas and the conversation.

`PromptLookup` guesses what followed the latest earlier match of the reply's tail. Inside a Hermes
call that is often the wrong place: after `{"name": "` it proposes the exemplar's tool, after a
value's opening quote whatever followed the last quote of the prompt. The call's own structure
says more:

- once the first tokens of a name leave one offered tool, the rest of the name follows, then
  `", "arguments": {"`, the first required key and its opening quote (llama.cpp's grammar writes
  required keys first, in the schema's order);
- a value that began like a stretch of the user's message or of a tool result goes on like it,
  to the next punctuation, and is followed by the next required key or by the call's end;
- a closed call is followed by its closing tag; after the tag only the model knows whether
  another call follows, so nothing is guessed there.

Outside calls the prompt lookup drafts as before. A draft is only a guess: the decoder keeps what
the model itself would choose, so the reply is the greedy reply either way and only the number of
decode calls changes (measured in docs/benchmarks.md, session 29).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Sequence
from typing import Any

from raygent.llm_pool.prompt_lookup import PromptLookup
from raygent.schema import ToolSpec

#: how a Hermes call's JSON begins after its opening tag
CALL_OPENING = '\n{"name": "'
#: where a value seen in the conversation probably ends: punctuation the model rarely copies, and
#: the small words that join a request's values ("from Boston to Oslo for 3 people"); a value that
#: goes on past one ("Bank of America") costs one more decode call, not a wrong reply
_VALUE_END = re.compile(r'[?!,;\n"()\[\]{}。，？！；]|\.(?:\s|$)'
                        r'|\s(?:and|or|to|from|for|in|on|at|by|with|of|as|per|into|over|than)\b', re.IGNORECASE)
_NUMBER_CHARS = frozenset("0123456789.")


class _Scan:
    """Where a call's JSON text stops: the open containers, the key being written or the value."""

    def __init__(self, text: str):
        self.stack: list[str] = []  # "{" or "[" for each open container
        self.keys: list[list[str]] = []  # the keys written in each open object
        self.expect_key: list[bool] = []  # per container: the next string is a key (objects only)
        self.in_string = False
        self.string_is_key = False
        self.string = ""  # the open string's text so far
        self.closed = False  # the outermost object was closed
        self.value: str | None = None  # a bare value (number, true...) being written
        escaped = False
        for ch in text:
            if self.in_string:
                if escaped:
                    escaped = False
                    self.string += ch
                elif ch == "\\":
                    escaped = True
                    self.string += ch
                elif ch == '"':
                    self._end_string()
                else:
                    self.string += ch
                continue
            if self.value is not None and not (ch.isalnum() or ch in ".-+"):
                self.value = None
            if ch == '"':
                self.in_string, self.string = True, ""
                self.string_is_key = bool(self.stack) and self.stack[-1] == "{" and self.expect_key[-1]
            elif ch in "{[":
                self.stack.append(ch)
                self.keys.append([])
                self.expect_key.append(ch == "{")
            elif ch in "}]":
                if not self.stack:
                    return
                self.stack.pop()
                self.keys.pop()
                self.expect_key.pop()
                if not self.stack:
                    self.closed = True
            elif ch == ":" and self.stack:
                self.expect_key[-1] = False
            elif ch == "," and self.stack:
                self.expect_key[-1] = self.stack[-1] == "{"
            elif not ch.isspace() and self.stack:
                self.value = (self.value or "") + ch

    def _end_string(self) -> None:
        self.in_string = False
        if self.string_is_key:
            self.keys[-1].append(self.string)

    def last_key(self, level: int) -> str | None:
        """The key written last in the object open at `level` (0: the call object)."""
        return self.keys[level][-1] if self.keys[level] else None


def _ordered_keys(parameters: dict[str, Any]) -> list[str]:
    """The keys in the order llama.cpp's schema grammar admits them: required first, schema order."""
    props = list((parameters or {}).get("properties") or {})
    required = set((parameters or {}).get("required") or ())
    return [k for k in props if k in required] + [k for k in props if k not in required]


def _keys_after(parameters: dict[str, Any], used: list[str]) -> list[str]:
    """The keys the grammar still admits after those written (it keeps its order)."""
    order = _ordered_keys(parameters)
    return order[max((order.index(k) + 1 for k in used if k in order), default=0):]


def _key_text(parameters: dict[str, Any], key: str) -> str:
    """A key as the model writes it after its opening quote: `expression": "` (the value's quote too
    where the value is a string)."""
    return key + '": ' + ('"' if _is_string(parameters, key) else "")


def _as_value(text: str | None) -> tuple[str, bool] | None:
    return (text, True) if text is not None else None


def _is_string(parameters: dict[str, Any], key: str) -> bool:
    prop = ((parameters or {}).get("properties") or {}).get(key) or {}
    return prop.get("type") == "string" or (prop.get("type") is None and isinstance(prop.get("enum"), list)
                                            and all(isinstance(v, str) for v in prop["enum"]))


class CallDrafter:
    """A `PromptLookup` that knows the offered tools: drafts for greedy decoding of Hermes calls.

    `tokenize(text)` gives the model's tokens of a text (special tokens recognised),
    `detokenize(tokens)` their bytes; `sources` are the conversation's texts a value may copy,
    the most recent first (the user's request, then tool results)."""

    def __init__(self, prompt: list[int], tokenize: Callable[[str], list[int]],
                 detokenize: Callable[[list[int]], bytes], tools: Sequence[ToolSpec], sources: Sequence[str], *,
                 open_tag: str = "<tool_call>", close_tag: str = "</tool_call>", max_draft: int = 16,
                 max_value_draft: int = 10):
        self.lookup = PromptLookup(prompt)
        self._tokenize = tokenize
        self._detokenize = detokenize
        self._tools = {t.name: t for t in tools}
        self._sources = [s for s in sources if s]
        self.open_tag, self.close_tag = open_tag, close_tag
        self.max_draft, self.max_value_draft = max_draft, max_value_draft
        self._tokens: list[int] = []
        self._text = ""
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._call_tokens: int | None = None  # index of the current call's first token after the tag
        self._call_chars = 0  # index of the current call's first character after the tag

    def append(self, token: int) -> None:
        """Add a generated token."""
        self.lookup.append(token)
        self._tokens.append(token)
        self._text += self._utf8.decode(self._detokenize([token]))
        if self._call_tokens is None:
            if self._text.endswith(self.open_tag):
                self._call_tokens, self._call_chars = len(self._tokens), len(self._text)
        elif self._text.endswith(self.close_tag):
            self._call_tokens = None

    def draft(self, limit: int | None = None) -> list[int]:
        """The guessed next tokens (possibly none)."""
        cap = self.max_draft if limit is None else min(limit, self.max_draft)
        if self._call_tokens is None:
            if self._text.rstrip().endswith(self.close_tag):
                return []  # another call or the end: the model's choice, no pattern to copy
            return self.lookup.draft(limit)
        body = self._text[self._call_chars:]
        guess = self._continuation(body)
        if guess is None:
            return []
        text, is_value = guess
        if is_value:
            cap = min(cap, self.max_value_draft)
        return self._tokens_of(body, text)[:max(cap, 0)]

    # -- what comes next ------------------------------------------------------------------
    def _continuation(self, body: str) -> tuple[str, bool] | None:
        """(the text that probably follows `body`, whether it copies a value), or None."""
        if CALL_OPENING.startswith(body):
            rest = CALL_OPENING[len(body):]
            named = self._name_rest("")
            return rest + (named or ""), False
        scan = _Scan(body.lstrip())
        if scan.closed:
            return ("" if body.endswith("\n") else "\n") + self.close_tag, False
        if not scan.stack:
            return None
        if len(scan.stack) == 1:  # the call object: {"name": ..., "arguments": ...}
            if scan.in_string and not scan.string_is_key and scan.last_key(0) == "name":
                rest = self._name_rest(scan.string)
                return (rest, False) if rest else None
            if not scan.in_string and scan.last_key(0) == "arguments" and body.rstrip().endswith("}"):
                return "}\n" + self.close_tag, False  # the arguments closed: so does the call
            return None
        name = re.match(r'\s*\{\s*"name"\s*:\s*"([^"]*)"', body)
        tool = self._tools.get(name.group(1)) if name else None
        if tool is None:
            return None
        params = tool.parameters
        if len(scan.stack) == 2:  # the arguments object
            used = scan.keys[1]
            if scan.in_string and scan.string_is_key:
                key = next((k for k in _keys_after(params, used) if k.startswith(scan.string)), None)
                return (_key_text(params, key)[len(scan.string):], False) if key else None
            if scan.in_string:  # a string value of the last key
                return _as_value(self._value_rest(scan.string, strings=True, after=self._after_value(params, used)))
            if scan.value is not None:  # a bare value: a number copied from the conversation
                if not set(scan.value) <= _NUMBER_CHARS | {"-"}:
                    return None
                return _as_value(self._value_rest(scan.value, strings=False,
                                                  after=self._after_value(params, used, quoted=False)))
            if body.rstrip().endswith(","):
                key = self._next_key(params, used)
                return (' "' + _key_text(params, key), False) if key else None
            return None
        if scan.in_string and not scan.string_is_key:  # a string inside a list or an inner object
            return _as_value(self._value_rest(scan.string, strings=True, after=""))
        return None

    def _name_rest(self, partial: str) -> str | None:
        """The rest of the one tool name that begins with `partial`, then its arguments' opening."""
        names = [n for n in self._tools if n.startswith(partial)]
        if len(names) != 1:
            common = _common_prefix(names)[len(partial):] if names else ""
            return common or None
        tool = self._tools[names[0]]
        return names[0][len(partial):] + '", "arguments":' + self._first_argument(tool.parameters)

    def _first_argument(self, params: dict[str, Any]) -> str:
        """The arguments' first key, where one is required; with none required, whether the model
        writes `{}` or an optional key is not guessed (an empty object where nothing is offered)."""
        if not _ordered_keys(params):
            return " {}}\n" + self.close_tag
        if not (params or {}).get("required"):
            return ""
        return ' {"' + _key_text(params, _ordered_keys(params)[0])

    @staticmethod
    def _next_key(params: dict[str, Any], used: list[str]) -> str | None:
        """The key the grammar most likely admits next: the next one in its order, unless it is optional
        and some key was written already (then the call probably ends)."""
        left = _keys_after(params, used)
        if not left:
            return None
        required = set((params or {}).get("required") or ())
        return left[0] if left[0] in required or not used else None

    def _after_value(self, params: dict[str, Any], used: list[str], quoted: bool = True) -> str:
        """What follows the value of the last key written: its closing quote, then the next required key
        or the end of the call."""
        key = self._next_key(params, used)
        end = ('"' if quoted else "")
        if key is not None:
            return end + ', "' + _key_text(params, key)
        return end + "}}\n" + self.close_tag

    def _value_rest(self, value: str, *, strings: bool, after: str) -> str | None:
        """How a value that began as `value` goes on where the conversation holds it, and what follows."""
        if not value:
            return None
        for source in self._sources:
            tail = _tail_after(source, value)
            if tail is None:
                continue
            if strings:
                end = _VALUE_END.search(tail)
                rest = tail[:end.start()] if end else tail
                rest = rest.rstrip()
            else:
                n = 0
                while n < len(tail) and tail[n] in _NUMBER_CHARS:
                    n += 1
                rest = tail[:n].rstrip(".")
            return rest + after
        return None

    def _tokens_of(self, body: str, text: str) -> list[int]:
        """The tokens of `text` as the model would write them after the call's tokens so far: the
        tokens of the whole call text past those already generated, where they agree, else `text`'s own."""
        if not text:
            return []
        done = self._tokens[self._call_tokens:]
        whole = self._tokenize(body + text)
        if whole[:len(done)] == done:
            return whole[len(done):]
        return self._tokenize(text)


def _common_prefix(names: list[str]) -> str:
    if not names:
        return ""
    first, last = min(names), max(names)
    n = 0
    while n < len(first) and first[n] == last[n]:
        n += 1
    return first[:n]


def _tail_after(source: str, value: str) -> str | None:
    """What follows `value` in `source`, or None. Where it is not there verbatim, white space is
    ignored on both sides ("1234*" in "1234 * 5678" goes on with "5678"), and so is the tail's."""
    at = _word_start_find(source, value)
    if at >= 0:
        return source[at + len(value):]
    compact = "".join(value.split())
    if not compact:
        return None
    squeezed = "".join(source.split())
    at = squeezed.find(compact)
    return squeezed[at + len(compact):] if at >= 0 else None


def _word_start_find(text: str, value: str) -> int:
    """The first place `text` holds `value` at a word's start (else anywhere; -1 if nowhere)."""
    at = text.find(value)
    first = at
    while at > 0 and text[at - 1].isalnum() and value[:1].isalnum():
        at = text.find(value, at + 1)
    return at if at >= 0 else first
