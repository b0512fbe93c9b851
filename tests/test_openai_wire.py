"""The OpenAI wire mapping, both directions, checked against the official SDK's own types."""

from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from raygent.llm_pool import openai_wire as w
from raygent.schema import Completion, Delta, GenerationParams, Message, ToolCall, ToolSpec, Usage

WEATHER = ToolSpec(name="weather", description="Weather for a city",
                   parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CLOCK = ToolSpec(name="clock", description="Current time")


def conversation() -> list[Message]:
    return [
        Message.system("be brief"),
        Message.user("天气 in Paris?"),
        Message.assistant("checking", tool_calls=[ToolCall(id="c1", name="weather", arguments={"city": "Paris"})]),
        Message(role="tool", tool_call_id="c1", name="weather", content='{"temp": 18}'),
        Message.assistant("18 degrees"),
    ]


# -- requests -------------------------------------------------------------------------------------
def test_to_request_shape():
    params = GenerationParams(temperature=0.3, max_tokens=64, stop=["END"], tool_choice="weather", seed=None)
    body = w.to_request(conversation(), [WEATHER, CLOCK], params, model="m", stream=True)
    assert body["model"] == "m" and body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.3 and body["max_tokens"] == 64 and body["stop"] == ["END"]
    assert "seed" not in body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert [t["function"]["name"] for t in body["tools"]] == ["weather", "clock"]
    call_msg = body["messages"][2]
    assert call_msg["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city": "Paris"}'}
    assert body["messages"][3] == {"role": "tool", "content": '{"temp": 18}', "name": "weather", "tool_call_id": "c1"}
    json.dumps(body)  # serialisable as is


def test_to_request_without_tools_has_no_tool_fields():
    body = w.to_request([Message.user("hi")], None, GenerationParams(), model="m")
    assert "tools" not in body and "tool_choice" not in body and "stream" not in body
    assert body["seed"] == 0


def test_call_only_assistant_message_has_null_content():
    msg = Message.assistant(tool_calls=[ToolCall(id="x", name="clock")])
    assert w.messages_to_openai([msg])[0]["content"] is None


def test_request_round_trip():
    params = GenerationParams(temperature=0.7, top_p=0.9, max_tokens=100, stop=["\n\n"], seed=7,
                              tool_choice="required")
    body = w.to_request(conversation(), [WEATHER, CLOCK], params, model="qwen", stream=True)
    req = w.from_request(json.loads(json.dumps(body)))
    assert req.model == "qwen" and req.stream and req.include_usage
    assert req.params == params
    assert req.tools == [WEATHER, CLOCK]
    original = conversation()
    assert [m.role for m in req.messages] == [m.role for m in original]
    assert req.messages[2].tool_calls == original[2].tool_calls
    assert req.messages[3].tool_call_id == "c1" and req.messages[3].content == '{"temp": 18}'


def test_from_request_openai_variants():
    body = {
        "model": "x",
        "messages": [
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image_url", "image_url": {"url": "https://h/i.png"}}]},
            {"role": "assistant", "content": None,
             "function_call": {"name": "clock", "arguments": ""}},
            {"role": "function", "name": "clock", "content": "12:00"},
        ],
        "functions": [{"name": "clock", "description": "time"}],
        "function_call": {"name": "clock"},
        "max_completion_tokens": 9, "max_tokens": 99, "stop": "X",
    }
    req = w.from_request(body, defaults=GenerationParams(temperature=0.5))
    assert req.messages[0].role == "system"
    assert req.messages[1].content == "look" and req.messages[1].artifacts[0].uri == "https://h/i.png"
    assert req.messages[2].tool_calls[0].name == "clock" and req.messages[2].tool_calls[0].arguments == {}
    assert req.messages[3].role == "tool"
    assert req.params.max_tokens == 9 and req.params.stop == ["X"] and req.params.temperature == 0.5
    assert req.params.tool_choice == "clock" and req.tools[0].name == "clock"
    assert not req.stream and not req.include_usage


@pytest.mark.parametrize(("body", "param"), [
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "user", "content": [{"type": "video", "v": 1}]}]}, "messages[0].content[0].type"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "type": "function",
                                                          "function": {"name": "f", "arguments": "[1, 2"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER.to_openai()],
      "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "retrieval"}]}, "tools[0].type"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER.to_openai(), WEATHER.to_openai()]}, "tools"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
])
def test_from_request_rejects_bad_input_with_openai_error(body, param):
    with pytest.raises(w.WireError) as info:
        w.from_request(body)
    err = info.value
    assert err.status == 400 and err.param == param
    out = err.body()
    assert set(out["error"]) == {"message", "type", "param", "code"}
    assert out["error"]["type"] == "invalid_request_error" and out["error"]["message"]


def test_from_request_rejects_non_object():
    with pytest.raises(w.WireError, match="JSON object"):
        w.from_request([1, 2])


def test_error_body_types():
    assert w.error_body("bad key", status=401)["error"]["type"] == "authentication_error"
    assert w.error_body("slow down", status=429, code="rate_limit_exceeded") == {
        "error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}}
    assert w.error_type_for_status(500) == "server_error"
    assert w.error_type_for_status(503) == "service_unavailable_error"


def test_error_response_for_exceptions():
    from raygent.llm_pool.errors import BackendAuthError, BackendConnectionError, BackendRateLimitError

    status, body = w.error_response(w.WireError("bad", param="stop"))
    assert status == 400 and body["error"]["param"] == "stop"
    assert w.error_response(BackendRateLimitError("slow"))[0] == 429
    status, body = w.error_response(BackendAuthError("no key", url="http://x"))
    assert status == 401 and body["error"]["type"] == "authentication_error"
    assert body["error"]["code"] == "BackendAuthError"
    assert w.error_response(BackendConnectionError("down"))[1]["error"]["type"] == "service_unavailable_error"
    assert w.error_response(ValueError("prompt too long"))[0] == 400
    status, body = w.error_response(RuntimeError("boom"))
    assert status == 500 and body["error"]["message"] == "RuntimeError: boom"


# -- whole responses --------------------------------------------------------------------------------
def test_completion_to_response_tool_calls_validates_with_sdk():
    c = Completion(text="", tool_calls=[ToolCall(id="c9", name="weather", arguments={"city": "北京"})],
                   finish_reason="tool_calls", usage=Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15,
                                                           cached_prompt_tokens=4), model="qwen")
    body = w.completion_to_response(c, id="chatcmpl-1", created=5)
    sdk = ChatCompletion.model_validate(body)
    assert sdk.choices[0].finish_reason == "tool_calls"
    assert sdk.choices[0].message.content is None
    call = sdk.choices[0].message.tool_calls[0]
    assert call.id == "c9" and json.loads(call.function.arguments) == {"city": "北京"}
    assert sdk.usage.total_tokens == 15 and sdk.usage.prompt_tokens_details.cached_tokens == 4
    assert w.completion_from_response(sdk) == c.model_copy(update={"raw": ""})


@pytest.mark.parametrize("reason", ["stop", "length"])
def test_completion_text_round_trip(reason):
    c = Completion(text="hello", finish_reason=reason, model="m", raw="hello",
                   usage=Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3))
    body = w.completion_to_response(c)
    assert ChatCompletion.model_validate(body).choices[0].finish_reason == reason
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert w.completion_from_response(body) == c


def test_error_finish_and_parse_errors_travel_as_extension():
    c = Completion(text="oops", finish_reason="error", parse_errors=["bad call"])
    body = w.completion_to_response(c, model="m")
    assert body["choices"][0]["finish_reason"] == "stop" and body["raygent"]["parse_errors"] == ["bad call"]
    assert w.completion_from_response(body).parse_errors == ["bad call"]


def test_completion_from_response_bad_arguments_become_parse_errors():
    body = {"model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Rome\"}"}},
            {"id": "b", "type": "function", "function": {"name": "clock", "arguments": "[1, 2, 3]"}}]}}]}
    c = w.completion_from_response(body, [WEATHER, CLOCK])
    assert [t.name for t in c.tool_calls] == ["weather"] and c.finish_reason == "tool_calls"
    assert len(c.parse_errors) == 1 and "clock" in c.parse_errors[0]
    with pytest.raises(w.WireError, match="no choices"):
        w.completion_from_response({"choices": []})


def test_lenient_arguments_are_repaired():
    body = {"choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "tool_calls": [
        {"id": "a", "function": {"name": "weather", "arguments": "{'city': 'Rome',}"}}]}}]}
    assert w.completion_from_response(body, [WEATHER]).tool_calls[0].arguments == {"city": "Rome"}


# -- streams ----------------------------------------------------------------------------------------
def test_encoder_chunk_sequence_validates_with_sdk():
    enc = w.ChunkEncoder("m", id="chatcmpl-s", created=1, include_usage=True)
    chunks = enc.start()
    chunks += enc.encode(Delta(text="Hel"))
    chunks += enc.encode(Delta(text="lo"))
    calls = [ToolCall(id="c1", name="weather", arguments={"city": "Oslo"}), ToolCall(id="c2", name="clock")]
    chunks += enc.encode(Delta(text="thinking", tool_calls=calls, finish_reason="tool_calls",
                               usage=Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)))
    sdk = [ChatCompletionChunk.model_validate(c) for c in chunks]
    assert sdk[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in sdk[1:4]] == ["Hel", "lo", "thinking"]
    headers = [c.choices[0].delta.tool_calls[0] for c in sdk[4:8]]
    assert [(h.index, h.id) for h in headers] == [(0, "c1"), (0, None), (1, "c2"), (1, None)]
    assert headers[0].function.name == "weather" and headers[1].function.arguments == '{"city": "Oslo"}'
    assert sdk[-2].choices[0].finish_reason == "tool_calls" and sdk[-2].usage is None
    assert sdk[-1].choices == [] and sdk[-1].usage.total_tokens == 7
    assert all(c.id == "chatcmpl-s" for c in sdk)
    with pytest.raises(ValueError):
        enc.encode(Delta(text="late"))


def test_encoder_without_usage_has_no_usage_key():
    enc = w.ChunkEncoder("m")
    chunks = enc.start() + enc.encode(Delta(text="a", finish_reason="length"))
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_stream_round_trip_preserves_text_calls_reason_usage():
    usage = Usage(prompt_tokens=5, completion_tokens=6, total_tokens=11)
    calls = [ToolCall(id="c1", name="weather", arguments={"city": "Oslo"})]
    deltas = [Delta(text="a"), Delta(text="b"),
              Delta(text="t", tool_calls=calls, finish_reason="tool_calls", usage=usage)]
    enc = w.ChunkEncoder("m", include_usage=True)
    chunks = enc.start() + [c for d in deltas for c in enc.encode(d)]
    wire = [json.loads(w.sse_event(c)[len(b"data: "):]) for c in chunks]
    dec = w.ChunkDecoder([WEATHER])
    out = [d for d in (dec.feed(c) for c in wire) if d is not None]
    assert [d.text for d in out] == ["a", "b", "t"]
    final = dec.finish()
    assert final.tool_calls == calls and final.finish_reason == "tool_calls" and final.usage == usage
    c = dec.completion()
    assert c.text == "abt" and c.model == "m"


def test_decoder_joins_argument_fragments_across_chunks():
    """What real servers send: a header per call, then argument text split at arbitrary points."""
    def chunk(delta, finish=None):
        return {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "gpt",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    args0 = json.dumps({"city": "São Paulo"}, ensure_ascii=False)
    pieces = [args0[:3], args0[3:9], args0[9:]]
    chunks = [chunk({"role": "assistant", "content": None}),
              chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                     "function": {"name": "weather", "arguments": ""}}]}),
              *[chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces],
              chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                     "function": {"name": "clock", "arguments": "{}"}}]}),
              chunk({}, "tool_calls"),
              {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "gpt", "choices": [],
               "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}}]
    for c in chunks:
        ChatCompletionChunk.model_validate(c)
    c = w.accumulate_chunks(chunks, [WEATHER, CLOCK])
    assert [(t.id, t.name, t.arguments) for t in c.tool_calls] == [("call_a", "weather", {"city": "São Paulo"}),
                                                                   ("call_b", "clock", {})]
    assert c.finish_reason == "tool_calls" and c.usage.total_tokens == 5 and c.text == ""
    # also from SDK objects
    sdk_chunks = [ChatCompletionChunk.model_validate(x) for x in chunks]
    assert w.accumulate_chunks(sdk_chunks, [WEATHER, CLOCK]).tool_calls == c.tool_calls


def test_decoder_truncated_arguments_become_parse_error():
    chunks = [{"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "a", "function": {"name": "weather", "arguments": "[\"Rom"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}]
    c = w.accumulate_chunks(chunks, [WEATHER])
    assert c.tool_calls == [] and c.finish_reason == "length" and c.parse_errors


def test_decoder_raises_on_mid_stream_error():
    dec = w.ChunkDecoder()
    with pytest.raises(w.WireError, match="overloaded"):
        dec.feed({"error": {"message": "overloaded", "type": "server_error"}})


async def test_async_encode_and_decode_stream():
    async def deltas():
        yield Delta(text="x")
        yield Delta(text="y")  # no final delta: the encoder closes with "stop"

    chunks = [c async for c in w.encode_stream(deltas(), "m", include_usage=True)]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["total_tokens"] == 0

    async def replay():
        for c in chunks:
            yield c

    out = [d async for d in w.decode_stream(replay())]
    assert [d.text for d in out[:-1]] == ["x", "y"] and out[-1].finish_reason == "stop"


def test_sse_framing():
    event = w.sse_event({"a": "é"})
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    assert json.loads(event[6:]) == {"a": "é"}
    assert w.SSE_DONE == b"data: [DONE]\n\n"


def test_models_response_and_sse_error_event_validate_with_sdk():
    from openai.types import Model

    body = w.models_response(["qwen", "tiny"], created=7)
    assert [Model.model_validate(m).id for m in body["data"]] == ["qwen", "tiny"] and body["object"] == "list"
    from raygent.llm_pool.errors import BackendServerError

    event = w.sse_error_event(BackendServerError("replica died"))
    payload = json.loads(event[len(b"data: "):])
    assert payload["error"]["message"] == "replica died" and payload["error"]["type"] == "server_error"
    with pytest.raises(w.WireError, match="replica died"):
        w.ChunkDecoder().feed(payload)
