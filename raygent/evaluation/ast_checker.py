"""BFCL's AST checker, re-implemented: is a model's list of calls one of the allowed answers?

The rules follow BFCL v4's `ast_checker` (Python cases); the code is raygent's own.

Per call (function doc, model call, expected `{name: {param: [allowed values]}}`):
  1. the function name must be the expected one;
  2. every parameter the doc marks required must be given;
  3. every given parameter must exist in the doc and in the expected call (else "unexpected");
  4. its value must have the doc's type (BFCL types: string, integer, float, boolean, array, tuple,
     dict, any = string); an int is accepted where a float is expected; a value of the type the
     allowed values have is accepted too (BFCL writes variables as strings);
  5. its value must be among the allowed values: strings compared after BFCL's normalisation
     (lowercase, no spaces and no `,./-_*^`, single quotes as double quotes), lists element-wise
     (strings in them normalised), dicts key by key against each allowed dict, lists of dicts dict by
     dict in order; numbers and booleans by Python equality;
  6. an expected parameter not given must have "" among its allowed values (optional).
Per case: simple = exactly one call, checked against the one expected call; multiple = one call,
checked against the expected function (among several offered); parallel / parallel_multiple = as
many calls as expected, each expected call matched by a different model call in any order;
irrelevance = right only when the model made no call; relevance = right when it made at least one.

Where raygent departs from BFCL (both only ever accept more, never less): parallel calls are matched
by a maximum bipartite matching instead of BFCL's greedy first match (which can miss a valid
assignment), and an int is accepted for a float inside lists as well as at the top level (JSON has
one number type; BFCL accepts it only at the top level).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: BFCL type name -> the Python type a JSON-decoded value must have
PYTHON_TYPES: dict[str, type] = {"string": str, "integer": int, "float": float, "number": float, "boolean": bool,
                                 "array": list, "tuple": list, "dict": dict, "object": dict, "any": str}
_LIST_TYPES = ("array", "tuple")
_STRIP = re.compile(r"[ ,./\-_*^]")


@dataclass
class Verdict:
    valid: bool
    reason: str = ""
    error_type: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


OK = Verdict(True, "ok")


def normalize_string(text: str) -> str:
    """BFCL's string normalisation: 'April 1, 2024' == 'april 1 2024' == "April-1-2024"."""
    return _STRIP.sub("", text).lower().replace("'", '"')


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- values -------------------------------------------------------------------------------------
def _normalized(value: Any) -> Any:
    """Strings normalised, recursively through lists (dict values are compared key by key instead)."""
    if isinstance(value, str):
        return normalize_string(value)
    if isinstance(value, (list, tuple)):
        return [_normalized(v) for v in value]
    return value


def _allowed_type(allowed: Sequence[Any]) -> type | None:
    """The type of the first allowed value that is not "" (the optional marker)."""
    for a in allowed:
        if a != "":
            return type(a)
    return None


def _type_ok(value: Any, expected: type, item_type: type | None, allowed: Sequence[Any]) -> tuple[bool, bool]:
    """(type accepted, value is a "variable": the allowed values have another type than the doc's)."""
    allowed_type = _allowed_type(allowed)
    variable = allowed_type is not None and allowed_type is not expected
    if type(value) is expected:
        if item_type is None:
            return True, variable
        # BFCL: valid when some allowed value is not a list (e.g. the optional "") or is a list whose
        # item types every element of `value` has
        if any(not isinstance(a, list) or all(_item_type_ok(v, item_type, a) for v in value) for a in allowed):
            return True, variable
        return False, variable
    if allowed_type is not None and type(value) is allowed_type:
        return True, True
    return False, variable


def _item_type_ok(item: Any, item_type: type, allowed_items: Sequence[Any]) -> bool:
    if item_type is float and type(item) is int:
        item = float(item)
    if type(item) is item_type:
        return True
    allowed_type = _allowed_type(allowed_items)
    return allowed_type is not None and type(item) is allowed_type


def _dict_matches(value: Mapping[str, Any], allowed: Any) -> str | None:
    """None when `value` fits the allowed dict (each key -> list of allowed values), else why not."""
    if not isinstance(allowed, Mapping):
        return "not a dict answer"
    for key, v in value.items():
        if key not in allowed:
            return f"unexpected key {key!r}"
        options = allowed[key] if isinstance(allowed[key], list) else [allowed[key]]
        if not _value_in(v, options):
            return f"key {key!r}: {_short(v)} is not one of {_short(options)}"
    for key, options in allowed.items():
        if key not in value and "" not in (options if isinstance(options, list) else [options]):
            return f"missing key {key!r}"
    return None


def _value_in(value: Any, options: Sequence[Any]) -> bool:
    """Whether a (nested) value is among the allowed options, strings normalised."""
    if isinstance(value, Mapping):
        return any(isinstance(o, Mapping) and _dict_matches(value, o) is None for o in options)
    if isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
        return any(isinstance(o, list) and len(o) == len(value) and
                   all(_dict_matches(v, a) is None if isinstance(v, Mapping) else _value_in(v, [a])
                       for v, a in zip(value, o)) for o in options)
    target = _normalized(value)
    for o in options:
        if isinstance(o, Mapping):
            continue
        if o == "" and isinstance(value, list):  # BFCL reads an optional "" as an empty list here
            o = []
        if _normalized(o) == target:
            return True
    return False


def check_value(param: str, value: Any, doc: Mapping[str, Any], allowed: Sequence[Any]) -> Verdict:
    """One given parameter against its doc (type) and its allowed values."""
    type_name = str(doc.get("type", "string"))
    expected = PYTHON_TYPES.get(type_name)
    if expected is None:
        expected = str
    item_type = None
    if type_name in _LIST_TYPES:
        items = doc.get("items") or {}
        item_type = PYTHON_TYPES.get(str(items.get("type", "")))
    if type_name == "float" and type(value) is int:  # Python would widen it; BFCL accepts it
        value = float(value)
    ok, variable = _type_ok(value, expected, item_type, allowed)
    if not ok:
        inner = f" of {doc.get('items', {}).get('type')}" if item_type is not None else ""
        return Verdict(False, f"parameter {param!r}: expected type {type_name}{inner}, got "
                              f"{type(value).__name__} {_short(value)}", "type_error")
    if not variable and expected is dict:
        problems = [_dict_matches(value, a) for a in allowed if a != ""]
        if any(p is None for p in problems):
            return OK
        why = problems[0] if problems else "no dict answer allowed"
        return Verdict(False, f"parameter {param!r}: {why} (value {_short(value)})", "value_error:dict")
    if not variable and expected is list and item_type is dict:
        if _value_in(value, [a for a in allowed if isinstance(a, list)]):
            return OK
        return Verdict(False, f"parameter {param!r}: {_short(value)} is not one of {_short(allowed)}",
                       "value_error:list_dict")
    if not variable and expected in (str, list):
        if _value_in(value, allowed):
            return OK
        note = " (compared lowercase, without spaces and ,./-_*^)" if expected is str else ""
        return Verdict(False, f"parameter {param!r}: {_short(value)} is not one of {_short(allowed)}{note}",
                       "value_error:string" if expected is str else "value_error:list")
    if value in allowed:  # numbers, booleans and variables: Python equality, as BFCL
        return OK
    return Verdict(False, f"parameter {param!r}: {_short(value)} is not one of {_short(allowed)}",
                   "value_error:others")


# -- calls --------------------------------------------------------------------------------------
def _as_call(call: Any) -> tuple[str, dict[str, Any]]:
    """(name, arguments) from a ToolCall, {"name", "arguments"} or BFCL's {name: arguments}."""
    if hasattr(call, "name") and hasattr(call, "arguments"):
        return str(call.name), dict(call.arguments or {})
    if isinstance(call, Mapping):
        if "name" in call and isinstance(call.get("arguments", {}), Mapping) and set(call) <= {"name", "arguments",
                                                                                              "id"}:
            return str(call["name"]), dict(call.get("arguments") or {})
        if len(call) == 1:
            name, args = next(iter(call.items()))
            return str(name), dict(args or {})
    raise TypeError(f"not a function call: {call!r}")


def find_doc(functions: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    return next((f for f in functions if f.get("name") == name), None)


def check_call(doc: Mapping[str, Any], call: Any, expected: Mapping[str, Mapping[str, list[Any]]]) -> Verdict:
    """One model call against one expected call `{name: {param: [allowed values]}}` and its function doc."""
    name, args = _as_call(call)
    expected_name, allowed = next(iter(expected.items()))
    if name != expected_name:
        return Verdict(False, f"called {name!r}, expected {expected_name!r}", "wrong_function")
    params = doc.get("parameters") or {}
    props: Mapping[str, Any] = params.get("properties") or {}
    for required in params.get("required") or []:
        if required not in args:
            return Verdict(False, f"missing required parameter {required!r}", "missing_required")
    for param, value in args.items():
        if param not in props or param not in allowed:
            return Verdict(False, f"unexpected parameter {param!r}", "unexpected_param")
        verdict = check_value(param, value, props[param], allowed[param])
        if not verdict.valid:
            return verdict
    for param, options in allowed.items():
        if param not in args and "" not in options:
            return Verdict(False, f"parameter {param!r} left out, but the answer needs one of {_short(options)}",
                           "missing_optional")
    return OK


def _match(functions: Sequence[Mapping[str, Any]], calls: Sequence[Any],
           expected: Sequence[Mapping[str, Any]]) -> Verdict:
    """Each expected call matched by a different model call, in any order (maximum bipartite matching)."""
    fits: list[list[int]] = []
    for i, exp in enumerate(expected):
        name = next(iter(exp))
        doc = find_doc(functions, name) or {"name": name, "parameters": {}}
        verdicts = [check_call(doc, c, exp) for c in calls]
        fits.append([j for j, v in enumerate(verdicts) if v.valid])
        if not fits[-1]:
            closest = next((v for v in verdicts if v.error_type != "wrong_function"), verdicts[0] if verdicts else None)
            why = f": {closest.reason}" if closest else ""
            return Verdict(False, f"expected call {i + 1} ({name}) matched by no model call{why}", "no_match")
    owner: dict[int, int] = {}

    def assign(i: int, seen: set[int]) -> bool:
        for j in fits[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or assign(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(expected)):
        if not assign(i, set()):
            return Verdict(False, f"expected call {i + 1} ({next(iter(expected[i]))}) has no model call of its own "
                                  "(several expected calls fit only the same model call)", "no_match")
    return OK


def check_case(category: str, functions: Sequence[Mapping[str, Any]], calls: Sequence[Any],
               ground_truth: Sequence[Mapping[str, Any]] | None) -> Verdict:
    """The verdict on one BFCL case: the model's calls (ToolCalls or dicts) against the ground truth."""
    calls = [c for c in calls if _as_call(c)[0]]  # BFCL counts an empty call as none
    if "irrelevance" in category:
        if calls:
            return Verdict(False, f"made {len(calls)} call(s) ({', '.join(_as_call(c)[0] for c in calls)}) where "
                                  "no offered function fits", "irrelevance:called")
        return Verdict(True, "no call, as expected")
    if "relevance" in category:
        return Verdict(True, "called a function") if calls else Verdict(False, "made no call", "relevance:no_call")
    if not ground_truth:
        raise ValueError(f"category {category!r} needs a ground truth")
    if not calls:
        return Verdict(False, f"made no call; expected {len(ground_truth)}", "no_call")
    if len(calls) != len(ground_truth):
        return Verdict(False, f"made {len(calls)} call(s); expected {len(ground_truth)}", "wrong_count")
    if "parallel" in category:
        return _match(functions, calls, ground_truth)
    expected = ground_truth[0]
    name = next(iter(expected))
    doc = find_doc(functions, name)
    if doc is None:
        if "multiple" in category or len(functions) != 1:
            raise ValueError(f"the ground truth calls {name!r}, which no offered function names")
        doc = functions[0]
    return check_call(doc, calls[0], expected)
