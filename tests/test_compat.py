"""raygent.compat: the seed-compatible API (config files, LLMFactory, AgentExecutor), with scripted models.

No model weights and no Ray: LlamaCppChatModel is only constructed (it loads lazily), and every
run uses ScriptedChatModel through the real tools.
"""

from __future__ import annotations

import json
import logging
import os

import pytest

from raygent import tool
from raygent.compat import (
    BACKENDS,
    AgentExecutor,
    Config,
    ConfigError,
    EventLoopError,
    LLMFactory,
    UnsupportedBackendError,
    api_keys,
    default_tool_config,
    format_for_prompt_generator,
    load_env,
    template_path,
)
from raygent.llm_pool.scripted import ScriptedChatModel
from raygent.schema import GenerationParams

ADDRESS = "浙江杭州市江干区九堡镇三村村一区"
TASK = f"使用地址识别模型，从下面的地址中找到省市区等元素，地址：{ADDRESS}"


def call(name: str, **arguments: object) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def scripted(*replies: str) -> dict:
    return {"s": {"type": "scripted", "replies": list(replies)}}


# -- config ----------------------------------------------------------------------------------
def test_config_from_json_file(tmp_path):
    path = tmp_path / "cfg_model.json"
    path.write_text(json.dumps({"m": {"type": "llama_cpp", "generate_cfg": {"top_p": 0.8}}}), encoding="utf-8")
    cfg = Config.from_file(path)
    assert cfg["m"]["type"] == "llama_cpp"
    assert cfg.m.generate_cfg.top_p == 0.8  # attribute access, as the seed's Config allowed
    assert cfg.to_dict() == {"m": {"type": "llama_cpp", "generate_cfg": {"top_p": 0.8}}}


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Config.from_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_file(bad)


def test_config_from_yaml(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "tools.yaml"
    path.write_text("address_parse:\n  use: true\n", encoding="utf-8")
    assert Config.from_file(path).address_parse.use is True


def test_env_file_and_api_keys(tmp_path, monkeypatch):
    for var in ("DASHSCOPE_API_KEY", "OPENAI_API_KEY", "MODELSCOPE_API_TOKEN", "TOOL_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    assert api_keys() == {}  # keys are never required
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps({"calculator": {"use": True}}), encoding="utf-8")
    env = tmp_path / ".env"
    env.write_text(f"DASHSCOPE_API_KEY=sk-test\nTOOL_CONFIG_FILE={tools}\n", encoding="utf-8")
    try:
        assert load_env(env) == env
        assert api_keys() == {"DASHSCOPE_API_KEY": "sk-test"}
        assert dict(default_tool_config()) == {"calculator": {"use": True}}
    finally:  # dotenv wrote os.environ directly, behind monkeypatch's back
        os.environ.pop("DASHSCOPE_API_KEY", None)
        os.environ.pop("TOOL_CONFIG_FILE", None)
    with pytest.raises(ConfigError):
        load_env(tmp_path / "nope.env")


def test_templates_are_seed_shaped():
    models = Config.from_file(template_path("model"))
    tools = Config.from_file(template_path("tool"))
    assert all("type" in entry for entry in models.values())
    assert {n for n, e in tools.items() if e.use} == {"address_parse", "calculator", "current_datetime"}
    assert "modelscope_speech-generation" in tools and not tools["modelscope_speech-generation"].use


# -- LLMFactory ------------------------------------------------------------------------------
def test_build_llama_cpp_without_loading(tmp_path):
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    cfg = {"local": {"type": "llama_cpp", "path": str(tmp_path / "m.gguf"), "n_ctx": 2048,
                     "generate_cfg": {"top_p": 0.8, "max_length": 300, "top_k": 10, "seed": 123}}}
    snapshot = json.dumps(cfg)
    llm = LLMFactory.build_llm("local", cfg)
    assert isinstance(llm, LlamaCppChatModel) and llm._llama is None  # nothing loaded yet
    assert llm.n_ctx == 2048 and llm.model_spec.endswith("m.gguf")
    assert llm.default_params == GenerationParams(top_p=0.8, max_tokens=300, seed=123)
    assert llm.ignored_generate_cfg == {"top_k": 10}
    assert json.dumps(cfg) == snapshot  # the seed popped 'type'; raygent leaves the cfg alone


def test_build_embedded_from_template_and_format():
    cfg = Config.from_file(template_path("model"))
    llm = LLMFactory.build_llm("qwen2.5-coder-0.5b", cfg)
    assert llm.format.name == "hermes" and llm.compat_spec.cls is type(llm)
    ms = LLMFactory.build_llm("qwen2.5-coder-0.5b-msagent", cfg)  # prompt_generator: MSPromptGenerator
    assert ms.format.name == "msagent"
    assert LLMFactory.build_llm("qwen2.5-coder-0.5b-instruct").format.name == "hermes"  # name only, no cfg


@pytest.mark.parametrize("llm_type", ["custom_llm"])
def test_unsupported_backends_raise_clear_error(llm_type):
    with pytest.raises(UnsupportedBackendError, match="not available in this build") as info:
        LLMFactory.build_llm("m", {"m": {"type": llm_type, "model": "x"}})
    assert llm_type in str(info.value)
    extra = BACKENDS[llm_type].extra
    if extra:
        assert f"raygent[{extra}]" in str(info.value)


def test_unknown_type_and_missing_model():
    with pytest.raises(ValueError, match="unknown llm type"):
        LLMFactory.build_llm("m", {"m": {"type": "nope"}})
    with pytest.raises(KeyError, match="not in the model config"):
        LLMFactory.build_llm("other", {"m": {"type": "llama_cpp"}})


def test_prompt_generator_names():
    assert format_for_prompt_generator("MSPromptGenerator") == "msagent"
    assert format_for_prompt_generator("ChatGLMPromptGenerator") == "hermes"
    assert format_for_prompt_generator("MRKLPromptGenerator") == "react"
    assert format_for_prompt_generator("hermes") == "hermes"
    with pytest.raises(ValueError):
        format_for_prompt_generator("NoSuchGenerator")


# -- AgentExecutor ---------------------------------------------------------------------------
def test_run_calls_the_real_address_tool():
    llm = LLMFactory.build_llm("s", scripted(call("address_parse", address=ADDRESS), "浙江省，杭州市，江干区"))
    agent = AgentExecutor(llm, {"modelscope_text-address": {"use": True}})
    results = agent.run(TASK)
    assert results[0]["name"] == "address_parse"
    assert results[0]["arguments"] == {"address": ADDRESS}
    assert results[0]["result"]["province"] == "浙江省" and results[0]["result"]["district"] == "江干区"
    assert results[-1] == {"answer": "浙江省，杭州市，江干区"}
    assert agent.last_result is not None and agent.last_result.steps == 2


def test_multi_step_and_tool_errors_are_reported():
    llm = LLMFactory.build_llm("s", scripted(call("calculator", expression="1/0"),
                                             call("calculator", expression="(12+8)*3"),
                                             call("calculator", expression="60/7"), "约 8.57"))
    agent = AgentExecutor(llm, {"calculator": {"use": True}})
    results = agent.run("算 (12+8)*3 再除以 7")
    assert [r.get("result") for r in results[:3]] == [
        None, {"expression": "(12+8)*3", "result": 60}, {"expression": "60/7", "result": 60 / 7}]
    assert "division by zero" in results[0]["error"]
    assert results[-1]["answer"] == "约 8.57"


def test_unavailable_tools_are_listed_and_logged(caplog):
    cfg = {"address_parse": {"use": True}, "modelscope_speech-generation": {"use": True},
           "modelscope_video-generation": {"use": True}, "my_thing": {"use": True}, "image_gen": {"use": False}}
    with caplog.at_level(logging.WARNING, logger="raygent.compat.agent_executor"):
        agent = AgentExecutor(ScriptedChatModel([]), cfg)
    assert set(agent.tool_list) == {"address_parse"}
    assert set(agent.unavailable_tools) == {"modelscope_speech-generation", "modelscope_video-generation", "my_thing"}
    assert "text-to-speech" in agent.unavailable_tools["modelscope_speech-generation"]
    assert "unknown tool name" in agent.unavailable_tools["my_thing"]
    assert "modelscope_speech-generation" in caplog.text


def test_default_tool_cfg_enables_builtins():
    agent = AgentExecutor(ScriptedChatModel([]))
    assert set(agent.tool_list) == {"address_parse", "calculator", "current_datetime"}
    assert agent.unavailable_tools == {}


def test_additional_tools_seed_style_and_raygent():
    class SeedAliasTool:  # the seed's shape: name, description, parameter list, _local_call
        name = "alias"
        description = "Look up a person's nickname"
        parameters = [{"name": "person", "description": "full name", "required": True}]

        def _local_call(self, person: str) -> dict:
            return {"result": f"{person[:3]}-kun"}

    @tool
    def double(x: int) -> int:
        """Double a number."""
        return 2 * x

    llm = ScriptedChatModel([call("alias", person="Tanaka Taro") + "\n" + call("double", x=21), "Tan-kun, 42"])
    agent = AgentExecutor(llm, {}, additional_tool_list={"alias": SeedAliasTool(), "double": double})
    assert set(agent.tool_list) == {"alias", "double"}
    results = agent.run("nickname and double 21")
    assert results[:2] == [{"name": "alias", "arguments": {"person": "Tanaka Taro"}, "result": "Tan-kun"},
                           {"name": "double", "arguments": {"x": 21}, "result": 42}]


def test_set_available_tools_accepts_seed_names():
    agent = AgentExecutor(ScriptedChatModel([call("calculator", expression="1+1"), "no calculator here"]))
    agent.set_available_tools(["modelscope_text-address"])
    assert list(agent.available_tool_list) == ["address_parse"]
    results = agent.run("1+1")
    assert "unknown tool 'calculator'" in results[0]["error"]
    with pytest.raises(ValueError, match="unsupported tool"):
        agent.set_available_tools(["modelscope_video-generation"])


def test_multi_turn_history_and_reset():
    llm = ScriptedChatModel(["你好，我记住了：小明。", "你叫小明。", "我不知道你的名字。"])
    agent = AgentExecutor(llm, {})
    agent.run("我叫小明")
    assert agent.run("我叫什么？")[-1] == {"answer": "你叫小明。"}
    second = llm.requests[1]["messages"]
    assert [m.content for m in second if m.role == "user"] == ["我叫小明", "我叫什么？"]
    agent.reset()
    assert agent.history == []
    agent.run("我叫什么？")
    assert [m.content for m in llm.requests[2]["messages"] if m.role == "user"] == ["我叫什么？"]


def test_stream_run_yields_seed_shaped_events():
    llm = ScriptedChatModel([call("address_parse", address=ADDRESS), "浙江省杭州市"])
    agent = AgentExecutor(llm, {"address_parse": {"use": True}})
    events = list(agent.stream_run(TASK))
    assert events[0]["tool_call"] == {"name": "address_parse", "arguments": {"address": ADDRESS}}
    assert "<tool_call>" in events[0]["llm_text"]
    assert events[1]["name"] == "address_parse" and events[1]["exec_result"]["result"]["city"] == "杭州市"
    assert {"llm_text": "浙江省杭州市"} in events
    assert events[-1] == {"is_final": True, "answer": "浙江省杭州市"}


def test_prompt_generator_rebuilds_factory_llm_and_warns_for_prebuilt(caplog):
    llm = LLMFactory.build_llm("s", scripted('<|startofthink|>```JSON\n{"api_name": "calculator", '
                                             '"parameters": {"expression": "2*21"}}\n```<|endofthink|>', "42"))
    agent = AgentExecutor(llm, {"calculator": {"use": True}}, prompt_generator="MSPromptGenerator")
    assert agent.format == "msagent" and agent.llm is not llm
    assert agent.run("2*21")[0]["result"] == {"expression": "2*21", "result": 42}

    prebuilt = ScriptedChatModel([])
    with caplog.at_level(logging.WARNING, logger="raygent.compat.agent_executor"):
        other = AgentExecutor(prebuilt, {}, prompt_generator="MSPromptGenerator")
    assert other.format_ignored and other.format == "hermes" and "ignored" in caplog.text


def test_max_steps_is_reported_in_the_final_dict():
    llm = ScriptedChatModel([call("calculator", expression=f"{i}+1") for i in range(3)])
    results = AgentExecutor(llm, {"calculator": {"use": True}}, max_steps=2).run("loop")
    assert results[-1]["stop_reason"] == "max_steps" and "step limit" in results[-1]["error"]


async def test_run_inside_event_loop_points_to_arun():
    agent = AgentExecutor(ScriptedChatModel(["hi"]), {})
    with pytest.raises(EventLoopError, match="await executor.arun"):
        agent.run("hello")
    with pytest.raises(EventLoopError, match="astream_run"):
        agent.stream_run("hello")
    assert await agent.arun("hello") == [{"answer": "hi"}]


def test_knowledge_and_append_files_reach_the_model():
    class Knowledge:
        def retrieve(self, query: str) -> list[str]:
            return ["九堡镇属于杭州市"]

    llm = ScriptedChatModel(["ok"])
    agent = AgentExecutor(llm, {}, knowledge_retrieval=Knowledge())
    agent.run("九堡在哪", append_files=["a.wav"])
    user = [m.content for m in llm.requests[0]["messages"] if m.role == "user"][0]
    assert "九堡镇属于杭州市" in user and "a.wav" in user and user.index("九堡在哪") > user.index("九堡镇属于")


def test_sync_api_reuses_one_loop():
    agent = AgentExecutor(ScriptedChatModel(["a", "b"]), {})
    agent.run("1")
    loop = agent._loop.loop
    agent.run("2")
    assert agent._loop.loop is loop and loop.is_running()
    agent.close()
    assert agent._loop is None and not loop.is_running()


def test_llm_by_name_uses_the_model_config():
    agent = AgentExecutor("qwen2.5-coder-0.5b-msagent", {})  # an entry of the bundled model template
    assert agent.format == "msagent" and agent.llm._llama is None
    assert AgentExecutor(None, {}, prompt_generator="MRKLPromptGenerator").format == "react"
