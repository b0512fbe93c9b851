"""Tool-call formats: the malformed-output corpus, fuzzing (parse never raises), round trips."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from raygent.llm_pool.formats import (
    HermesFormat,
    JSONRepairError,
    MSAgentFormat,
    NativeFormat,
    ParsedReply,
    ReActFormat,
    find_json_objects,
    get_format,
    loads_lenient,
)
from raygent.llm_pool.formats.common import CallShapeError, resolve_tool_name, to_tool_call
from raygent.schema import Message, ToolCall, ToolSpec

CORPUS = Path(__file__).parent / "data" / "malformed_outputs.jsonl"
ROWS: list[dict[str, Any]] = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


TOOLS = [
    ToolSpec(
        name="get_weather",
        description="Current weather for a city.",
        parameters=_obj({"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, ["city"]),
    ),
    ToolSpec(name="web_search", description="Search the web.", parameters=_obj({"query": {"type": "string"}}, ["query"])),
    ToolSpec(name="python", description="Run Python code.", parameters=_obj({"code": {"type": "string"}}, ["code"])),
    ToolSpec(name="get_time", description="The current time.", parameters=_obj({}, [])),
    ToolSpec(
        name="send_email",
        description="Send an email.",
        parameters=_obj(
            {"to": {"type": "array", "items": {"type": "string"}}, "subject": {"type": "string"}, "body": {"type": "string"}},
            ["to", "subject"],
        ),
    ),
    ToolSpec(name="modelscope_text-address", description="地址解析", parameters=_obj({"text": {"type": "string"}}, ["text"])),
]


def test_corpus_size_and_coverage() -> None:
    assert len(ROWS) >= 50
    assert {r["format"] for r in ROWS} == {"hermes", "msagent", "react"}
    assert sum(bool(r["expect"].get("error")) for r in ROWS) >= 8


@pytest.mark.parametrize("row", ROWS, ids=[f"{i}-{r['format']}-{r.get('note', '')}" for i, r in enumerate(ROWS)])
def test_corpus(row: dict[str, Any]) -> None:
    reply = get_format(row["format"]).parse(row["text"], TOOLS)
    expect = row["expect"]
    got = [{"name": c.name, "arguments": c.arguments} for c in reply.tool_calls]
    assert got == expect.get("calls", []), reply
    assert bool(reply.errors) == bool(expect.get("error")), reply
    if "text" in expect:
        assert reply.text == expect["text"]
    assert len({c.id for c in reply.tool_calls}) == len(reply.tool_calls)


def _fuzz_inputs(n: int = 400) -> list[str]:
    rng = random.Random(1234)
    texts = [r["text"] for r in ROWS]
    out: list[str] = []
    for _ in range(n):
        t = rng.choice(texts)
        kind = rng.randrange(5)
        if kind == 0:  # a slice of a corpus line
            a = rng.randrange(len(t) + 1)
            out.append(t[a : a + rng.randrange(1, 200)])
        elif kind == 1:  # random bytes decoded
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))).decode("utf-8", "replace"))
        elif kind == 2:  # characters shuffled
            chars = list(t)
            rng.shuffle(chars)
            out.append("".join(chars))
        elif kind == 3:  # splice of two lines
            u = rng.choice(texts)
            out.append(t[: rng.randrange(len(t) + 1)] + u[rng.randrange(len(u) + 1) :])
        else:  # structural characters soup
            out.append("".join(rng.choice('{}[]"\':,<>|`\n\\ 　｛｝：，“”abc1') for _ in range(rng.randrange(1, 120))))
    return out + ["", " ", "{" * 5000, "[" * 5000 + "]" * 5000, "<tool_call>" * 50, '"' * 301, "\\"]


@pytest.mark.parametrize("fmt", ["hermes", "msagent", "react", "native"])
def test_parse_never_raises(fmt: str) -> None:
    f = get_format(fmt)
    for text in _fuzz_inputs():
        for tools in (TOOLS, None):
            reply = f.parse(text, tools)
            assert isinstance(reply, ParsedReply)
            assert all(isinstance(c, ToolCall) and isinstance(c.arguments, dict) for c in reply.tool_calls)


def _conversation() -> list[Message]:
    calls = [
        ToolCall(name="get_weather", arguments={"city": "北京", "unit": "celsius"}),
        ToolCall(name="send_email", arguments={"to": ["a@x.org"], "subject": "Hi", "meta": {"n": [1, 2]}}),
    ]
    return [
        Message.system("You are helpful."),
        Message.user("Weather in Beijing, then mail it."),
        Message.assistant("I will look it up.", calls),
        Message(role="tool", content='{"temp": 21}', tool_call_id=calls[0].id, name="get_weather"),
        Message(role="tool", content="sent", tool_call_id=calls[1].id, name="send_email"),
        Message.assistant("It is 21°C; mail sent."),
    ]


@pytest.mark.parametrize("fmt", ["hermes", "msagent", "react"])
def test_round_trip(fmt: str) -> None:
    f = get_format(fmt)
    conv = _conversation()
    rendered = f.render_messages(conv, TOOLS)
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user", "assistant"]
    assert rendered[0]["content"].startswith("You are helpful.\n\n")
    assert f.render_tools(TOOLS) in rendered[0]["content"]
    assert all(isinstance(m["content"], str) for m in rendered)
    reply = f.parse(rendered[2]["content"], TOOLS)
    expected = conv[2].tool_calls or []
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [(c.name, c.arguments) for c in expected]
    assert reply.errors == []
    assert reply.text == "I will look it up."
    assert '{"temp": 21}' in rendered[3]["content"] and "sent" in rendered[3]["content"]
    final = f.parse(rendered[4]["content"], TOOLS)
    assert (final.text, final.tool_calls) == ("It is 21°C; mail sent.", [])


def test_hermes_rendering_matches_qwen_template() -> None:
    f = HermesFormat()
    section = f.render_tools(TOOLS[:1])
    assert section.startswith("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n")
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in section
    assert section.endswith('<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')
    rendered = f.render_messages([Message.user("hi"), *_conversation()[2:5]], TOOLS[:1])
    assert rendered[0] == {"role": "system", "content": section}  # created when missing
    assert rendered[3]["content"] == '<tool_response>\n{"temp": 21}\n</tool_response>\n<tool_response>\nsent\n</tool_response>'
    assert f.render_messages([Message.user("hi")], None) == [{"role": "user", "content": "hi"}]


def test_msagent_rendering() -> None:
    f = MSAgentFormat()
    assert f.stop == ["<|startofexec|>"]
    assert "<tool_list>" in f.render_tools(TOOLS) and "api_name" in f.render_tools(TOOLS)
    rendered = f.render_messages(_conversation(), TOOLS)
    assert rendered[2]["content"].startswith('I will look it up.\n<|startofthink|>```JSON\n{"api_name": "get_weather"')
    assert rendered[3]["content"].startswith('<|startofexec|>```JSON\n{"temp": 21}\n```<|endofexec|>\n<|startofexec|>')


def test_react_rendering() -> None:
    f = ReActFormat()
    assert f.stop == ["\nObservation:", "Observation:"]
    rendered = f.render_messages(_conversation(), TOOLS)
    assert rendered[2]["content"].startswith('Thought: I will look it up.\nAction: get_weather\nAction Input: {"city": "北京"')
    assert rendered[3]["content"] == 'Observation: {"temp": 21}\nObservation: sent'
    assert rendered[4]["content"] == "Final Answer: It is 21°C; mail sent."


def test_native_format() -> None:
    f = NativeFormat()
    conv = _conversation()
    assert f.render_tools(TOOLS) == ""
    assert f.render_messages(conv, TOOLS) == [m.to_openai() for m in conv]
    assert f.parse("<tool_call>{}</tool_call>", TOOLS) == ParsedReply(text="<tool_call>{}</tool_call>")


def test_get_format() -> None:
    assert isinstance(get_format("Hermes"), HermesFormat)
    f = ReActFormat()
    assert get_format(f) is f
    with pytest.raises(ValueError, match="native, hermes, msagent, react"):
        get_format("xml")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("```json\n{'a': 1, 'b': [1, 2,],}\n```", {"a": 1, "b": [1, 2]}),
        ('{a: True, b: None, // note\n c: "x"}', {"a": True, "b": None, "c": "x"}),
        ('Here you go: {"q": "x"} hope it helps', {"q": "x"}),
        ("｛“城市”：“北京，上海”｝", {"城市": "北京，上海"}),
        ('"{\\"a\\": 1}"', {"a": 1}),
        ("{'t': 'it's'}", {"t": "it's"}),
        ('{"t": "he said "hi" to me"}', {"t": 'he said "hi" to me'}),
        ("[Note] {'a': (1, 2)}", {"a": (1, 2)}),
        ('{"u": "\\u4f60\\ud83d\\ude00"}', {"u": "你😀"}),
        ("/* c */ {\"a\": -1.5e3, \"b\": +2}", {"a": -1500.0, "b": 2}),
    ],
)
def test_loads_lenient(text: str, value: Any) -> None:
    assert loads_lenient(text) == value


@pytest.mark.parametrize("text", ['{"a": {"b": [1, {"c": 2}]}', '{"a": "abc', '{"a": tru', "no json", "", "[" * 500])
def test_loads_lenient_errors(text: str) -> None:
    with pytest.raises(JSONRepairError):
        loads_lenient(text)
    assert issubclass(JSONRepairError, ValueError)


def test_truncation_message() -> None:
    with pytest.raises(JSONRepairError, match="truncated"):
        loads_lenient('{"name": "x", "arguments": {"q": "ab')


def test_find_json_objects() -> None:
    text = 'a {"x": 1} b {y: 2} c {bad bad} {"z": {"n": "}"}} {"cut": '
    assert [(v, text[s:e]) for v, s, e in find_json_objects(text)] == [
        ({"x": 1}, '{"x": 1}'),
        ({"y": 2}, "{y: 2}"),
        ({"z": {"n": "}"}}, '{"z": {"n": "}"}}'),
    ]


def test_tool_call_shapes_and_names() -> None:
    assert to_tool_call({"function": {"name": "web_search", "arguments": '{"query": "q"}'}, "id": "c1"}, TOOLS) == ToolCall(
        id="c1", name="web_search", arguments={"query": "q"}
    )
    assert to_tool_call({"action": "web-search", "action_input": "q"}, TOOLS).arguments == {"query": "q"}
    with pytest.raises(CallShapeError, match="no tool name"):
        to_tool_call({"arguments": {}}, TOOLS)
    assert resolve_tool_name("functions.GET-WEATHER", TOOLS) == "get_weather"
    ambiguous = [ToolSpec(name="a_b"), ToolSpec(name="A-B")]
    assert resolve_tool_name("a-b", ambiguous) == "a-b"  # two matches: kept as written
    assert resolve_tool_name("nope", TOOLS) == "nope"
