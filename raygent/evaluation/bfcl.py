"""BFCL (Berkeley Function Calling Leaderboard, v4) cases, read from the data files of the `bfcl-eval` wheel.

The wheel (Apache-2.0) carries the question files (`bfcl_eval/data/BFCL_v4_<category>.json`) and the
possible answers (`bfcl_eval/data/possible_answer/...`), one JSON object per line. Only that data is
read, straight out of the zip: the package's own code needs dozens of SDKs (openai, anthropic,
cohere, google-genai, qwen-agent, vllm extras, a pinned numpy 1.26) and is never installed or
imported. Nothing is downloaded here: fetch the wheel once with

    pip download bfcl-eval==2026.3.23 --no-deps -d ~/.cache/raygent/bfcl

(RAYGENT_BFCL_CACHE names another folder; RAYGENT_BFCL_WHEEL a wheel file anywhere).

A case is the first user turn(s) of an entry, its function docs converted to raygent ToolSpecs
(BFCL's Python-flavoured types mapped onto JSON schema as BFCL does for its function-calling
models: dict -> object, float -> number, tuple -> array, any -> string) and its ground truth: a list
of expected calls `{function name: {parameter: [allowed values]}}` ("" among the values: the
parameter may be left out).
"""

from __future__ import annotations

import copy
import glob
import json
import os
import random
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raygent.schema import Message, ToolSpec

#: the wheel the docs and error messages point to (the loader accepts any bfcl_eval-*.whl)
BFCL_VERSION = "2026.3.23"
DEFAULT_CACHE = "~/.cache/raygent/bfcl"

#: categories this harness evaluates (single-turn, checked by the AST checker or by "no call")
AST_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple",
                  "live_parallel", "live_parallel_multiple")
IRRELEVANCE_CATEGORIES = ("irrelevance", "live_irrelevance")
#: live_relevance: right when the model calls any function (BFCL ships no answers for it)
RELEVANCE_CATEGORIES = ("live_relevance",)
CATEGORIES = AST_CATEGORIES + IRRELEVANCE_CATEGORIES + RELEVANCE_CATEGORIES
#: multi-turn categories need BFCL's stateful API simulators (Python code in the wheel) and are not supported
UNSUPPORTED = {"multi_turn_base": "multi-turn categories run BFCL's stateful API simulators (code in the wheel, "
                                  "which raygent does not import); not supported",
               "simple_java": "Java cases need BFCL's Java value parser; not supported",
               "simple_javascript": "JavaScript cases need BFCL's JavaScript value parser; not supported"}

#: BFCL parameter types -> JSON schema types (BFCL's own GORILLA_TO_OPENAPI mapping for Python)
TYPE_MAP = {"dict": "object", "object": "object", "float": "number", "double": "number", "number": "number",
            "integer": "integer", "int": "integer", "long": "integer", "short": "integer", "byte": "integer",
            "bigint": "integer", "boolean": "boolean", "bool": "boolean", "string": "string", "str": "string",
            "char": "string", "any": "string", "array": "array", "list": "array", "tuple": "array",
            "arraylist": "array", "queue": "array", "stack": "array", "hashmap": "object", "hashtable": "object"}
#: JSON-schema keywords kept from a BFCL parameter doc (others, such as BFCL's `optional`, are dropped)
_KEPT_KEYS = ("description", "enum", "default", "format", "minimum", "maximum", "minItems", "maxItems",
              "minLength", "maxLength", "pattern")


class BFCLDataMissing(FileNotFoundError):
    """The bfcl-eval wheel is not on this machine (raygent never downloads it by itself)."""


def cache_dir() -> Path:
    return Path(os.environ.get("RAYGENT_BFCL_CACHE", DEFAULT_CACHE)).expanduser()


def fetch_command(cache: Path | None = None) -> str:
    """The command that puts the wheel where `wheel_path` looks."""
    folder = str(cache or cache_dir())
    home = str(Path.home())
    if folder.startswith(home + os.sep):
        folder = "~" + folder[len(home):]
    return f"pip download bfcl-eval=={BFCL_VERSION} --no-deps -d {folder}"


def find_wheel() -> Path | None:
    """RAYGENT_BFCL_WHEEL if set, else the newest bfcl_eval-*.whl in the cache folder, else None."""
    explicit = os.environ.get("RAYGENT_BFCL_WHEEL")
    if explicit:
        return Path(explicit).expanduser()
    found = sorted(glob.glob(str(cache_dir() / "bfcl_eval-*.whl")), key=_wheel_version)
    return Path(found[-1]) if found else None


def _wheel_version(path: str) -> tuple:
    m = re.match(r"bfcl_eval-([^-]+)-", os.path.basename(path))
    parts = re.findall(r"\d+", m.group(1)) if m else []
    return tuple(int(p) for p in parts)


def wheel_path() -> Path:
    """The bfcl-eval wheel to read, or BFCLDataMissing saying how to fetch it."""
    wheel = find_wheel()
    if wheel is not None and wheel.is_file():
        return wheel
    if wheel is not None:  # RAYGENT_BFCL_WHEEL names a missing file
        raise BFCLDataMissing(f"RAYGENT_BFCL_WHEEL={wheel} does not exist; fetch the wheel with "
                              f"`pip download bfcl-eval=={BFCL_VERSION} --no-deps -d {wheel.parent}`")
    raise BFCLDataMissing(f"the BFCL data (the bfcl-eval wheel, read as data only) is not in {cache_dir()}; fetch it "
                          f"once with `{fetch_command()}` (or point RAYGENT_BFCL_WHEEL at a bfcl_eval-*.whl)")


# -- reading the wheel ------------------------------------------------------------------------------
class BFCLArchive:
    """The data files inside one bfcl-eval wheel."""

    def __init__(self, wheel: str | os.PathLike | None = None):
        self.path = Path(wheel) if wheel is not None else wheel_path()
        if not self.path.is_file():
            raise BFCLDataMissing(f"{self.path} does not exist; fetch the wheel with `{fetch_command()}`")
        self._zip = zipfile.ZipFile(self.path)
        self._names = self._zip.namelist()

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> BFCLArchive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def data_name(self, category: str, answers: bool = False) -> str | None:
        folder = "bfcl_eval/data/possible_answer/" if answers else "bfcl_eval/data/"
        pattern = re.compile(re.escape(folder) + r"BFCL_v(\d+)_" + re.escape(category) + r"\.json")
        hits = sorted((int(m.group(1)), n) for n in self._names if (m := pattern.fullmatch(n)))
        return hits[-1][1] if hits else None

    def categories(self) -> list[str]:
        out = []
        for n in self._names:
            m = re.fullmatch(r"bfcl_eval/data/BFCL_v\d+_(\w+)\.json", n)
            if m:
                out.append(m.group(1))
        return sorted(set(out))

    def lines(self, name: str | None) -> list[dict[str, Any]]:
        if not name:
            return []
        raw = self._zip.read(name).decode("utf-8")
        return [json.loads(line) for line in raw.splitlines() if line.strip()]

    def entries(self, category: str) -> list[dict[str, Any]]:
        name = self.data_name(category)
        if name is None:
            raise KeyError(f"no BFCL category {category!r} in {self.path.name} (it has: {', '.join(self.categories())})")
        return self.lines(name)

    def answers(self, category: str) -> dict[str, list[dict[str, Any]]]:
        return {a["id"]: a["ground_truth"] for a in self.lines(self.data_name(category, answers=True))}


# -- schema conversion ------------------------------------------------------------------------------
def to_json_schema(doc: Any) -> dict[str, Any]:
    """One BFCL parameter doc (or a function's `parameters`) -> a JSON schema."""
    if not isinstance(doc, dict):
        return {"type": "string"}
    out: dict[str, Any] = {}
    bfcl_type = str(doc.get("type", "string"))
    json_type = TYPE_MAP.get(bfcl_type.lower(), "string")
    out["type"] = json_type
    for key in _KEPT_KEYS:
        if key in doc:
            out[key] = copy.deepcopy(doc[key])
    if json_type == "string" and "format" in out and out["format"] not in ("date", "time", "date-time", "uuid"):
        out.pop("format")  # free-text formats would only confuse a grammar builder
    if json_type == "object":
        props = doc.get("properties")
        if isinstance(props, dict) and props:
            out["properties"] = {k: to_json_schema(v) for k, v in props.items()}
            required = [r for r in doc.get("required", []) if r in props]
            if required:
                out["required"] = required
    elif json_type == "array":
        items = doc.get("items")
        if isinstance(items, dict):
            out["items"] = to_json_schema(items)
    return out


def function_to_tool(doc: dict[str, Any]) -> ToolSpec:
    """A BFCL function doc -> ToolSpec (parameters as an object schema; the name is kept, dots included)."""
    params = to_json_schema({**(doc.get("parameters") or {}), "type": "dict"})
    params.setdefault("properties", {})
    return ToolSpec(name=doc["name"], description=doc.get("description", ""), parameters=params)


# -- cases ------------------------------------------------------------------------------------------
@dataclass
class BFCLCase:
    id: str
    category: str
    messages: list[Message]
    functions: list[dict[str, Any]]  # BFCL's own function docs (what the checker reads)
    tools: list[ToolSpec]
    ground_truth: list[dict[str, dict[str, list[Any]]]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "category": self.category, "messages": [m.model_dump(exclude_defaults=True)
                                                                       for m in self.messages],
                "functions": self.functions, "ground_truth": self.ground_truth}


def _first_turn(question: Any) -> list[dict[str, Any]]:
    """Single-turn entries hold [[messages]]; older files hold [messages]."""
    if isinstance(question, list) and question and isinstance(question[0], list):
        return question[0]
    return list(question or [])


def case_from_entry(entry: dict[str, Any], category: str, ground_truth: Any = None) -> BFCLCase:
    turns = _first_turn(entry["question"])
    messages = [Message(role=t["role"], content=t.get("content") or "") for t in turns
                if t.get("role") in ("system", "user", "assistant")]
    functions = entry.get("function") or []
    if isinstance(functions, dict):
        functions = [functions]
    return BFCLCase(id=entry["id"], category=category, messages=messages, functions=functions,
                    tools=[function_to_tool(f) for f in functions], ground_truth=ground_truth)


def parse_categories(spec: str | Iterable[str]) -> list[str]:
    """"a,b" or ["a", "b"] -> validated category names ("all": every supported one)."""
    names = [c.strip() for c in (spec.split(",") if isinstance(spec, str) else spec) if c.strip()]
    out: list[str] = []
    for name in names:
        if name == "all":
            out.extend(c for c in CATEGORIES if c not in out)
            continue
        if name in UNSUPPORTED:
            raise ValueError(f"BFCL category {name!r}: {UNSUPPORTED[name]}")
        if name not in CATEGORIES:
            raise ValueError(f"unknown BFCL category {name!r}; choose from {', '.join(CATEGORIES)} (or 'all')")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("no BFCL category given")
    return out


def load_category(category: str, archive: BFCLArchive) -> list[BFCLCase]:
    entries = archive.entries(category)
    answers = archive.answers(category) if category in AST_CATEGORIES else {}
    cases = []
    for e in entries:
        gt = answers.get(e["id"])
        if category in AST_CATEGORIES and gt is None:
            continue  # no ground truth: nothing to check against
        cases.append(case_from_entry(e, category, gt))
    return cases


def select(cases: Sequence[BFCLCase], limit: int | None = None, seed: int = 0) -> list[BFCLCase]:
    """The first `limit` cases of a shuffle seeded with `seed` (all of them, in file order, without a limit)."""
    if limit is None or limit >= len(cases):
        return list(cases)
    order = list(range(len(cases)))
    random.Random(seed).shuffle(order)
    return [cases[i] for i in sorted(order[: max(0, limit)])]


def load_cases(categories: str | Iterable[str], *, limit: int | None = None, seed: int = 0,
               wheel: str | os.PathLike | None = None) -> list[BFCLCase]:
    """Cases of the given categories, `limit` per category (a seeded sample, kept in file order)."""
    with BFCLArchive(wheel) as archive:
        out: list[BFCLCase] = []
        for category in parse_categories(categories):
            out.extend(select(load_category(category, archive), limit, seed))
    return out
