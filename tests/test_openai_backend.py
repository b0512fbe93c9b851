"""OpenAICompatibleChatModel: the official openai SDK, unmodified, against a local server on 127.0.0.1
that answers in the real chat-completions wire format (JSON, SSE chunks, error bodies)."""

from __future__ import annotations

import json
import socket

import pytest
from wire_servers import Reply, ScriptedHTTPServer, openai_chunk, openai_completion, openai_error

from raygent.llm_pool.errors import (
    BackendAuthError,
    BackendConfigError,
    BackendConnectionError,
    BackendRateLimitError,
    BackendRequestError,
    BackendServerError,
)
from raygent.llm_pool.openai_backend import OpenAICompatibleChatModel
from raygent.schema import GenerationParams, Message, ToolCall, ToolSpec

WEATHER = ToolSpec(name="weather", description="Weather for a city",
                   parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


@pytest.fixture()
def server():
    s = ScriptedHTTPServer()
    yield s
    s.close()


def model(server: ScriptedHTTPServer, **kw) -> OpenAICompatibleChatModel:
    kw.setdefault("max_retries", 0)
    return OpenAICompatibleChatModel("served-model", base_url=server.url + "/v1", api_key="sk-test", **kw)


async def test_chat_text_and_request_shape(server):
    server.add(Reply(body=openai_completion("Bonjour!")))
    llm = model(server, headers={"X-Route": "blue"}, extra_body={"top_k": 5})
    c = await llm.chat([Message.system("be nice"), Message.user("hi")], None,
                       GenerationParams(temperature=0.2, max_tokens=32, stop=["END"], seed=3))
    assert c.text == "Bonjour!" and c.finish_reason == "stop" and c.tool_calls == []
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (7, 3, 10)
    assert c.model == "served-model"
    req = server.requests[0]
    assert req.method == "POST" and req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test" and req.headers["x-route"] == "blue"
    assert req.body["model"] == "served-model" and req.body["top_k"] == 5
    assert req.body["messages"] == [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]
    body = req.body
    assert (body["temperature"], body["max_tokens"], body["stop"], body["seed"]) == (0.2, 32, ["END"], 3)
    assert "tools" not in req.body and "stream" not in req.body


async def test_chat_native_tools_and_history(server):
    server.add(Reply(body=openai_completion(None, [{"id": "call_1", "type": "function", "function": {
        "name": "weather", "arguments": json.dumps({"city": "杭州"}, ensure_ascii=False)}}])))
    history = [Message.user("weather?"),
               Message.assistant(tool_calls=[ToolCall(id="c0", name="weather", arguments={"city": "Rome"})]),
               Message(role="tool", tool_call_id="c0", name="weather", content="sunny"),
               Message.user("and 杭州?")]
    c = await model(server).chat(history, [WEATHER], {"tool_choice": "required"})
    assert c.finish_reason == "tool_calls"
    assert [(t.id, t.name, t.arguments) for t in c.tool_calls] == [("call_1", "weather", {"city": "杭州"})]
    body = server.requests[0].body
    assert body["tools"] == [WEATHER.to_openai()] and body["tool_choice"] == "required"
    assert body["messages"][1]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city": "Rome"}'}
    assert body["messages"][2]["role"] == "tool" and body["messages"][2]["tool_call_id"] == "c0"


async def test_named_tool_choice_is_sent_as_function_object(server):
    server.add(Reply(body=openai_completion(None, [{"id": "c", "type": "function",
                                                     "function": {"name": "weather", "arguments": "{}"}}])))
    await model(server).chat([Message.user("x")], [WEATHER], {"tool_choice": "weather"})
    assert server.requests[0].body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}


async def test_stream_text_deltas_and_usage(server):
    server.add(Reply(events=[openai_chunk({"role": "assistant", "content": ""}),
                             openai_chunk({"content": "Hel"}), openai_chunk({"content": "lo"}),
                             openai_chunk({}, "stop"), openai_chunk(None, usage=(4, 2)), "data: [DONE]"]))
    deltas = [d async for d in model(server).stream([Message.user("hi")])]
    assert [d.text for d in deltas[:-1]] == ["Hel", "lo"]
    final = deltas[-1]
    assert final.finish_reason == "stop" and final.usage.total_tokens == 6 and final.tool_calls == []
    body = server.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_stream_tool_call_deltas_split_across_chunks(server):
    args = json.dumps({"city": "San Francisco"})
    server.add(Reply(events=[
        openai_chunk({"role": "assistant", "content": None}),
        openai_chunk({"content": "Let me check. "}),
        openai_chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                      "function": {"name": "weather", "arguments": ""}}]}),
        *[openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 4]}}]})
          for i in range(0, len(args), 4)],
        openai_chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                      "function": {"name": "weather", "arguments": '{"city":'}}]}),
        openai_chunk({"tool_calls": [{"index": 1, "function": {"arguments": ' "Oslo"}'}}]}),
        openai_chunk({}, "tool_calls"),
        openai_chunk(None, usage=(20, 15)),
        "data: [DONE]"]))
    deltas = [d async for d in model(server).stream([Message.user("weather in SF and Oslo")], [WEATHER])]
    assert [d.text for d in deltas[:-1]] == ["Let me check. "]
    final = deltas[-1]
    assert final.finish_reason == "tool_calls" and final.usage.total_tokens == 35
    assert [(c.id, c.arguments) for c in final.tool_calls] == [("call_a", {"city": "San Francisco"}),
                                                               ("call_b", {"city": "Oslo"})]


async def test_stream_without_usage_option(server):
    server.add(Reply(events=[openai_chunk({"content": "ok"}), openai_chunk({}, "length"), "data: [DONE]"]))
    deltas = [d async for d in model(server, stream_usage=False).stream([Message.user("hi")])]
    assert deltas[-1].finish_reason == "length" and "stream_options" not in server.requests[0].body


async def test_text_format_for_servers_without_native_tools(server):
    reply = '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    server.add(Reply(body=openai_completion(reply)))
    llm = model(server, format="hermes")
    history = [Message.user("weather in Rome?"),
               Message.assistant(tool_calls=[ToolCall(id="c0", name="weather", arguments={"city": "Rome"})]),
               Message(role="tool", tool_call_id="c0", name="weather", content="sunny"),
               Message.user("and Paris?")]
    c = await llm.chat(history, [WEATHER])
    assert c.finish_reason == "tool_calls" and c.tool_calls[0].arguments == {"city": "Paris"} and c.raw == reply
    body = server.requests[0].body
    assert "tools" not in body and "<tool_response>" in body["stop"]
    assert all(set(m) == {"role", "content"} for m in body["messages"])  # plain turns only
    assert "<tools>" in body["messages"][0]["content"] and '"name": "weather"' in body["messages"][0]["content"]
    assert "<tool_call>" in body["messages"][2]["content"] and "<tool_response>" in body["messages"][3]["content"]


async def test_text_format_stream_holds_back_a_call_and_streams_an_answer(server):
    call = '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    server.add(Reply(events=[openai_chunk({"content": call[:10]}), openai_chunk({"content": call[10:]}),
                             openai_chunk({}, "stop"), "data: [DONE]"]),
               Reply(events=[openai_chunk({"content": "It is "}), openai_chunk({"content": "sunny."}),
                             openai_chunk({}, "stop"), "data: [DONE]"]))
    llm = model(server, format="hermes")
    deltas = [d async for d in llm.stream([Message.user("weather in Paris?")], [WEATHER])]
    assert len(deltas) == 1 and deltas[0].tool_calls[0].arguments == {"city": "Paris"}
    assert deltas[0].finish_reason == "tool_calls"
    deltas = [d async for d in llm.stream([Message.user("weather in Paris?")], [WEATHER])]
    assert [d.text for d in deltas] == ["It is ", "sunny.", ""] and deltas[-1].finish_reason == "stop"


@pytest.mark.parametrize(("status", "body", "error", "needles"), [
    (401, openai_error("Incorrect API key provided: sk-test", "invalid_request_error", "invalid_api_key"),
     BackendAuthError, ["HTTP 401", "Incorrect API key", "OPENAI_API_KEY"]),
    (429, openai_error("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
     BackendRateLimitError, ["HTTP 429", "quota"]),
    (500, openai_error("The server had an error", "server_error"), BackendServerError, ["HTTP 500", "server's logs"]),
    (404, openai_error("The model `served-model` does not exist", "invalid_request_error", "model_not_found"),
     BackendRequestError, ["served-model", "/v1"]),
    (400, openai_error("tools is not supported by this model", "invalid_request_error"), BackendRequestError,
     ["format='hermes'"]),
])
async def test_http_errors_map_to_clear_backend_errors(server, status, body, error, needles):
    server.add(Reply(status, body))
    with pytest.raises(error) as info:
        await model(server).chat([Message.user("hi")], [WEATHER])
    text = str(info.value)
    assert server.url in text and all(n in text for n in needles), text
    assert info.value.url == server.url + "/v1"


async def test_stream_error_before_first_chunk(server):
    server.add(Reply(401, openai_error("bad key", "invalid_request_error", "invalid_api_key")))
    with pytest.raises(BackendAuthError, match="bad key"):
        [d async for d in model(server).stream([Message.user("hi")])]


async def test_sdk_retries_a_500_then_succeeds(server):
    server.add(Reply(500, openai_error("flaky", "server_error")), Reply(body=openai_completion("fine")))
    c = await model(server, max_retries=1).chat([Message.user("hi")])
    assert c.text == "fine" and len(server.requests) == 2


async def test_connection_refused_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    llm = OpenAICompatibleChatModel("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout=5)
    with pytest.raises(BackendConnectionError, match=f"cannot connect to http://127.0.0.1:{port}/v1"):
        await llm.chat([Message.user("hi")])


async def test_timeout_is_a_connection_error(server):
    server.add(Reply(body=openai_completion("late"), delay_s=1.5))
    with pytest.raises(BackendConnectionError, match="within 0.3 s"):
        await model(server, timeout=0.3).chat([Message.user("hi")])


async def test_garbage_response_is_a_server_error(server):
    server.add(Reply(body={"object": "chat.completion", "choices": []}))
    with pytest.raises(BackendServerError, match="not an OpenAI chat completion"):
        await model(server).chat([Message.user("hi")])


def test_missing_key_for_a_remote_server_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = OpenAICompatibleChatModel("gpt-4o-mini", base_url="https://api.example.com/v1")
    with pytest.raises(BackendConfigError, match="OPENAI_API_KEY"):
        llm.api_key()
    assert OpenAICompatibleChatModel("m", base_url="http://localhost:8000/v1").api_key() == "EMPTY"
    monkeypatch.setenv("MY_KEY", "k1")
    assert OpenAICompatibleChatModel("m", base_url="https://x/v1", api_key_env="MY_KEY").api_key() == "k1"
    with pytest.raises(BackendConfigError, match="needs `model`"):
        OpenAICompatibleChatModel("")


@pytest.mark.ray
async def test_as_a_ray_actor(server, ray_cluster):
    from raygent import runtime

    server.add(Reply(body=openai_completion("from actor")),
               Reply(events=[openai_chunk({"content": "stre"}), openai_chunk({"content": "amed"}),
                             openai_chunk({}, "stop"), "data: [DONE]"]))
    llm = runtime.deploy(OpenAICompatibleChatModel, "served-model", remote=True,
                         init_kwargs={"base_url": server.url + "/v1", "max_retries": 0})
    try:
        assert (await llm.chat([Message.user("hi")])).text == "from actor"
        deltas = [d async for d in llm.stream([Message.user("hi")])]
        assert "".join(d.text for d in deltas) == "streamed" and deltas[-1].finish_reason == "stop"
        assert await llm.get_model_name() == "served-model"
    finally:
        runtime.kill(llm)


async def test_agent_runs_tools_through_the_openai_backend(server):
    """The agent loop over the real SDK: a streamed tool call, the real calculator, then a streamed answer."""
    from raygent import Agent
    from raygent.toolhub.builtin import default_tools

    server.add(
        Reply(events=[openai_chunk({"role": "assistant", "content": None}),
                      openai_chunk({"tool_calls": [{"index": 0, "id": "call_c", "type": "function",
                                                    "function": {"name": "calculator", "arguments": ""}}]}),
                      openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"expression": '}}]}),
                      openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"330104 % 1000"}'}}]}),
                      openai_chunk({}, "tool_calls"), openai_chunk(None, usage=(50, 12)), "data: [DONE]"]),
        Reply(events=[openai_chunk({"content": "The remainder "}), openai_chunk({"content": "is 104."}),
                      openai_chunk({}, "stop"), openai_chunk(None, usage=(80, 6)), "data: [DONE]"]))
    events = [e async for e in Agent(llm=model(server), tools=default_tools()).stream("What is 330104 mod 1000?")]
    assert [e.text for e in events if e.type == "answer_delta"] == ["The remainder ", "is 104."]
    assert [e.tool_call.name for e in events if e.type == "tool_call"] == ["calculator"]
    result = events[-1].result
    assert server.requests[0].body["stream"] is True
    assert result.answer == "The remainder is 104." and result.stop_reason == "answer"
    assert [(c.name, c.arguments, c.result["result"]) for c in result.tool_calls] == [
        ("calculator", {"expression": "330104 % 1000"}, 104)]
    assert result.usage.total_tokens == 62 + 86
    second = server.requests[1].body["messages"]
    assert second[-2]["tool_calls"][0]["id"] == "call_c"  # the call went back in OpenAI's shape
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "call_c" and "104" in second[-1]["content"]
    assert [t["function"]["name"] for t in server.requests[0].body["tools"]] == [t.name for t in default_tools()]


async def test_native_mode_reads_unparsed_tool_call_tags(server):
    """Servers that render tools into the template but return the model's text as is (llama.cpp server,
    vLLM without a tool parser): `<tool_call>` content becomes a call (text_fallback, on by default)."""
    tagged = '<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    server.add(Reply(body=openai_completion(tagged)),
               Reply(events=[openai_chunk({"content": "<tool"}), openai_chunk({"content": tagged[5:]}),
                             openai_chunk({}, "stop"), "data: [DONE]"]),
               Reply(body=openai_completion(tagged)))
    c = await model(server).chat([Message.user("Oslo?")], [WEATHER])
    assert c.finish_reason == "tool_calls" and c.tool_calls[0].arguments == {"city": "Oslo"} and c.text == ""
    assert server.requests[0].body["tools"]  # tools were still sent natively
    deltas = [d async for d in model(server).stream([Message.user("Oslo?")], [WEATHER])]
    assert len(deltas) == 1 and deltas[0].tool_calls[0].arguments == {"city": "Oslo"}
    plain = await model(server, text_fallback=False).chat([Message.user("Oslo?")], [WEATHER])
    assert plain.tool_calls == [] and plain.text == tagged


async def test_error_event_mid_stream(server):
    from raygent.llm_pool import openai_wire as wire

    error = wire.sse_error_event(BackendServerError("the replica died")).decode().strip()
    server.add(Reply(events=[openai_chunk({"content": "par"}), error]))
    seen = []
    with pytest.raises(BackendServerError, match="mid-stream: the replica died"):
        async for d in model(server).stream([Message.user("hi")]):
            seen.append(d.text)
    assert seen == ["par"]
