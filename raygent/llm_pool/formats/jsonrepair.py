"""Lenient JSON reading for model output.

Small models write *almost* JSON: code fences, single quotes, trailing commas, Python literals,
unquoted keys, comments, smart quotes, full-width punctuation, chatter around the object. Rather
than chaining regex rewrites (which corrupt string contents), this module runs a small tolerant
recursive-descent parser that only bends the rules *outside* string literals. Truncated input is
never "completed": a cut-off call is reported, not guessed.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

__all__ = ["JSONRepairError", "loads_lenient", "find_json_objects", "strip_code_fence"]


class JSONRepairError(ValueError):
    """The text holds no JSON value that can be repaired (truncated, garbage, no object)."""


_MAX_DEPTH = 100
_OPEN_OBJ = "{\uff5b"  # { and full-width ｛
_CLOSE_OBJ = "}\uff5d"
_OPEN_ARR = "[\uff3b"  # [ and full-width ［
_CLOSE_ARR = "]\uff3d"
_COLON = ":\uff1a"  # : and full-width ：
_COMMA = ",\uff0c\u3001"  # , and full-width ， and ideographic 、
#: opening quote -> accepted closing quotes
_QUOTES: dict[str, str] = {'"': '"', "'": "'", "\u201c": "\u201d\"", "\u2018": "\u2019'", "\u201d": "\u201d\""}
#: what may follow a closing quote; any other character means the quote is part of the string
_AFTER_STRING = set(_COLON + _COMMA + _CLOSE_OBJ + _CLOSE_ARR + "\"'/#\u201c\u201d")
_SPACE = " \t\r\n\u3000\ufeff\u00a0"
_LITERALS: dict[str, Any] = {
    "true": True, "false": False, "null": None, "True": True, "False": False, "None": None,
    "NaN": float("nan"), "Infinity": float("inf"), "undefined": None,
}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_$\u4e00-\u9fff][\w$\-\u4e00-\u9fff]*")
_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n?(.*?)(?:```|\Z)", re.S)
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _closes_at(s: str, j: int) -> bool:
    """A quote closes a string only if JSON punctuation (or the end) follows: "it's" stays whole."""
    n = len(s)
    while j < n and s[j] in _SPACE:
        j += 1
    return j >= n or s[j] in _AFTER_STRING


class _Parser:
    """Tolerant JSON parser; bends rules only between tokens, never inside strings."""

    def __init__(self, s: str) -> None:
        self.s = s
        self.i = 0
        self.n = len(s)

    def fail(self, what: str) -> JSONRepairError:
        if self.i >= self.n:
            return JSONRepairError(f"truncated JSON: the text ended while reading {what}")
        snippet = self.s[self.i : self.i + 20]
        return JSONRepairError(f"invalid JSON at char {self.i} while reading {what}: {snippet!r}")

    def ws(self) -> None:
        s, n = self.s, self.n
        while self.i < n:
            c = s[self.i]
            if c in _SPACE:
                self.i += 1
            elif s.startswith("//", self.i) or c == "#":
                end = s.find("\n", self.i)
                self.i = n if end < 0 else end + 1
            elif s.startswith("/*", self.i):
                end = s.find("*/", self.i + 2)
                self.i = n if end < 0 else end + 2
            else:
                return

    def peek(self) -> str:
        return self.s[self.i] if self.i < self.n else ""

    def value(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise JSONRepairError("JSON nested too deeply")
        self.ws()
        c = self.peek()
        if not c:
            raise self.fail("a value")
        if c in _OPEN_OBJ:
            return self.obj(depth)
        if c in _OPEN_ARR:
            return self.arr(depth)
        if c in _QUOTES:
            return self.string()
        m = _NUMBER.match(self.s, self.i)
        if m:
            self.i = m.end()
            text = m.group().lstrip("+")
            try:
                return int(text) if re.fullmatch(r"-?\d+", text) else float(text)
            except ValueError:  # e.g. "." alone
                raise self.fail("a number") from None
        m = _IDENT.match(self.s, self.i)
        if m and m.group() in _LITERALS:
            self.i = m.end()
            return _LITERALS[m.group()]
        if m and m.end() == self.n and any(lit.startswith(m.group()) for lit in _LITERALS):
            self.i = self.n  # "tru" at the very end: cut off, not wrong
        raise self.fail("a value")

    def key(self) -> str:
        self.ws()
        c = self.peek()
        if c in _QUOTES:
            return self.string()
        m = _IDENT.match(self.s, self.i) or _NUMBER.match(self.s, self.i)
        if not m:
            raise self.fail("an object key")
        self.i = m.end()
        return m.group()

    def obj(self, depth: int) -> dict[str, Any]:
        self.i += 1
        out: dict[str, Any] = {}
        while True:
            self.ws()
            c = self.peek()
            if c in _CLOSE_OBJ and c:
                self.i += 1
                return out
            if c in _COMMA and c:  # stray/double comma
                self.i += 1
                continue
            if not c:
                raise self.fail("an object")
            k = self.key()
            self.ws()
            if self.peek() not in _COLON or not self.peek():
                raise self.fail(f"the ':' after key {k!r}")
            self.i += 1
            out[k] = self.value(depth + 1)
            self.ws()
            c = self.peek()
            if c and c in _COMMA:
                self.i += 1
            elif c and c in _CLOSE_OBJ:
                continue
            elif c and (c in _QUOTES or _IDENT.match(c)):
                continue  # missing comma between members
            else:
                raise self.fail("an object")

    def arr(self, depth: int) -> list[Any]:
        self.i += 1
        out: list[Any] = []
        while True:
            self.ws()
            c = self.peek()
            if c and c in _CLOSE_ARR:
                self.i += 1
                return out
            if c and c in _COMMA:
                self.i += 1
                continue
            if not c:
                raise self.fail("an array")
            out.append(self.value(depth + 1))
            self.ws()
            c = self.peek()
            if c and c in _COMMA:
                self.i += 1
            elif c and (c in _CLOSE_ARR or c in _QUOTES or c in _OPEN_OBJ or c in _OPEN_ARR):
                continue  # closing, or a missing comma before the next element
            else:
                raise self.fail("an array")

    def string(self) -> str:
        s, n = self.s, self.n
        closers = _QUOTES[s[self.i]]
        self.i += 1
        buf: list[str] = []
        while self.i < n:
            c = s[self.i]
            if c == "\\":
                if self.i + 1 >= n:
                    break
                e = s[self.i + 1]
                if e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", s[self.i + 2 : self.i + 6]):
                    code = int(s[self.i + 2 : self.i + 6], 16)
                    self.i += 6
                    low_next = re.fullmatch(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}", s[self.i : self.i + 6])
                    if 0xD800 <= code < 0xDC00 and low_next:
                        low = int(s[self.i + 2 : self.i + 6], 16)
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        self.i += 6
                    buf.append(chr(code) if not 0xD800 <= code < 0xE000 else "\ufffd")
                    continue
                buf.append(_ESCAPES.get(e, "\\" + e))
                self.i += 2
                continue
            if c in closers and _closes_at(s, self.i + 1):
                self.i += 1
                return "".join(buf)
            buf.append(c)
            self.i += 1
        raise self.fail("a string")


def strip_code_fence(text: str) -> str:
    """The contents of the first ``` fence (```json, ```JSON, ```python...), else the text."""
    m = _FENCE.search(text)
    return m.group(1).strip() if m else text


def _parse_at(s: str, i: int) -> tuple[Any, int]:
    p = _Parser(s)
    p.i = i
    try:
        return p.value(0), p.i
    except RecursionError:
        raise JSONRepairError("JSON nested too deeply") from None


def _unwrap_json_string(value: Any) -> Any:
    """A JSON string whose content is itself JSON ("{\\"a\\": 1}") is decoded once more."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return loads_lenient(value)
        except JSONRepairError:
            return value
    return value


def loads_lenient(text: str) -> Any:
    """Decode the first JSON value in `text`, repairing the usual model mistakes.

    Raises JSONRepairError (with the reason, e.g. "truncated JSON") when nothing can be read.
    """
    if not isinstance(text, str):
        raise JSONRepairError(f"expected text, got {type(text).__name__}")
    s = text.strip().lstrip("\ufeff")
    try:
        return _unwrap_json_string(json.loads(s))
    except (ValueError, RecursionError):
        pass
    s = strip_code_fence(s)
    if not s:
        raise JSONRepairError("no JSON found: the text is empty")
    first_error: JSONRepairError | None = None
    if s[0] in _QUOTES:  # a quoted JSON string, possibly holding JSON
        try:
            return _unwrap_json_string(_parse_at(s, 0)[0])
        except JSONRepairError as e:
            first_error = e
    openers = _OPEN_OBJ + _OPEN_ARR
    i = 0
    while i < len(s):
        if s[i] not in openers:
            i += 1
            continue
        try:
            return _unwrap_json_string(_parse_at(s, i)[0])
        except JSONRepairError as e:
            first_error = first_error or e
        end = _balanced_end(s, i)
        if end is None:  # unclosed: every later bracket is nested inside it, so it was cut off
            break
        try:  # last resort: Python-literal syntax the parser does not cover (tuples, etc.)
            return ast.literal_eval(s[i:end])
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            i = end  # a balanced span that is not JSON (e.g. "[see docs]"): skip it whole
    if first_error is not None:
        raise first_error
    raise JSONRepairError("no JSON object found in the text")


def _balanced_end(s: str, start: int) -> int | None:
    """Index just past the bracket matching s[start], skipping string contents; None if unclosed."""
    depth = 0
    quote = ""
    i, n = start, len(s)
    while i < n:
        c = s[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c in _QUOTES[quote] and _closes_at(s, i + 1):
                quote = ""
        elif c in _QUOTES:
            quote = c
        elif s.startswith("//", i) or s.startswith("/*", i):  # comments may hold quotes: "user's"
            closer = "\n" if s[i + 1] == "/" else "*/"
            close = s.find(closer, i + 2)
            if close < 0:
                return None
            i = close + len(closer)
            continue
        elif c in _OPEN_OBJ or c in _OPEN_ARR:
            depth += 1
        elif c in _CLOSE_OBJ or c in _CLOSE_ARR:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def find_json_objects(text: str) -> list[tuple[Any, int, int]]:
    """Every top-level JSON object in free text as (value, start, end), in order.

    Balanced-brace scanning that skips braces inside strings; each balanced span is decoded
    leniently. A span that does not decode is skipped whole (its inner braces are not
    reported as separate objects); an object that never closes ends the scan.
    """
    out: list[tuple[Any, int, int]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] not in _OPEN_OBJ:
            i += 1
            continue
        end = _balanced_end(text, i)
        if end is None:
            break
        try:
            value, stop = _parse_at(text, i)
            if stop != end or not isinstance(value, dict):
                raise JSONRepairError("span is not one object")
        except JSONRepairError:
            try:
                value = ast.literal_eval(text[i:end])
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                value = None
        if isinstance(value, dict):
            out.append((value, i, end))
        i = end
    return out
