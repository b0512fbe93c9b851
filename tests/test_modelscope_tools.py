"""ModelScope tools: remote mode against a local server speaking the hosted inference API, the
mode selection and its errors, and image_gen's remote mode (DashScope wanx, as in the seed)."""

from __future__ import annotations

import pytest

from _local_servers import free_port, serve_asgi
from fake_dashscope import FakeDashScope
from fake_modelscope import PREFIX, FakeModelScopeAPI
from raygent.toolhub.artifacts import ArtifactStore
from raygent.toolhub.base import ToolOutput
from raygent.toolhub.dashscope_tools import DashScopeConfig
from raygent.toolhub.errors import ToolError, ToolUnavailableError
from raygent.toolhub.modelscope_tools import (
    MODELSCOPE_TOOLS,
    ModelScopeConfig,
    TextToImageTool,
    find_cached_model,
    modelscope_tools,
)
from raygent.toolhub.registry import ToolRegistry


@pytest.fixture(scope="module")
def api():
    service = FakeModelScopeAPI(token="ms-test")
    with serve_asgi(service.app()) as base:
        service.base = base
        yield service


@pytest.fixture
def remote(api, tmp_path, monkeypatch):
    """Remote-mode tools pointed at the fake API through the environment, with an empty local cache."""
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-test")
    monkeypatch.setenv("MODELSCOPE_API_BASE", api.base + PREFIX.rstrip("/"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "empty-cache"))
    tools = modelscope_tools(artifact_store=ArtifactStore(tmp_path / "artifacts"))
    return {t.name: t for t in tools}


def test_the_seed_tool_list_and_schemas():
    assert set(MODELSCOPE_TOOLS) == {
        "modelscope_speech-generation", "modelscope_text-address", "modelscope_text-ie", "modelscope_text-ner",
        "modelscope_text-translation-en2zh", "modelscope_text-translation-zh2en", "modelscope_image-chat",
        "modelscope_video-generation", "image_gen"}
    spec = MODELSCOPE_TOOLS["modelscope_text-ie"]().spec
    assert spec.parameters["required"] == ["input", "schema"]
    assert spec.parameters["properties"]["schema"]["type"] == "object"


async def test_remote_nlp_tools(remote, api):
    address = await remote["modelscope_text-address"].call(input="浙江杭州市江干区九堡镇三村村一区")
    assert address == {"prov": "浙江", "city": "杭州市", "district": "江干区"}
    assert api.requests[-1] == ("damo/mgeo_geographic_elements_tagging_chinese_base",
                                {"input": "浙江杭州市江干区九堡镇三村村一区"})
    ner = await remote["modelscope_text-ner"].call(input="马云在杭州创办了阿里巴巴")
    assert ner == {"PER": ["马云"], "LOC": ["杭州"], "ORG": ["阿里巴巴"]}
    ie = await remote["modelscope_text-ie"].call(input="马云在杭州创办了阿里巴巴", schema='{"人物": null, "组织": null}')
    assert ie == {"人物": ["马云"], "组织": ["阿里巴巴"]}
    assert api.requests[-1][1] == {"input": "马云在杭州创办了阿里巴巴", "parameters": {"schema": {"人物": None, "组织": None}}}
    assert await remote["modelscope_text-translation-en2zh"].call(input="abc") == "<cba>"
    assert await remote["modelscope_text-translation-zh2en"].call(input="你好") == "<好你>"
    chat = await remote["modelscope_image-chat"].call(image="https://example.invalid/cat.png", text="what is it?")
    assert chat == "I see https://example.invalid/cat.png; you asked: what is it?"
    assert api.requests[-1][1]["input"]["messages"][0]["role"] == "system"


async def test_remote_media_tools_write_artifacts(remote, api):
    speech = await remote["modelscope_speech-generation"].call(input="你好", gender="woman")
    assert isinstance(speech, ToolOutput)
    (wav,) = speech.artifacts
    assert wav.kind == "audio" and wav.metadata["duration_s"] == pytest.approx(0.4)
    assert api.requests[-1][1] == {"input": "你好", "voice": "zhiyan_emo"}
    video = await remote["modelscope_video-generation"].call(text="a dog running on the beach")
    (mp4,) = video.artifacts
    assert mp4.kind == "video" and mp4.mime_type == "video/mp4" and mp4.size_bytes == 12 + len("a dog running on the beach")
    assert api.requests[-1][1] == {"input": {"text": "a dog running on the beach"}}


async def test_remote_errors_are_clear(remote, api, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "wrong")
    with pytest.raises(ToolError, match=r"HTTP 401: Unauthorized: invalid token \(check MODELSCOPE_API_TOKEN\)"):
        await remote["modelscope_text-ner"].call(input="x")
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-test")
    other = MODELSCOPE_TOOLS["modelscope_text-ner"](ModelScopeConfig(model="someone/unknown-model"))
    with pytest.raises(ToolError, match="HTTP 404: model someone/unknown-model not found"):
        await other.call(input="x")
    down = MODELSCOPE_TOOLS["modelscope_text-ner"](ModelScopeConfig(url=f"http://127.0.0.1:{free_port()}/x"))
    with pytest.raises(ToolError, match="cannot reach the ModelScope inference API"):
        await down.call(input="x")
    registry = ToolRegistry(remote.values())
    bad = await registry.call("modelscope_text-ie", {"input": "x"})
    assert bad.error and "'schema' is a required property" in bad.error


async def test_without_model_or_token_the_error_names_the_model(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELSCOPE_API_TOKEN", raising=False)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # no .env
    tool = MODELSCOPE_TOOLS["modelscope_text-address"]()
    with pytest.raises(ToolUnavailableError) as err:
        await tool.call(input="浙江杭州")
    message = str(err.value)
    assert "damo/mgeo_geographic_elements_tagging_chinese_base" in message
    assert "modelscope download --model damo/mgeo_geographic_elements_tagging_chinese_base" in message
    assert "MODELSCOPE_API_TOKEN" in message and str(tmp_path / "cache") in message
    local_only = MODELSCOPE_TOOLS["modelscope_text-address"](ModelScopeConfig(mode="local"))
    with pytest.raises(ToolUnavailableError, match="local mode, but the model is not in the local cache"):
        await local_only.call(input="x")
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(ToolUnavailableError, match="set DASHSCOPE_API_KEY .* to generate with DashScope wanx"):
        await TextToImageTool().call(text="x")  # image_gen's remote mode is DashScope's
    (tmp_path / ".env").write_text("MODELSCOPE_API_TOKEN=from-dotenv\n")
    assert tool.resolve_mode() == "remote" and tool.api_token() == "from-dotenv"


def test_cache_layouts_are_found(tmp_path):
    for layout in ("models/damo/nlp_x", "models/damo--nlp_x/snapshots/abc", "hub/damo/nlp_x", "damo/nlp_x"):
        root = tmp_path / layout.replace("/", "_")
        (root / layout).mkdir(parents=True)
        (root / layout / "configuration.json").write_text("{}")
        assert find_cached_model("damo/nlp_x", str(root)) == root / layout
    dotted = tmp_path / "dotted"
    (dotted / "models/AI-ModelScope/sdxl-1___0").mkdir(parents=True)
    (dotted / "models/AI-ModelScope/sdxl-1___0/configuration.json").write_text("{}")
    assert find_cached_model("AI-ModelScope/sdxl-1.0", str(dotted)) is not None
    assert find_cached_model("damo/absent", str(tmp_path)) is None


async def test_image_gen_remote_is_dashscope_wanx(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "cache"))
    service = FakeDashScope(api_key="sk-test", polls_until_done=1)
    with serve_asgi(service.app()) as base:
        ds = DashScopeConfig(api_key="sk-test", http_base_url=base + "/api/v1")
        tool = TextToImageTool(artifact_store=ArtifactStore(tmp_path), dashscope=ds)
        assert tool.resolve_mode() == "remote"
        out = await tool.call(text="a lighthouse at dusk", resolution="bogus")  # falls back to 1280*720
        (img,) = out.artifacts
        assert img.kind == "image" and (img.metadata["width"], img.metadata["height"]) == (1280, 720)


async def test_local_mode_runs_a_real_modelscope_pipeline_from_the_cache(tmp_path, monkeypatch):
    """A tiny LSTM-CRF model built here, put in a ModelScope cache layout; `auto` picks local mode
    (no token set) and `modelscope.pipeline` loads and runs it."""
    from tiny_modelscope_model import build_tiny_address_model

    monkeypatch.delenv("MODELSCOPE_API_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "ms-cache"
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    build_tiny_address_model(cache / "models" / "test" / "nlp_lstmcrf_tiny-address")
    tool = MODELSCOPE_TOOLS["modelscope_text-address"](ModelScopeConfig(model="test/nlp_lstmcrf_tiny-address",
                                                                        device="cpu"))
    assert tool.resolve_mode() == "local"
    registry = ToolRegistry([tool])
    result = await registry.call("modelscope_text-address", {"input": "浙江省杭州市西湖区文三路"})
    assert result.ok, result.error
    assert result.output == {"prov": "浙江省", "city": "杭州市", "district": "西湖区", "road": "文三路"}
    pipe = tool.pipeline
    assert type(pipe).__name__ == "TokenClassificationPipeline"
    assert await tool.call(input="杭州市文三路") == {"city": "杭州市", "road": "文三路"}
    assert tool.pipeline is pipe  # built once


async def test_seed_tool_config_is_understood(api, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-test")
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "cache"))
    seed_cfg = {"text-translation-en2zh": {"url": api.base + PREFIX + "damo/nlp_csanmt_translation_en2zh",
                                           "use": True, "is_remote_tool": True},
                "modelscope_text-ner": {"is_remote_tool": False, "model": "damo/some-ner"}}
    en2zh = MODELSCOPE_TOOLS["modelscope_text-translation-en2zh"].from_seed_config(seed_cfg)
    assert en2zh.config.mode == "remote" and await en2zh.call(input="hi") == "<ih>"
    ner = MODELSCOPE_TOOLS["modelscope_text-ner"].from_seed_config(seed_cfg)
    assert ner.model == "damo/some-ner"
    with pytest.raises(ToolUnavailableError, match="damo/some-ner"):  # local only, and not downloaded
        await ner.call(input="x")
