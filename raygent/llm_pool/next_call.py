"""Whether a call asked of a small model after tool results is a real next step of the request.

After a first call returns, the embedded 0.5B answers at once where a second call is needed: it
states the customer's email as "C-311@example.com" instead of calling `customer_profile` with the
order's `customer_id`. Made to call (tool_choice "required"), it writes the right next call in 27
of the 40 positions of `benchmarks/multi_step_unseen.py` where one is due, but it also writes a call
where the request is already answered (a meeting nobody asked for, a conversion back,
`calculator("8760")` after 365*24). A real next step:

- is not a call already made since the user's message, nor a third call of one tool in it;
- makes no value up (every value the user could have given is in the conversation, every number
  inside a text value too);
- where it calls the tool that just answered, does not hand it back a number it returned, and
  computes on that number only with a number the user wrote that no call used yet ("391*3" after
  "17*23 = 391, then multiply by 3");
- carries a value a tool returned this turn that the user did not write and no call used yet (the
  order's `customer_id`), or, where the latest results failed, calls another tool with values
  found whole in the conversation (an order's parcel is found from the order, not by passing the
  order id as a tracking number);
- gives an email parameter an email address (`misfit_values`).

The chat model adds the last test, which needs its embedder: the tool must fit the request
(`LlamaCppChatModel.continue_chains`), unless the call also takes a short value of the user's own
that no call used yet (`brings_user_value`: the yen of "in Japanese yen", which the embedder scored
0.07 against `fx_convert`) or the request is in a language the embedder cannot read and the call
carries a text a tool returned (`carries_text`; a bare number does not count).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from raygent.llm_pool.call_filter import (_ID_LIKE, _NUMBER, _key, _leaves, conversation_text, found_whole, grounded,
                                          user_values)
from raygent.llm_pool.value_rewrites import rewrite_values
from raygent.schema import Message, ToolCall

#: a parameter whose name says it wants an email address, or whose description does without
#: offering something else ("a username, phone number, or email address"; "the subject of the
#: email" is no address either)
_EMAIL_WORDS = re.compile(r"e-?mail|邮箱|邮件地址", re.IGNORECASE)
_EMAIL_ADDRESS = re.compile(r"e-?mail address|邮箱|邮件地址", re.IGNORECASE)
_ALTERNATIVES = re.compile(r"\bor\b|such as|could be|或", re.IGNORECASE)
#: an example value in a parameter's description: "e.g. TRK-00001", "for example 'ACME'"
_EXAMPLE = re.compile(r"(?:e\.g\.,?|for example,?|such as)\s+(['\"`]?[\w.-]+['\"`]?)", re.IGNORECASE)
#: a parameter that wants a ticker symbol, and what one looks like ("AAPL", "BRK.B", "600519.SS")
_TICKER = re.compile(r"ticker", re.IGNORECASE)
_TICKER_VALUE = re.compile(r"[A-Z0-9^]{1,8}(?:[.-][A-Z0-9]{1,4})?")
#: how a failed tool result reaches the model (`ToolResult.content_for_model`)
_ERROR_PREFIX = "ERROR:"
#: the words of `next_call_fault`'s reason for a call with made-up values (the chat model asks
#: again with that tool barred where it sees them)
MADE_UP = "appear nowhere in the conversation"


def _example_shape(description: str) -> tuple[re.Pattern[str], str] | None:
    """(the shape a value must have, the example), from the description's example where it is an
    identifier with a prefix of two letters or more ("e.g. TRK-00001": TRK, a dash or not,
    digits); None for other examples or none. One letter does not say the kind: "e.g. Z-9001" for orders numbered "A-1042".
    Nor does a code ("e.g. 'JFK'", "e.g. 'IPR'"): BFCL's answers give such parameters "Atlanta"
    and "Patent"."""
    match = _EXAMPLE.search(description)
    if not match:
        return None
    example = match.group(1).strip("'\"`.,;:)(")
    parts = re.fullmatch(r"([A-Za-z]{2,})([-_]?)(\d+)", example)
    if parts:
        return re.compile(rf"{re.escape(parts.group(1))}[-_ ]?\d+", re.IGNORECASE), match.group(1)
    return None


def misfit_values(call: ToolCall, parameters: Mapping[str, Any] | None) -> list[str]:
    """What is wrong with the call's values for their parameters' kind (empty: nothing found):
    - a parameter that wants an email address (by its name, or by a description that says "email
      address" and offers nothing else) given text without an "@" (`to="C-227"`, a customer id
      where the customer's email belongs);
    - a parameter whose description's example is an identifier given a value of another shape:
      `tracking_no="A-2077"` where the example is "TRK-00001" (an order id for a tracking number);
    - a ticker parameter (by its name or description) given anything but a symbol:
      `ticker="Kestrel Motors"`, a company name where its ticker belongs."""
    properties = (parameters or {}).get("properties") or {}
    problems = []
    for name, value in call.arguments.items():
        schema = properties.get(name)
        if not isinstance(schema, dict) or not isinstance(value, str) or not value.strip():
            continue
        description = str(schema.get("description") or "")
        if _EMAIL_WORDS.search(name) or (_EMAIL_ADDRESS.search(description) and not _ALTERNATIVES.search(description)):
            if "@" not in value:
                problems.append(f"{name}={value!r} is not an email address")
            continue
        shape = _example_shape(description)
        if shape is not None and not shape[0].fullmatch(value.strip()):
            problems.append(f"{name}={value!r} is not shaped like its example {shape[1]!r}")
        elif _TICKER.search(name) or _TICKER.search(description):
            if not _TICKER_VALUE.fullmatch(value.strip()):
                problems.append(f"{name}={value!r} is not a ticker symbol")
    return problems


def _this_turn(messages: Sequence[Message]) -> list[Message]:
    """The messages after the latest user message: the calls and results of the turn under way."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return list(messages[i + 1:])
    return list(messages)


def _numbers_inside(value: Any) -> list[float]:
    """The numbers written inside a text value ("391*3": 391 and 3); none for other values, nor for
    an identifier ("E-020" is grounded whole, not by a number 20 that "e-020" does not contain)."""
    if not isinstance(value, str) or _ID_LIKE.fullmatch(value.strip().lower()):
        return []
    return [float(n) for n in _NUMBER.findall(value)]


def _carried(value: Any, results: str, user_text: str) -> bool:
    """Whether a value brings what a tool returned and the user did not write (not even in part):
    whole, or as a number inside it (`"391*3"` after a result of 391)."""
    if found_whole(value, results) and not grounded(value, user_text):
        return True  # and not the user's own value in another form ("浙江省" for the user's "浙江")
    return any(grounded(n, results) and not grounded(n, user_text) for n in _numbers_inside(value))


def _number(value: Any) -> float | None:
    """A number, or a string that is one ("8760"); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _latest_result(turn: Sequence[Message]) -> str:
    return next(((m.content or "").lower() for m in reversed(turn) if m.role == "tool"), "")


def _self_chain_without_user_number(values: Sequence[Any], latest: str, user_text: str,
                                    earlier: Sequence[ToolCall]) -> bool:
    """Whether a text value computes on a number the same tool just returned (`latest`) without a
    number the user wrote that no earlier call used ("391*3" after 17*23 = 391 and "multiply by 3"
    has one; "36*10" has none, nor "1093+12" after 23*47+12 = 1093)."""
    used = " ".join(str(v) for c in earlier for v in _leaves(c.arguments)).lower()
    for value in values:
        numbers = _numbers_inside(value)
        if any(grounded(n, latest) for n in numbers) and not any(
                grounded(n, user_text) and not grounded(n, used) for n in numbers):
            return True
    return False


#: what `next_call_fault` says of a call made already this turn
REPEATED = "it repeats a call already made"
#: what `next_call_fault` adds where a value is not of its parameter's kind (`misfit_values`)
MISFIT = "a value of another kind"
#: a result's field that names another thing by its key: `manager_id`, `supplierId`, `tracking_no`
_REFERENCE_FIELD = re.compile(r"^(.+?)[_ ]?(?:id|no|number|code)$", re.IGNORECASE)
#: what `next_call_fault` says of a call that goes on with the wrong record (the chat model asks again
#: with that tool barred where it sees it)
OTHER_RECORD = "is the value to go on with"


def _pointer(turn: Sequence[Message], request: str, used: set[str]) -> tuple[str, Any] | None:
    """(field, value) of the latest result's reference field that the request names by its words
    ("the manager of employee E-104": `manager_id`), where no call of the turn used its value yet
    and no two calls took keys of its shape (the manager's record names the manager's manager:
    a reference is followed once)."""
    latest = next((m for m in reversed(turn) if m.role == "tool"), None)
    shapes = [_shape(v) for m in turn if m.role == "assistant" for c in (m.tool_calls or [])
              for v in c.arguments.values()]
    fields = _result_fields(latest) if latest is not None else {}
    words = set(re.findall(r"[^\W\d_]+", request.lower()))
    for field, value in fields.items():
        match = _REFERENCE_FIELD.match(field)
        if (match is None or value is None or isinstance(value, (bool, dict, list)) or _key(value) in used
                or (_shape(value) is not None and shapes.count(_shape(value)) >= 2)):
            continue
        names = [w.lower() for w in re.findall(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])", match.group(1)) if len(w) >= 4]
        if names and all(any(w.startswith(n[:5]) for w in words) for n in names):
            return field, value
    return None


def _shape(value: Any) -> str | None:
    """The shape of a key ("E-233" -> "E-ddd"): its letters kept, its digits as "d"; None for other values."""
    if not isinstance(value, str) or not _ID_LIKE.fullmatch(value.strip().lower()):
        return None
    return re.sub(r"\d", "d", value.strip())


def follow_reference(messages: Sequence[Message]) -> ToolCall | None:
    """The lookup the request's words point to after a record: "the manager of employee E-104"
    after `get_employee("E-104")` returned `manager_id="E-020"` is `get_employee("E-020")`: the
    same tool and parameter as the call this turn that took a key of the same shape (E-104, E-020).
    None where the request names no unused reference field of the latest result, or no call took
    a key of its shape. The 0.5B writes the manager's lookup for "who is the manager of E-104"
    but goes on with the employee's own email for "email the manager of E-104"."""
    turn = _this_turn(messages)
    earlier = [c for m in turn if m.role == "assistant" for c in (m.tool_calls or [])]
    used = {_key(v) for c in earlier for v in _leaves(c.arguments)}
    pointer = _pointer(turn, conversation_text(messages, ("user",)), used)
    if pointer is None or _shape(pointer[1]) is None:
        return None
    for call in reversed(earlier):
        for name, value in call.arguments.items():
            if _shape(value) == _shape(pointer[1]):
                return ToolCall(name=call.name, arguments={**call.arguments, name: pointer[1]})
    return None


def shaped_step(messages: Sequence[Message], tools: Sequence[Any]) -> ToolCall | None:
    """The one call a result's key leads to by its shape: after `lookup_order("A-1042")` returned
    `item_sku="SKU-7781"`, `sku_details(sku="SKU-7781")`, whose parameter's example is "SKU-0001".
    For the chat model where the model, asked for the next step, gave a value of another kind
    (`supplier_contact("C-311")`) and then no right call. None unless exactly one (tool,
    parameter, value) fits: a tool whose required parameters are that one, a value of the latest
    result no call used yet, of the example's shape (a prefix of two letters or more)."""
    turn = _this_turn(messages)
    earlier = [c for m in turn if m.role == "assistant" for c in (m.tool_calls or [])]
    used = {_key(v) for c in earlier for v in _leaves(c.arguments)}
    latest = next((m for m in reversed(turn) if m.role == "tool"), None)
    if latest is None:
        return None
    values = [v for v in _leaves(_result_fields(latest)) if isinstance(v, str) and _key(v) not in used]
    found = []
    for tool in tools:
        schema = tool.parameters or {}
        properties = schema.get("properties") or {}
        required = list(schema.get("required") or properties)
        if len(required) != 1 or not isinstance(properties.get(required[0]), dict):
            continue
        shape = _example_shape(str(properties[required[0]].get("description") or ""))
        if shape is None:
            continue
        found += [ToolCall(name=tool.name, arguments={required[0]: v}) for v in values if shape[0].fullmatch(v.strip())]
    return found[0] if len(found) == 1 else None


#: what `other_tools_value` says of a call that hands a returned value to a tool of another kind (the
#: chat model asks again with that tool barred where it sees it)
OTHER_KIND = "belongs to"
_NAME_WORD = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])")


def _name_words(name: str) -> set[str]:
    return {w.lower()[:5] for w in _NAME_WORD.findall(name) if len(w) >= 4 and w.lower() not in _GENERIC}


_GENERIC = frozenset("code number name info details data value type current with from".split())


def other_tools_value(call: ToolCall, messages: Sequence[Message], tools: Sequence[Any]) -> str | None:
    """Why a call hands a value this turn's results returned to a tool of another kind (None: it
    does not): the field that held it ("arrival_airport": KIX) shares no word with the call's tool
    or parameter (`lookup_order(order_id="KIX")`), and names another offered tool (`airport_info`)."""
    turn = _this_turn(messages)
    fields: dict[str, Any] = {}
    for message in turn:
        if message.role == "tool":
            fields.update(_result_fields(message))
    names = {t.name for t in tools}
    for name, value in call.arguments.items():
        field = next((f for f, v in fields.items() if not isinstance(v, (bool, dict, list)) and v is not None
                      and _key(v) == _key(value) and f != name), None)
        if field is None:
            continue
        words = _name_words(field)
        if not words or words & (_name_words(call.name) | _name_words(name)):
            continue
        other = next((t for t in sorted(names) if t != call.name and words & _name_words(t)), None)
        if other is not None:
            return f"the result's {field} {value!r} {OTHER_KIND} {other}, not {call.name}'s {name}"
    return None


def returned_texts(call: ToolCall, messages: Sequence[Message]) -> list[tuple[str, str, str]]:
    """(parameter, result field, text) for each text value of the call that a field of this turn's
    results holds under another name (`company_ticker(company="Lisbon")` after a profile's
    "city": Lisbon): what the chat model checks for kinship where the embedder cannot read the
    request (Chinese) and so cannot judge the call's fit."""
    fields: dict[str, Any] = {}
    for message in _this_turn(messages):
        if message.role == "tool":
            fields.update(_result_fields(message))
    found = []
    for name, value in call.arguments.items():
        if not isinstance(value, str) or _number(value) is not None:
            continue
        field = next((f for f, v in fields.items() if isinstance(v, str) and _key(v) == _key(value)), None)
        if field is not None and field != name:
            found.append((name, field, value))
    return found


def kin_words(field: str, parameter: str, description: str = "") -> bool:
    """Whether a result field's name shares a word with a parameter's name or description
    ("current_city" and `city`; "email" and `to`, "the recipient's email address")."""
    words = _name_words(field)
    return bool(words & (_name_words(parameter) | _name_words(description)))


def unstated_values(call: ToolCall, messages: Sequence[Message], parameters: Mapping[str, Any] | None) -> list[Any]:
    """The call's values the conversation does not hold: made up whole, or holding a number nothing
    gave ("2023-1990" for "the current year, then how old someone born in 1990 turns", written
    before the year was looked up)."""
    text = conversation_text(messages)
    values = user_values(call, dict(parameters) if parameters else None)
    return [v for v in values if not grounded(v, text) or not all(grounded(n, text) for n in _numbers_inside(v))]


def next_call_fault(call: ToolCall, messages: Sequence[Message], parameters: Mapping[str, Any] | None) -> str | None:
    """Why a call made after tool results is no real next step of the request (None: it is)."""
    turn = _this_turn(messages)
    earlier = [c for m in turn if m.role == "assistant" for c in (m.tool_calls or [])]
    if any(c.name == call.name and _key(c.arguments) == _key(call.arguments) for c in earlier):
        return REPEATED
    if sum(c.name == call.name for c in earlier) >= 2:
        # 17*23, then that times 3, then the probe's "1173*3": a tool's own chain ends at two links
        return "a third call of the same tool in one turn"
    misfit = misfit_values(call, parameters)
    if misfit:
        return f"{'; '.join(misfit)} ({MISFIT})"
    values = user_values(call, dict(parameters) if parameters else None)
    text = conversation_text(messages)
    made_up = [v for v in values if not grounded(v, text)]
    if made_up:
        return f"its values {', '.join(_key(v)[:40] for v in made_up[:4])} {MADE_UP}"
    loose = [v for v in values if not all(grounded(n, text) for n in _numbers_inside(v))]
    if loose:  # "36*1" after 2026-1990 = 36: a number in it that nothing gave
        return f"a number in {_key(loose[0])[:40]} appears nowhere in the conversation"
    user_text = conversation_text(messages, ("user",))
    if earlier and call.name == earlier[-1].name:  # the tool that just answered, called again
        latest = _latest_result(turn)
        if values and all(_number(v) is not None and grounded(_number(v), latest) for v in values):
            return "it only gives the tool a number it just returned"  # calculator("8760") after 365*24
        if _self_chain_without_user_number(values, latest, user_text, earlier):
            return "it works on its own tool's number with none of the user's"  # "36*10" after 2026-1990
    results = conversation_text(turn, ("tool",))
    used = {_key(v) for c in earlier for v in _leaves(c.arguments)}
    # "email the manager of employee E-104": after the employee's record, a call with the employee's
    # own email goes on with the wrong record; the record's manager_id leads to the manager's
    pointer = _pointer(turn, user_text, used)
    latest_result = _latest_result(turn)
    if pointer is not None and not any(_key(v) == _key(pointer[1]) for v in _leaves(call.arguments)) and any(
            _key(v) not in used and found_whole(v, latest_result) and not grounded(v, user_text) for v in values):
        return f"the request names the record's {pointer[0]}: {pointer[1]!r} {OTHER_RECORD}"
    if any(_key(v) not in used and _carried(v, results, user_text) for v in values):
        return None  # it carries a result forward: the order's customer_id to the customer's profile
    latest: list[Message] = []
    for m in reversed(turn):
        if m.role != "tool":
            break
        latest.append(m)
    failed = {m.name for m in latest if (m.content or "").startswith(_ERROR_PREFIX)}
    if failed and call.name not in failed and all(found_whole(v, text) for v in values):
        return None  # the latest call failed: another tool may find what it needed, from the same values
    return "it carries no value the tools returned"


def _result_fields(message: Message) -> dict[str, Any]:
    """A tool result's top-level fields, where it is a JSON object ({} otherwise)."""
    try:
        value = json.loads(message.content or "")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def carry_result_fields(calls: Sequence[ToolCall], messages: Sequence[Message]) -> tuple[list[ToolCall], list[str]]:
    """(calls after tool results with a parameter named like a field of this turn's results given
    that field's value, one note per value changed).

    After `lookup_order("B-5190")` returned `{"order_id": "B-5190", "customer_id": "C-145", ...}`,
    the 0.5B calls `customer_profile(customer_id="B-5190")`: the step is right, the value is the
    order id it already had. Where a call's parameter has the name of a field of a result of this
    turn, the call gives it another value that no tool returned (the user's, an earlier call's
    argument a result echoes, or made up), and no call of this turn used the field's value yet,
    the field's value is what the parameter takes. A
    field that echoes an earlier call's own argument (the order id of "order A-1, then order A-2")
    changes nothing."""
    turn = _this_turn(messages)
    if not calls or not turn or turn[-1].role != "tool":
        return list(calls), []
    fields: dict[str, Any] = {}
    for message in turn:
        if message.role == "tool":
            fields.update(_result_fields(message))
    used = {_key(v) for m in turn if m.role == "assistant" for c in (m.tool_calls or []) for v in _leaves(c.arguments)}
    results = conversation_text(turn, ("tool",))

    def carried(name: str, value: Any, _schema: Any) -> Any:
        field = fields.get(name)
        if not (field is None or isinstance(field, (bool, dict, list)) or isinstance(value, (bool, dict, list))
                or _key(field) == _key(value) or _key(field) in used
                or (found_whole(value, results) and _key(value) not in used)):  # returned, not an echo
            return field
        return _newer_field(value, turn)  # the followed record's value, not the first one's

    return rewrite_values(calls, None, carried, "the value this turn's results give it")


def _newer_field(value: Any, turn: Sequence[Message]) -> Any:
    """Where the latest result is a record of the same tool as an earlier one this turn (the
    manager's record after the employee's) and `value` is a field of the earlier record: that
    field of the latest record ("email the manager of E-233" takes Marco's email, not Lena's).
    None otherwise."""
    calls = {c.id: c for m in turn if m.role == "assistant" for c in (m.tool_calls or [])}
    records = [(calls[m.tool_call_id].name, _result_fields(m)) for m in turn
               if m.role == "tool" and m.tool_call_id in calls]
    if len(records) < 2 or isinstance(value, (bool, dict, list)) or value is None:
        return None
    tool, latest = records[-1]
    for name, fields in records[:-1]:
        if name != tool:
            continue
        for field, old in fields.items():
            new = latest.get(field)
            if _key(old) == _key(value) and new is not None and _key(new) != _key(value) and not isinstance(
                    new, (bool, dict, list)):
                return new
    return None


def brings_user_value(call: ToolCall, messages: Sequence[Message], parameters: Mapping[str, Any] | None) -> bool:
    """Whether a next call also takes something the user asked with and no call this turn used
    yet: a number or a short text (two words at most) of the request that no tool returned
    (`to_code="JPY"` for "in Japanese yen", `subject="Restock"` for "ask them to restock"). Such a
    call is the step the request asked for even where the embedder scores its tool low against
    the request (0.07 for `fx_convert` and "How much is the total of order A-2077 in Japanese yen?")."""
    turn = _this_turn(messages)
    used = {_key(v) for m in turn if m.role == "assistant" for c in (m.tool_calls or []) for v in _leaves(c.arguments)}
    user_text = conversation_text(messages, ("user",))
    results = conversation_text(turn, ("tool",))
    for value in user_values(call, dict(parameters) if parameters else None):
        if isinstance(value, str) and len(value.split()) > 2:
            continue
        # two words as the user wrote them ("Q3 roadmap"), not two of the request's words put
        # together ("Order Placed" for "Who placed order A-1042?", a meeting nobody asked for)
        written = found_whole(value, user_text) if isinstance(value, str) and len(value.split()) == 2 else (
            grounded(value, user_text))
        if _key(value) not in used and written and not found_whole(value, results):
            return True
    return False


def asked_field(call: ToolCall, messages: Sequence[Message]) -> str | None:
    """The result field a call passes on whose name the request asks for (None: none): "Who placed
    order A-1042? I need their email address." after the customer's profile returned its "email",
    `schedule_meeting(attendee_email=...)` hands on what the user asked to be told. The chat model
    then takes the chain as done unless the request's words name the tool or the call brings a
    value of the user's."""
    request = next((m.content or "" for m in reversed(messages) if m.role == "user"), "").lower()
    words = set(re.findall(r"[a-z]+", request))
    for name, field, _ in returned_texts(call, messages):
        field_words = [w for w in re.findall(r"[a-z]+", field.lower()) if len(w) >= 4]
        if field_words and all(w in words for w in field_words):
            return field
    return None


def carries_text(call: ToolCall, messages: Sequence[Message], parameters: Mapping[str, Any] | None) -> bool:
    """Whether a next call carries a text (not a number) that this turn's tools returned and the
    user did not write: a ticker, a city, an id. A bare number a tool returned (an address's area
    code "330104") is no such evidence: any calculator takes one."""
    turn = _this_turn(messages)
    results = conversation_text(turn, ("tool",))
    user_text = conversation_text(messages, ("user",))
    return any(isinstance(v, str) and _number(v) is None and _carried(v, results, user_text)
               for v in user_values(call, dict(parameters) if parameters else None))


__all__ = ["MADE_UP", "MISFIT", "asked_field", "OTHER_KIND", "OTHER_RECORD", "REPEATED", "brings_user_value", "carries_text", "carry_result_fields",
           "follow_reference", "misfit_values", "kin_words", "next_call_fault", "other_tools_value",
           "returned_texts", "shaped_step", "unstated_values"]
