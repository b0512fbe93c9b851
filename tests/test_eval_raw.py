"""The raw baseline of `raygent eval bfcl --model embedded-raw`: its lenient reply parser, its prompt,
and one short case on the real embedded GGUF."""

from __future__ import annotations

import asyncio

import pytest

from raygent.evaluation.raw_model import RawLlamaChatModel, parse_raw_calls, template_messages
from raygent.schema import GenerationParams, Message, ToolCall


def calls_of(text):
    calls, errors = parse_raw_calls(text)
    return [(c.name, c.arguments) for c in calls], errors


# -- the lenient parser -----------------------------------------------------------------------------
def test_one_call():
    calls, errors = calls_of('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')
    assert calls == [("get_weather", {"city": "Paris"})] and errors == []


def test_two_calls_with_text_around():
    text = ('Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "unit": "celsius"}}\n</tool_call>')
    calls, _ = calls_of(text)
    assert calls == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome", "unit": "celsius"})]


def test_missing_closing_tag():
    calls, _ = calls_of('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}')
    assert calls == [("get_weather", {"city": "Paris"})]
    # the first block closed, the last one not
    calls, _ = calls_of('<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
                        '<tool_call>{"name": "b", "arguments": {"x": 1}}')
    assert calls == [("a", {}), ("b", {"x": 1})]


def test_bare_json_object():
    bare = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert calls_of(bare)[0] == [("get_weather", {"city": "Paris"})]
    fenced = '```json\n{\n  "name": "solve",\n  "arguments": {\n    "a": 2\n  }\n}\n```'
    assert calls_of(fenced)[0] == [("solve", {"a": 2})]
    assert calls_of('I will call it: {"name": "f", "arguments": "{\\"x\\": 1}"}')[0] == [("f", {"x": 1})]  # JSON text
    assert calls_of('{"function": {"name": "f", "arguments": {"x": 1}}}')[0] == [("f", {"x": 1})]  # nested


def test_prose_is_no_call():
    assert calls_of("Hamlet was written by William Shakespeare.") == ([], [])
    assert calls_of('The answer is {"city": "Paris"} in JSON.')[0] == []  # an object that is no call
    assert calls_of("")[0] == []


def test_malformed_json_is_no_call():
    calls, errors = calls_of('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par\n</tool_call>')
    assert calls == [] and len(errors) == 1 and "get_weather" in errors[0]
    calls, errors = calls_of('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Elsinore", "unit": "cel')
    assert calls == [] and errors  # cut off inside the arguments
    assert calls_of('{"name": "get_weather", "arguments": {"city": ')[0] == []
    assert calls_of('<tool_call>{"arguments": {"x": 1}}</tool_call>')[0] == []  # no name


def test_model_choice_and_threads():
    from raygent.evaluation.runner import ModelChoice, _thread_kwargs, model_choice

    for name in ("embedded-raw", "raw"):
        choice = model_choice(name)
        assert choice.cls is RawLlamaChatModel and choice.label == "embedded-raw" and choice.kwargs == {}
    # Ray workers get their share of the CPUs, as the llama.cpp models do
    assert _thread_kwargs(ModelChoice(RawLlamaChatModel), 3, 2, remote=True) == {"n_threads": 3}
    assert "n_threads" in _thread_kwargs(ModelChoice(RawLlamaChatModel), None, 1, remote=True)


def test_template_messages_and_pickling():
    import pickle

    msgs = [Message.system("Be brief."), Message.user("Weather?"),
            Message.assistant(tool_calls=[ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"})]),
            Message(role="tool", content="18 C", tool_call_id="c1")]
    out = template_messages(msgs)
    assert out[0] == {"role": "system", "content": "Be brief."}
    assert out[2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert out[3]["tool_call_id"] == "c1"
    model = pickle.loads(pickle.dumps(RawLlamaChatModel(n_threads=1)))  # unloaded: ships to a Ray actor
    assert model.n_threads == 1 and model.model_name == "qwen2.5-coder-0.5b-instruct+raw"


# -- the real embedded GGUF -------------------------------------------------------------------------
@pytest.mark.model
def test_raw_model_calls_a_tool_on_the_embedded_gguf():
    from raygent.evaluation.bfcl import case_from_entry
    from raygent.evaluation.runner import run_cases

    weather = {"name": "get_weather", "description": "Current weather of a city.",
               "parameters": {"type": "dict", "properties": {"city": {"type": "string", "description": "city name"}},
                              "required": ["city"]}}
    case = case_from_entry({"id": "simple_python_0", "function": [weather],
                            "question": [[{"role": "user", "content": "What is the weather in Paris?"}]]},
                           "simple_python", [{"get_weather": {"city": ["Paris", "Paris, France"]}}])
    llm = RawLlamaChatModel(n_threads=1)
    prompt = llm.render_prompt(case.messages, case.tools)
    # the model's own template wrote the tools and the hermes instructions; no raygent exemplars
    assert "<tools>" in prompt and '"name": "get_weather"' in prompt and "<tool_call>" in prompt
    assert "Examples:" not in prompt and prompt.endswith("<|im_start|>assistant\n")
    [record] = asyncio.run(run_cases([case], llm=llm, params=GenerationParams(max_tokens=64), progress=False))
    assert record["model"] == "qwen2.5-coder-0.5b-instruct+raw" and record["error_type"] != "model_error"
    assert record["calls"] and record["calls"][0]["name"] == "get_weather", record
    assert record["calls"][0]["arguments"]["city"].startswith("Paris")
