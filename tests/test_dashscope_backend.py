"""DashScopeChatModel: the official dashscope SDK, unmodified, against a local server on 127.0.0.1 that
speaks DashScope's native protocol (text-generation endpoint, X-DashScope-SSE events, error codes)."""

from __future__ import annotations

import json

import pytest
from wire_servers import (
    DASHSCOPE_PATH,
    Reply,
    ScriptedHTTPServer,
    dashscope_error,
    dashscope_error_event,
    dashscope_event,
    dashscope_output,
)

from raygent.llm_pool.dashscope_backend import DashScopeChatModel
from raygent.llm_pool.errors import (
    BackendAuthError,
    BackendConfigError,
    BackendConnectionError,
    BackendRateLimitError,
    BackendRequestError,
    BackendServerError,
)
from raygent.schema import GenerationParams, Message, ToolCall, ToolSpec

WEATHER = ToolSpec(name="get_current_weather", description="Weather in a city",
                   parameters={"type": "object", "properties": {"location": {"type": "string"}},
                               "required": ["location"]})


@pytest.fixture(scope="module", autouse=True)
async def _close_sdk_session():
    yield
    await DashScopeChatModel("qwen-plus", api_key="k").aclose()


@pytest.fixture()
def server():
    s = ScriptedHTTPServer(error_body=dashscope_error("InternalError", "no scripted reply left"))
    yield s
    s.close()


def model(server, **kw) -> DashScopeChatModel:
    return DashScopeChatModel("qwen-plus", api_key="sk-ds-test", base_url=server.url + "/api/v1", **kw)


async def test_chat_request_shape_and_text_reply(server):
    server.add(Reply(body=dashscope_output("你好！我是通义千问。")))
    c = await model(server).chat([Message.system("简洁"), Message.user("你好")], None,
                                 GenerationParams(temperature=0.5, top_p=0.8, max_tokens=64, seed=123, stop=["。"]))
    assert c.text == "你好！我是通义千问。" and c.finish_reason == "stop" and c.tool_calls == []
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (12, 5, 17)
    req = server.requests[0]
    assert req.path == DASHSCOPE_PATH and req.headers["authorization"] == "Bearer sk-ds-test"
    assert "x-dashscope-sse" not in req.headers
    assert req.body["model"] == "qwen-plus"
    assert req.body["input"]["messages"] == [{"role": "system", "content": "简洁"}, {"role": "user", "content": "你好"}]
    params = req.body["parameters"]
    assert params["result_format"] == "message" and params["seed"] == 123 and params["stop"] == ["。"]
    assert (params["temperature"], params["top_p"], params["max_tokens"]) == (0.5, 0.8, 64)
    assert "tools" not in params and "base_address" not in params and "request_timeout" not in params


async def test_chat_with_tools_and_tool_history(server):
    server.add(Reply(body=dashscope_output("", [{"id": "call_7", "type": "function", "function": {
        "name": "get_current_weather", "arguments": "{\"location\": \"杭州\"}"}}], finish="tool_calls")))
    history = [Message.user("北京天气?"),
               Message.assistant(tool_calls=[ToolCall(id="call_1", name="get_current_weather",
                                                      arguments={"location": "北京"})]),
               Message(role="tool", tool_call_id="call_1", name="get_current_weather", content="晴"),
               Message.user("杭州呢?")]
    c = await model(server).chat(history, [WEATHER], {"tool_choice": "required"})
    assert c.finish_reason == "tool_calls"
    assert [(t.id, t.name, t.arguments) for t in c.tool_calls] == [("call_7", "get_current_weather",
                                                                    {"location": "杭州"})]
    params = server.requests[0].body["parameters"]
    assert params["tools"] == [WEATHER.to_openai()]
    # "required" with one tool is sent as that function (DashScope has no "required")
    assert params["tool_choice"] == {"type": "function", "function": {"name": "get_current_weather"}}
    msgs = server.requests[0].body["input"]["messages"]
    assert msgs[1]["content"] == "" and msgs[1]["tool_calls"][0]["function"]["arguments"] == '{"location": "北京"}'
    assert msgs[2] == {"role": "tool", "content": "晴", "name": "get_current_weather", "tool_call_id": "call_1"}


async def test_incremental_stream_of_text(server):
    server.add(Reply(events=[dashscope_event(1, "你"), dashscope_event(2, "好"),
                             dashscope_event(3, "！", finish="stop", usage=(12, 3))]))
    deltas = [d async for d in model(server).stream([Message.user("hi")])]
    assert [d.text for d in deltas[:-1]] == ["你", "好", "！"]
    assert deltas[-1].finish_reason == "stop" and deltas[-1].usage.total_tokens == 15
    req = server.requests[0]
    assert req.headers["x-dashscope-sse"] == "enable" and req.headers["accept"] == "text/event-stream"
    assert req.body["parameters"]["incremental_output"] is True


async def test_stream_tool_call_fragments(server):
    server.add(Reply(events=[
        dashscope_event(1, "", [{"index": 0, "id": "call_x", "type": "function",
                                 "function": {"name": "get_current_weather", "arguments": "{\"location\":"}}]),
        dashscope_event(2, "", [{"index": 0, "id": "", "type": "function", "function": {"arguments": " \"杭"}}]),
        dashscope_event(3, "", [{"index": 0, "id": "", "type": "function", "function": {"arguments": "州\"}"}}]),
        dashscope_event(4, "", finish="tool_calls", usage=(30, 9))]))
    deltas = [d async for d in model(server).stream([Message.user("杭州天气")], [WEATHER])]
    assert len(deltas) == 1
    final = deltas[0]
    assert final.finish_reason == "tool_calls" and final.usage.total_tokens == 39
    assert [(c.id, c.arguments) for c in final.tool_calls] == [("call_x", {"location": "杭州"})]
    assert server.requests[0].body["parameters"]["tool_choice"] == "auto"


@pytest.mark.parametrize(("status", "code", "error", "needles"), [
    (401, "InvalidApiKey", BackendAuthError, ["HTTP 401 InvalidApiKey", "DASHSCOPE_API_KEY", "req-test-err"]),
    (429, "Throttling.RateQuota", BackendRateLimitError, ["rate limiting", "Throttling.RateQuota"]),
    (400, "DataInspectionFailed", BackendRequestError, ["DataInspectionFailed", "qwen-plus"]),
    (500, "InternalError", BackendServerError, ["HTTP 500 InternalError"]),
])
async def test_error_codes_map_to_backend_errors(server, status, code, error, needles):
    server.add(Reply(status, dashscope_error(code, "something went wrong")))
    with pytest.raises(error) as info:
        await model(server).chat([Message.user("hi")])
    text = str(info.value)
    assert server.url in text and "something went wrong" in text and all(n in text for n in needles), text


async def test_error_event_mid_stream(server):
    server.add(Reply(events=[dashscope_event(1, "部分"), dashscope_error_event(2, 400, "DataInspectionFailed",
                                                                                "Output data may contain "
                                                                                "inappropriate content.")]))
    seen = []
    with pytest.raises(BackendRequestError, match="DataInspectionFailed"):
        async for d in model(server).stream([Message.user("hi")]):
            seen.append(d.text)
    assert seen == ["部分"]


async def test_stream_error_status_before_events(server):
    server.add(Reply(401, dashscope_error("InvalidApiKey", "Invalid API-key provided.")))
    with pytest.raises(BackendAuthError, match="Invalid API-key"):
        [d async for d in model(server).stream([Message.user("hi")])]


async def test_connection_refused(server):
    url = server.url
    server.close()
    llm = DashScopeChatModel("qwen-plus", api_key="k", base_url=url + "/api/v1", timeout=5)
    with pytest.raises(BackendConnectionError, match=f"cannot connect to DashScope at {url}"):
        await llm.chat([Message.user("hi")])


async def test_sdk_global_base_url_is_used(server, monkeypatch):
    import dashscope

    monkeypatch.setattr(dashscope, "base_http_api_url", server.url + "/api/v1")
    server.add(Reply(body=dashscope_output("ok")))
    c = await DashScopeChatModel("qwen-turbo", api_key="k").chat([Message.user("hi")])
    assert c.text == "ok" and server.requests[0].path == DASHSCOPE_PATH


async def test_api_key_from_dotenv(server, monkeypatch, tmp_path):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    (tmp_path / ".env").write_text("DASHSCOPE_API_KEY=sk-from-dotenv\n")
    monkeypatch.chdir(tmp_path)
    server.add(Reply(body=dashscope_output("ok")))
    llm = DashScopeChatModel("qwen-plus", base_url=server.url + "/api/v1")
    await llm.chat([Message.user("hi")])
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-dotenv"
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-env")  # the environment wins over .env
    assert llm.api_key() == "sk-env"


def test_missing_key_is_a_config_error(monkeypatch, tmp_path):
    import dashscope

    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.setattr(dashscope, "api_key", None)
    monkeypatch.setattr(dashscope, "api_key_file_path", None)
    monkeypatch.setattr("dashscope.common.api_key.DEFAULT_DASHSCOPE_API_KEY_FILE_PATH", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BackendConfigError, match="DASHSCOPE_API_KEY"):
        DashScopeChatModel("qwen-plus").api_key()


async def test_text_format_for_models_without_native_tools(server):
    reply = ('<|startofthink|>```JSON\n{"api_name": "get_current_weather", "parameters": {"location": "杭州"}}\n'
             '```<|endofthink|>')
    server.add(Reply(body=dashscope_output(reply)))
    c = await model(server, format="msagent").chat([Message.user("杭州天气")], [WEATHER])
    assert c.tool_calls and c.tool_calls[0].arguments == {"location": "杭州"}
    params = server.requests[0].body["parameters"]
    assert "tools" not in params
    system = server.requests[0].body["input"]["messages"][0]
    assert system["role"] == "system" and "get_current_weather" in system["content"]
    json.dumps(server.requests[0].body)


@pytest.mark.ray
async def test_as_a_ray_actor(server, ray_cluster):
    from raygent import runtime

    server.add(Reply(body=dashscope_output("来自 actor")),
               Reply(events=[dashscope_event(1, "流"), dashscope_event(2, "式", finish="stop")]))
    llm = runtime.deploy(DashScopeChatModel, "qwen-plus", remote=True,
                         init_kwargs={"api_key": "sk-ds-test", "base_url": server.url + "/api/v1"})
    try:
        assert (await llm.chat([Message.user("hi")])).text == "来自 actor"
        deltas = [d async for d in llm.stream([Message.user("hi")])]
        assert "".join(d.text for d in deltas) == "流式" and deltas[-1].finish_reason == "stop"
    finally:
        runtime.kill(llm)
