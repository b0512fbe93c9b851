"""The one model config format: parsing (JSON/YAML/.env/${VAR}), building every backend, the compat
LLMFactory wiring, and vLLM's Ray Serve LLM config building and validation (vLLM not installed)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from raygent.compat import Config, LLMFactory, template_path
from raygent.llm_pool.config import (
    ModelConfigError,
    build_chat_model,
    chat_model_spec,
    load_model_configs,
    parse_model_configs,
)
from raygent.llm_pool.dashscope_backend import DashScopeChatModel
from raygent.llm_pool.modelscope_backend import ModelScopeAPIChatModel, ModelScopeChatModel
from raygent.llm_pool.openai_backend import OpenAICompatibleChatModel
from raygent.llm_pool.transformers_backend import TransformersChatModel
from raygent.llm_pool.vllm_serve import (
    VLLMUnavailableError,
    build_vllm_app,
    llm_config_class,
    llm_config_dict,
    main,
    vllm_llm_config,
    vllm_serve_config,
)
from raygent.schema import GenerationParams, Message

VLLM = {"type": "vllm", "model_id": "Qwen/Qwen2.5-7B-Instruct", "url": "http://head:8000/v1",
        "tensor_parallel_size": 2, "accelerator_type": "A10G", "max_model_len": 8192,
        "deployment": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16},
                       "max_ongoing_requests": 64}}


def test_seed_template_parses_and_builds():
    configs = load_model_configs(template_path("model"))
    assert configs["qwen2.5-coder-0.5b"].type == "llama_cpp"  # "embedded" is an alias
    qwen = build_chat_model(configs["qwen-plus"])
    assert isinstance(qwen, DashScopeChatModel) and qwen.model == "qwen-plus"
    assert qwen.default_params == GenerationParams(top_p=0.8, seed=123)
    assert isinstance(build_chat_model(configs["openai"]), OpenAICompatibleChatModel)
    agent7b = build_chat_model(configs["modelscope-agent-7b"])  # the seed's local agent model
    assert isinstance(agent7b, ModelScopeChatModel)
    assert (agent7b.model_id, agent7b.model_revision) == ("damo/ModelScope-Agent-7B", "v1.0.0")
    assert agent7b.format.name == "msagent" and agent7b.trust_remote_code and "<|im_start|>" in agent7b.chat_template
    with pytest.raises(ModelConfigError, match="custom_llm"):
        build_chat_model(configs["custom_llm"])


def test_every_backend_type_builds_from_one_format(tmp_path):
    cfgs = parse_model_configs({
        "oai": {"type": "openai", "model": "gpt-4o-mini", "api_base": "http://127.0.0.1:9/v1", "format": "hermes",
                "headers": {"X-A": "1"}, "api_key_env": "MY_KEY", "generate_cfg": {"max_new_tokens": 99}},
        "ollama": {"type": "ollama", "model": "qwen2.5:7b", "url": "http://localhost:11434/v1"},
        "ds": {"type": "dashscope", "model": "qwen-max", "prompt_generator": "MSPromptGenerator"},
        "hf": {"type": "transformers", "path": str(tmp_path), "device": "cpu", "dtype": "float32",
               "max_batch_size": 4, "gguf_file": "m.gguf"},
        "ms-api": {"type": "modelscope", "model_id": "Qwen/Qwen2.5-72B-Instruct", "api": True},
        "vllm": VLLM,
        "gguf": {"type": "llama_cpp", "path": "~/m.gguf", "n_ctx": 2048},
    })
    oai = build_chat_model(cfgs["oai"])
    assert (oai.base_url, oai.format.name, oai.headers, oai.api_key_env) == ("http://127.0.0.1:9/v1", "hermes",
                                                                              {"X-A": "1"}, "MY_KEY")
    assert oai.default_params.max_tokens == 99 and oai.model_name == "oai"
    assert build_chat_model(cfgs["ollama"]).base_url == "http://localhost:11434/v1"
    assert build_chat_model(cfgs["ds"]).format.name == "msagent"
    hf = build_chat_model(cfgs["hf"])
    assert isinstance(hf, TransformersChatModel) and (hf.device, hf.dtype, hf.max_batch_size, hf.gguf_file) == (
        "cpu", "float32", 4, "m.gguf")
    api = build_chat_model(cfgs["ms-api"])
    assert isinstance(api, ModelScopeAPIChatModel) and api.base_url.startswith("https://api-inference.modelscope.cn")
    vllm = build_chat_model(cfgs["vllm"])
    assert type(vllm) is OpenAICompatibleChatModel and vllm.model == "Qwen/Qwen2.5-7B-Instruct"
    assert vllm.base_url == "http://head:8000/v1" and vllm.format.name == "native"
    cls, kwargs = chat_model_spec(cfgs["gguf"])
    assert cls.__name__ == "LlamaCppChatModel" and kwargs["n_ctx"] == 2048 and kwargs["model"].endswith("m.gguf")


@pytest.mark.parametrize(("entry", "needle"), [
    ({"type": "openai"}, "needs `model`"),
    ({"type": "vllm", "model_id": "x/y"}, "needs `url`"),
    ({"type": "transformers"}, "needs `path`"),
    ({"type": "nope", "model": "m"}, "type"),
    ({"type": "openai", "model": "m", "format": "xml"}, "format 'xml'"),
    ({"type": "openai", "model": "m", "url": "${SURELY_UNSET_VAR_42}"}, "SURELY_UNSET_VAR_42"),
])
def test_bad_entries_name_the_entry_and_the_problem(entry, needle):
    with pytest.raises(ModelConfigError) as info:
        build_chat_model(parse_model_configs({"bad-one": entry})["bad-one"])
    assert "bad-one" in str(info.value) or needle.startswith("SURELY")
    assert needle in str(info.value)


def test_yaml_with_dotenv_and_env_references(tmp_path, monkeypatch):
    for var in ("RAYGENT_TEST_VLLM_URL", "RAYGENT_TEST_KEY"):  # restored to unset after the test
        monkeypatch.setenv(var, "x")
        monkeypatch.delenv(var)
    (tmp_path / ".env").write_text("RAYGENT_TEST_VLLM_URL=http://gpu-head:8000/v1\nRAYGENT_TEST_KEY=secret\n")
    (tmp_path / "models.yaml").write_text(yaml.safe_dump({
        "big": {"type": "vllm", "model_id": "Qwen/Qwen2.5-32B-Instruct", "url": "${RAYGENT_TEST_VLLM_URL}",
                "api_key_env": "RAYGENT_TEST_KEY", "tensor_parallel_size": 4},
        "small": {"type": "openai", "model": "m", "url": "${RAYGENT_TEST_OTHER:-http://localhost:8001/v1}"}}))
    cfgs = load_model_configs(tmp_path / "models.yaml", env_file=tmp_path / ".env")
    big = build_chat_model(cfgs["big"])
    assert big.base_url == "http://gpu-head:8000/v1" and big.api_key() == "secret"
    assert build_chat_model(cfgs["small"]).base_url == "http://localhost:8001/v1"
    assert json.loads(json.dumps(cfgs["big"].model_dump()))["tensor_parallel_size"] == 4


def test_llm_factory_builds_the_pool_backends():
    cfg = Config.from_file(template_path("model"))
    assert isinstance(LLMFactory.build_llm("qwen-plus", cfg), DashScopeChatModel)
    assert isinstance(LLMFactory.build_llm("modelscope-agent-7b", cfg), ModelScopeChatModel)
    llm = LLMFactory.build_llm("openai", cfg, format="react")  # overrides, as AgentExecutor uses them
    assert isinstance(llm, OpenAICompatibleChatModel) and llm.format.name == "react"
    assert llm.compat_spec.cls is OpenAICompatibleChatModel


async def test_llm_factory_model_reaches_a_server(monkeypatch):
    from wire_servers import Reply, ScriptedHTTPServer, dashscope_output

    server = ScriptedHTTPServer()
    try:
        server.add(Reply(body=dashscope_output("来自配置")))
        entry = {"type": "dashscope", "model": "qwen-turbo", "url": server.url + "/api/v1",
                 "generate_cfg": {"temperature": 0.3}}
        llm = LLMFactory.build_llm("q", {"q": entry})
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-config")
        c = await llm.chat([Message.user("hi")], None, llm.default_params)
        assert c.text == "来自配置" and server.requests[0].body["parameters"]["temperature"] == 0.3
        assert server.requests[0].headers["authorization"] == "Bearer sk-config"
        await llm.aclose()
    finally:
        server.close()


# -- vLLM through Ray Serve LLM -----------------------------------------------------------------------
def test_llm_config_from_a_vllm_entry():
    data = llm_config_dict(VLLM, "qwen7b")
    assert data["model_loading_config"] == {"model_id": "Qwen/Qwen2.5-7B-Instruct",
                                            "model_source": "Qwen/Qwen2.5-7B-Instruct"}
    assert data["engine_kwargs"] == {"tensor_parallel_size": 2, "max_model_len": 8192,
                                     "enable_auto_tool_choice": True, "tool_call_parser": "hermes"}
    config = vllm_llm_config(VLLM, "qwen7b")
    assert isinstance(config, llm_config_class())
    assert config.model_id == "Qwen/Qwen2.5-7B-Instruct" and config.accelerator_type == "A10G"
    assert config.engine_kwargs["tensor_parallel_size"] == 2
    assert config.deployment_config["autoscaling_config"]["max_replicas"] == 4
    spread = vllm_llm_config({**VLLM, "placement_strategy": "STRICT_PACK", "engine_kwargs": {"tool_call_parser": "x"}})
    assert spread.placement_group_config == {"bundle_per_worker": {"GPU": 1}, "strategy": "STRICT_PACK"}
    assert spread.engine_kwargs["tool_call_parser"] == "x"  # engine_kwargs win


@pytest.mark.parametrize(("change", "needle"), [
    ({"accelerator_type": "Z9000"}, "accelerator"),
    ({"deployment": {"max_ongoing_requests": -3}}, "deployment"),
    ({"deployment": {"autoscaling_config": {"min_replicas": 3, "max_replicas": 1}}}, "min_replicas"),
    ({"placement_group_config": {"bundles": [{"GPU": 1}] * 3}}, "3 bundles"),
    ({"type": "openai", "model": "m"}, "type 'vllm'"),
    ({"model_id": None}, "needs `model_id`"),
])
def test_invalid_vllm_configs_are_rejected(change, needle):
    with pytest.raises(ModelConfigError, match=needle):
        vllm_llm_config({**VLLM, **change}, "bad")


def test_serve_config_yaml_round_trip(tmp_path, capsys):
    cfg = vllm_serve_config([parse_model_configs({"qwen7b": VLLM})["qwen7b"]], port=8000)
    app = cfg["applications"][0]
    assert app["import_path"] == "ray.serve.llm:build_openai_app" and app["route_prefix"] == "/"
    again = yaml.safe_load(yaml.safe_dump(cfg))
    llm_cfg = llm_config_class()(**again["applications"][0]["args"]["llm_configs"][0])  # what `serve run` will load
    assert llm_cfg.engine_kwargs["tensor_parallel_size"] == 2
    (tmp_path / "models.json").write_text(json.dumps({"qwen7b": VLLM, "other": {"type": "openai", "model": "m"}}))
    assert main([str(tmp_path / "models.json")]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["applications"][0]["args"]["llm_configs"][0]["model_loading_config"]["model_id"] == \
        "Qwen/Qwen2.5-7B-Instruct"
    assert main([str(tmp_path / "models.json"), "nope"]) == 2


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_building_the_app_without_vllm_says_what_to_install():
    with pytest.raises(VLLMUnavailableError, match=r"pip install 'ray\[llm\]' vllm"):
        build_vllm_app([VLLM])


def test_a_model_from_environment_variables_only(tmp_path, monkeypatch):
    from raygent.llm_pool.config import model_config_from_env

    for var in ("RAYGENT_LLM_TYPE", "RAYGENT_LLM_MODEL", "RAYGENT_LLM_URL", "RAYGENT_LLM_TEMPERATURE",
                "RAYGENT_LLM_NAME", "RAYGENT_LLM_FORMAT"):
        monkeypatch.setenv(var, "x")
        monkeypatch.delenv(var)
    assert model_config_from_env(None) is None
    (tmp_path / ".env").write_text("RAYGENT_LLM_TYPE=ollama\nRAYGENT_LLM_MODEL=qwen2.5:7b\n"
                                   "RAYGENT_LLM_URL=http://localhost:11434/v1\nRAYGENT_LLM_TEMPERATURE=0.2\n")
    cfg = model_config_from_env(tmp_path / ".env")
    llm = build_chat_model(cfg)
    assert isinstance(llm, OpenAICompatibleChatModel) and llm.model == "qwen2.5:7b"
    assert llm.base_url == "http://localhost:11434/v1" and llm.default_params.temperature == 0.2
    monkeypatch.setenv("RAYGENT_LLM_NAME", "local")  # the environment wins over .env
    monkeypatch.setenv("RAYGENT_LLM_FORMAT", "hermes")
    configs = load_model_configs({"other": {"type": "openai", "model": "m"}}, env_file=tmp_path / ".env")
    assert set(configs) == {"other", "local"} and configs["local"].format == "hermes"


def test_seed_script_on_dashscope(monkeypatch):
    """The seed's own flow on its default backend: LLMFactory + AgentExecutor with a dashscope entry,
    the real SDK against a local DashScope-protocol server, the real address tool in between."""
    from wire_servers import Reply, ScriptedHTTPServer, dashscope_output

    from raygent.compat import AgentExecutor

    address = "浙江杭州市江干区九堡镇三村村一区"
    server = ScriptedHTTPServer()
    try:
        server.add(Reply(body=dashscope_output("", [{"id": "call_1", "type": "function", "function": {
                       "name": "address_parse", "arguments": json.dumps({"address": address}, ensure_ascii=False)}}],
                       finish="tool_calls")),
                   Reply(body=dashscope_output("浙江省，杭州市，江干区")))
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-seed")
        cfg = Config.from_file(template_path("model")).to_dict()
        cfg["qwen-plus"]["url"] = server.url + "/api/v1"  # the only change to the seed's entry
        llm = LLMFactory.build_llm("qwen-plus", cfg)
        results = AgentExecutor(llm, {"modelscope_text-address": {"use": True}}).run(
            f"使用地址识别模型，从下面的地址中找到省市区等元素，地址：{address}")
        assert results[0]["name"] == "address_parse" and results[0]["result"]["district"] == "江干区"
        assert results[-1] == {"answer": "浙江省，杭州市，江干区"}
        first = server.requests[0].body
        assert [t["function"]["name"] for t in first["parameters"]["tools"]] == ["address_parse"]
        assert first["parameters"]["top_p"] == 0.8 and first["parameters"]["seed"] == 123  # the entry's generate_cfg
        tool_msg = server.requests[1].body["input"]["messages"][-1]
        assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "call_1" and "江干区" in tool_msg["content"]
    finally:
        server.close()
