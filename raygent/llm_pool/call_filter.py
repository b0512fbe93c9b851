"""Which of a small model's several calls in one reply to keep.

Allowed more than one call per reply, a 0.5B model fills the extra slots with repeats of its first
call, with calls copied from the prompt's exemplars, and with calls of neighbouring offered tools
fed the first call's values ("the humidity in Miami" followed by `get_team_score("Miami", "NFL")`).
These are easy to tell from real parallel calls ("the weather in Boston and in Paris"): a real
extra call differs from the calls before it in values the user actually wrote, or combines values
already used in a new way. So the first call is kept (unless none of its values is in the
conversation and a later call's values all are); exact repeats are dropped; so is a
further call that swaps an earlier call's values (`gcd(15, 12)` after `gcd(12, 15)`) or gives two
of its arguments the same text (`start="San Jose", end="San Jose"`). A further call of a tool
already called is kept where one of its values new to that tool's calls is grounded in the
conversation's user messages or tool results and not all of them went to another tool's call
(`gcd(440, 880)` after the frequencies of `calculate_note_duration`), or where it has no new value
(a new combination). A
call of another tool must have every value the user could have given grounded, and either be named
in the conversation (a word of its name, "weather" for `weather_forecast`) or bring a value no
earlier call used that the conversation holds whole ("Liverpool F.C. data" after a call for
"Liverpool F.C." brings nothing).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from raygent.schema import Message, ToolCall

_WORD = re.compile(r"[^\W_]{3,}", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
#: a number as written in text: sign, thousands separators, decimals ("-74.0060", "1,200.50")
_TEXT_NUMBER = re.compile(r"(?<![\d.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
#: an identifier: letters and digits in one token ("sup-99", "trk-55120", "xy1234"), found only whole
_ID_LIKE = re.compile(r"(?=[^\s]*\d)(?=[^\s]*[a-z])[a-z0-9][a-z0-9_\-.#/]*")
#: words too common to ground a value by themselves
_COMMON = frozenset("the and for with from into that this what which when where who how are was were per "
                    "not all any can get set use new one two".split())


#: ISO 4217 codes a model writes for currencies the user named in words
_CURRENCY_NAMES: dict[str, tuple[str, ...]] = {
    "usd": ("dollar", "美元"), "eur": ("euro", "欧元"), "gbp": ("pound", "sterling", "英镑"), "jpy": ("yen", "日元"),
    "cny": ("yuan", "renminbi", "rmb", "人民币"), "inr": ("rupee",), "cad": ("canadian dollar",),
    "aud": ("australian dollar",), "nzd": ("new zealand dollar",), "hkd": ("hong kong dollar", "港币"),
    "sgd": ("singapore dollar",), "chf": ("swiss franc",), "krw": ("korean won", "韩元"), "rub": ("ruble", "rouble"),
    "brl": ("brazilian real", "reais"), "mxn": ("mexican peso",), "sek": ("swedish krona",), "nok": ("norwegian krone",),
    "dkk": ("danish krone",), "zar": ("rand",), "try": ("turkish lira",), "thb": ("baht",), "btc": ("bitcoin",),
}


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


def _numbers_in(text: str) -> Iterator[float]:
    for match in _TEXT_NUMBER.finditer(text):
        try:
            yield float(match.group().replace(",", ""))
        except ValueError:  # pragma: no cover - the pattern only matches numbers
            continue


def grounded(value: Any, text: str) -> bool:
    """Whether a leaf argument value appears in `text` (lower-cased conversation text): a number in
    any usual form, a string whole, by one of its words (half of them, from three words on), by a
    two-character piece of CJK text, or by a number inside it ("3.5*4-2" for "3.5 乘以 4 再减去 2");
    an identifier of letters and digits ("SUP-99") only whole, separators aside ("sku 3302" for
    "SKU-3302"), not by a word that begins like it ("supplier") or by its number ("SUP-9014" is
    made up from "SKU-9014")."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float)):
        if any(re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", text) for f in _number_forms(value)):
            return True
        # the same number written otherwise: "-74.0060" for -74.006, "1,000,000.00" for 1e6
        return any(math.isclose(n, value, rel_tol=1e-9) for n in _numbers_in(text))
    s = str(value).strip().lower()
    if not s:
        return False
    if s in text:
        return True
    if s in _CURRENCY_NAMES:  # "GBP" for "British pounds"
        return any(name in text if _CJK.search(name) else re.search(rf"(?<!\w){re.escape(name)}", text)
                   for name in _CURRENCY_NAMES[s])
    if _CJK.search(s):  # no spaces to split on: any two-character piece of it
        return any(s[i:i + 2] in text for i in range(len(s) - 1))
    if _ID_LIKE.fullmatch(s):  # "SUP-99", a schema's example id, is not grounded by "supplier"'s "sup"
        runs = re.findall(r"[a-z]+|\d+", s)  # nor "SUP-9014" by "SKU-9014": the whole id, separators aside
        return bool(re.search(r"(?<![a-z0-9])" + r"[-_ ./#]?".join(map(re.escape, runs)) + r"(?![a-z0-9])", text))
    words = [w for w in _WORD.findall(s) if w not in _COMMON]
    found = sum(bool(re.search(rf"\b{re.escape(w)}", text)) for w in words)
    # a longer text needs half its words there: a made-up URL or sentence shares a word or two
    # with any request ("weather" in an invented openweathermap URL, "name" in a made-up translation)
    if found and (len(words) < 3 or 2 * found >= len(words)):
        return True
    return any(grounded(float(n), text) for n in _NUMBER.findall(s))


def conversation_text(messages: Sequence[Message], roles: tuple[str, ...] = ("user", "tool")) -> str:
    """What the user wrote and the tools returned (and the other `roles` said), lower-cased: where a
    call's values may come from."""
    return "\n".join((m.content or "") for m in messages if m.role in roles).lower()


def keep_grounded_calls(calls: Sequence[ToolCall], messages: Sequence[Message],
                        parameters: Mapping[str, Any] | None = None) -> tuple[list[ToolCall], list[str]]:
    """(calls kept, one reason per call dropped). `parameters`: each offered tool's JSON schema by
    name, so that its enum members and defaults do not count as values the user must have given."""
    if len(calls) <= 1:
        return list(calls), []
    text = conversation_text(messages)
    kept: list[ToolCall] = []
    schemas = parameters or {}
    # a first call with nothing but made-up values (`city_forecast("Paris")`, its schema's example,
    # or `next_flight("AMS", "MAD")`) before a call whose values are all in the conversation: the
    # later calls are the reply
    calls, dropped = _with_labelled_ids(calls, messages)
    while len(calls) > 1 and _all_made_up(calls[0], schemas.get(calls[0].name), text) and any(
            all(grounded(v, text) for v in user_values(c, schemas.get(c.name))) for c in calls[1:]):
        dropped.append(f"dropped a first call to {calls[0].name!r}: none of its values appear in the conversation")
        calls.pop(0)
    seen: set[str] = set()
    for call in calls:
        key = call.name + _key(call.arguments)
        if key in seen:
            dropped.append(f"dropped a repeat of the call to {call.name!r}")
            continue
        why = _extra_call_fault(call, kept, text, (parameters or {}).get(call.name)) if kept else None
        if why:
            dropped.append(f"dropped an extra call to {call.name!r}: {why}")
            continue
        seen.add(key)
        kept.append(call)
    return kept, dropped


def _with_labelled_ids(calls: Sequence[ToolCall], messages: Sequence[Message]) -> tuple[list[ToolCall], list[str]]:
    """(calls without those that pass a key the request labels as another kind's, one reason each).

    "Email the customer who placed order B-5190": the 0.5B writes `lookup_order(order_id="B-5190")`
    and `customer_profile(customer_id="B-5190")` in one reply, a step that needs the order's
    customer_id written before the order is looked up; "the manager of employee E-233" gets
    `track_package(tracking_no="E-233")`, `customer_profile(customer_id="E-233")` and
    `get_employee(employee_id="E-233")`. Where calls of one reply pass the same value under key
    parameters of different names (`order_id`, `customer_id`), and the word the request writes just
    before the value ("order", "employee") is a word of some of those names, the others are
    dropped. None of BFCL's answer sets passes one value under two key parameters' names."""
    request = next((m.content or "" for m in reversed(messages) if m.role == "user"), "").lower()
    by_value: dict[str, list[tuple[int, str]]] = {}
    for i, call in enumerate(calls):
        for name, value in call.arguments.items():
            if _REFERENCE.search(name) and isinstance(value, (str, int)) and not isinstance(value, bool):
                by_value.setdefault(_key(value), []).append((i, name))
    wrong: dict[int, str] = {}
    for value, uses in by_value.items():
        if len({name for _, name in uses}) < 2:
            continue
        written = re.escape(str(json.loads(value)).lower())
        label = re.search(rf"(\w+)\W+(?:(?:no|number|id|#)\W+)?{written}(?!\w)", request)
        if label is None:
            continue
        word = label.group(1)[:5]
        fits = {i for i, name in uses if any(w[:5] == word for w in identifier_words(_REFERENCE.sub("", name)))}
        if fits:
            for i, name in uses:
                if i not in fits:
                    wrong[i] = (f"dropped the call to {calls[i].name!r}: the request's {label.group(1)} "
                                f"{json.loads(value)} is no {name}")
    return [c for i, c in enumerate(calls) if i not in wrong], list(wrong.values())


def _all_made_up(call: ToolCall, parameters: Any, text: str) -> bool:
    values = user_values(call, parameters)
    return bool(values) and not any(grounded(v, text) for v in values)


def _key(value: Any) -> str:
    """A value as canonical JSON: how values are compared across calls and with schema constants."""
    return json.dumps(value, sort_keys=True, default=str)


def _extra_call_fault(call: ToolCall, kept: Sequence[ToolCall], text: str, parameters: Any) -> str | None:
    """Why a call after the first is no real one of its own (None: it is)."""
    if not call.arguments:
        return None
    texts = [_key(v) for v in call.arguments.values() if isinstance(v, str) and v.strip()]
    if len(texts) != len(set(texts)):
        return "two of its arguments carry the same text"
    same_tool = [c for c in kept if c.name == call.name]
    signature = sorted(_key(v) for v in _leaves(call.arguments))
    if any(sorted(_key(v) for v in _leaves(c.arguments)) == signature for c in same_tool):
        return "it swaps the values of an earlier call"
    if same_tool:
        # another call of a tool already called must bring a value of its own; no new value at all
        # is a new combination of values already used ("Lakers 2020" after "Lakers 2018" and
        # "Bulls 2020"), kept; otherwise one new value must come from the text
        earlier = {_key(v) for c in same_tool for v in _leaves(c.arguments)}
        new = [v for v in _leaves(call.arguments) if _key(v) not in earlier]
        if new and not any(grounded(v, text) for v in new):
            return (f"none of its new values ({', '.join(_key(v)[:40] for v in new[:4])}) "
                    "appear in the conversation")
        # its new values all belong to another tool's call: `gcd(440, 880)` after the notes'
        # frequencies went to `calculate_note_duration`, a solar farm at the wind farm's coordinates
        others = {_key(v) for c in kept if c.name != call.name for v in _leaves(c.arguments)}
        if new and all(_key(v) in others for v in new):
            return "its new values are those of another tool's call"
        return None
    # a call of a tool not called yet may share its values with the others ("the weather and the
    # time in Boston"), but may not make any up, and must be asked for: named in the conversation,
    # or fed a value of the conversation that no earlier call used
    values = user_values(call, parameters)
    made_up = [v for v in values if not grounded(v, text)]
    if made_up:
        return f"its values {', '.join(_key(v)[:40] for v in made_up[:4])} appear nowhere in the conversation"
    used = {_key(v) for c in kept for v in _leaves(c.arguments)}
    # a tool with words of its own that the text does not use, named only by a word a kept call's
    # tool shares: "Find a Theater event in Chicago" names `Events_3_FindEvents`, and
    # `Events_3_BuyEventTickets` ("buy", "tickets") only through "event"
    own = name_stems(call.name) - {stem for c in kept for stem in name_stems(c.name)}
    unnamed = bool(own) and not any(stem in text.replace(" ", "") for stem in own)
    if (unnamed or not named_in(call.name, text)) and not any(
            _key(v) not in used and found_whole(v, text) for v in values):
        return "the conversation names no such tool and it only repeats the earlier calls' values"
    return None


def found_whole(value: Any, text: str) -> bool:
    """A value found whole in lower-cased text (numbers in any usual form), not by a word of it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return grounded(value, text)
    s = str(value).strip().lower()
    return bool(s) and s in text


#: a parameter that names a thing by its key: `order_id`, `customerId`, `tracking_no`, `zip_code`
_REFERENCE = re.compile(r"(?:_id|Id|ID|_no|_number|_num|_code)$")
#: words of tool names that say nothing about what the tool is for
GENERIC_NAME_WORDS = frozenset("get set find calc calculate compute fetch search info api list create update "
                                "delete the for and with from data details detail query lookup retrieve check "
                                "run make new all by".split())


def identifier_words(name: str) -> list[str]:
    """The lower-cased words of a tool or parameter name: `getStockPrice`, `unit_conversion.convert`."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w.lower() for w in re.split(r"[^0-9A-Za-z]+", spaced) if w]


def name_stems(tool_name: str) -> set[str]:
    """The words of a tool's name other than generic verbs (`get`, `calculate`), on their first
    five letters."""
    return {w[:5] for w in identifier_words(tool_name) if len(w) >= 3 and w not in GENERIC_NAME_WORDS}


def naming_stems(tool_name: str, text: str) -> set[str]:
    """The stems of the tool's name (`name_stems`) the (lower-cased) text uses, so that "weigh"
    names `weight_in_space` and "convert" `unit_conversion`."""
    stems = name_stems(tool_name)
    tokens = set(_WORD.findall(text))
    return {stem for stem in stems if any(token.startswith(stem) for token in tokens)}


def named_in(tool_name: str, text: str) -> bool:
    """Whether the (lower-cased) text names the tool (`naming_stems`)."""
    return bool(naming_stems(tool_name, text))


def _schema_constants(schema: Any) -> set[str]:
    """Every enum value and default in a JSON schema, as JSON: values a call may rightly carry
    without the user having written them."""
    out: set[str] = set()
    if isinstance(schema, dict):
        for value in schema.get("enum") or ():
            out.add(_key(value))
        if "default" in schema:
            out.add(_key(schema["default"]))
        if "const" in schema:
            out.add(_key(schema["const"]))
        for sub in schema.values():
            out |= _schema_constants(sub)
    elif isinstance(schema, list):
        for sub in schema:
            out |= _schema_constants(sub)
    return out


def user_values(call: ToolCall, parameters: dict[str, Any] | None) -> list[Any]:
    """The call's leaf values that the user could have given: not booleans or nulls, not the
    schema's enum members or defaults."""
    constants = _schema_constants(parameters or {})
    return [v for v in _leaves(call.arguments) if not isinstance(v, bool) and v is not None
            and str(v).strip() and _key(v) not in constants]


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
    values = user_values(call, parameters)
    if not values:
        return False
    # earlier answers count too: "add 5 to that" may use a number the model said a turn ago
    text = conversation_text(messages, ("user", "tool", "assistant"))
    if any(made_up_identifier(name, value, text) for name, value in call.arguments.items()):
        return True
    return 2 * sum(grounded(v, text) for v in values) < len(values)


def made_up_identifier(name: str, value: Any, text: str) -> bool:
    """Whether an identifier argument (`case_id`, `orderId`: a string of four characters or more) holds
    a value found nowhere in the conversation. An id cannot be guessed: `case_info.get(case_id=
    "20200101")` for "cases of law firm ABC in 2020" is made up even where its other value (the year)
    is the user's. Over BFCL's answer calls, all 89 such ids appear in the conversation."""
    return ("id" in identifier_words(name) and isinstance(value, str) and len(value.strip()) >= 4
            and not grounded(value, text))
