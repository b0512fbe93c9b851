"""ModelScope: cache resolution (fake cache layouts holding the tiny model, no network), loading
through the transformers backend, and the inference API through the OpenAI backend."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("transformers")

import tiny_models as tm  # noqa: E402
from wire_servers import Reply, ScriptedHTTPServer, openai_completion  # noqa: E402

from raygent.llm_pool.errors import BackendConfigError  # noqa: E402
from raygent.llm_pool.modelscope_backend import (  # noqa: E402
    MODELSCOPE_API_URL,
    ModelNotInCacheError,
    ModelScopeAPIChatModel,
    ModelScopeChatModel,
    candidate_dirs,
    resolve_model_dir,
)
from raygent.schema import Message  # noqa: E402

MODEL_ID = "raygent-test/Tiny-Qwen2.5-Chat"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tm.build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen-ms"))


async def test_current_layout_under_modelscope_cache(model_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    target = cache / "models" / "raygent-test" / "Tiny-Qwen2___5-Chat"  # dots stored as ___, as the SDK does
    shutil.copytree(model_dir, target)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    assert resolve_model_dir(MODEL_ID) == target
    llm = ModelScopeChatModel(MODEL_ID, device="cpu", num_threads=1)
    c = await llm.chat(tm.tool_question(), [tm.WEATHER], {"max_tokens": 40})
    assert c.tool_calls[0].arguments == {"city": "Paris"} and c.model == MODEL_ID


def test_older_layouts_and_snapshots(model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("MODELSCOPE_CACHE", raising=False)
    hub = tmp_path / "old"
    shutil.copytree(model_dir, hub / "hub" / "raygent-test" / "Tiny-Qwen2.5-Chat")  # pre-models/ layout
    assert resolve_model_dir(MODEL_ID, cache_dir=hub) == hub / "hub" / "raygent-test" / "Tiny-Qwen2.5-Chat"
    snap = tmp_path / "snap"
    target = snap / "models" / "raygent-test--Tiny-Qwen2.5-Chat" / "snapshots" / "v1.0.0"
    shutil.copytree(model_dir, target)
    assert resolve_model_dir(MODEL_ID, "v1.0.0", cache_dir=snap) == target
    assert resolve_model_dir(MODEL_ID, cache_dir=snap) == target  # newest snapshot without a revision
    with pytest.raises(ModelNotInCacheError):
        resolve_model_dir(MODEL_ID, "v2.0.0", cache_dir=snap)


def test_missing_model_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path))
    (tmp_path / "models" / "damo" / "ModelScope-Agent-7B").mkdir(parents=True)  # empty: an interrupted download
    with pytest.raises(ModelNotInCacheError) as info:
        ModelScopeChatModel("damo/ModelScope-Agent-7B", revision="v1.0.0").load()
    text = str(info.value)
    assert str(tmp_path / "models" / "damo" / "ModelScope-Agent-7B") in text
    assert "modelscope download --model damo/ModelScope-Agent-7B --revision v1.0.0" in text
    assert str(tmp_path / "hub" / "damo" / "ModelScope-Agent-7B") in text
    assert str(tmp_path / "models" / "damo--ModelScope-Agent-7B" / "snapshots" / "v1.0.0") in text
    assert candidate_dirs("damo/ModelScope-Agent-7B") == [tmp_path / "models" / "damo" / "ModelScope-Agent-7B",
                                                          tmp_path / "hub" / "damo" / "ModelScope-Agent-7B",
                                                          tmp_path / "damo" / "ModelScope-Agent-7B"]


def test_bad_model_id():
    with pytest.raises(BackendConfigError, match="org/name"):
        ModelScopeChatModel("just-a-name")


async def test_inference_api_through_the_openai_backend(monkeypatch):
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-token-1")
    assert ModelScopeAPIChatModel("Qwen/Qwen2.5-7B-Instruct").base_url == MODELSCOPE_API_URL
    server = ScriptedHTTPServer()
    try:
        server.add(Reply(body=openai_completion("你好", model="Qwen/Qwen2.5-7B-Instruct")))
        llm = ModelScopeAPIChatModel("Qwen/Qwen2.5-7B-Instruct", base_url=server.url + "/v1", max_retries=0)
        c = await llm.chat([Message.user("hi")])
        assert c.text == "你好"
        assert server.requests[0].headers["authorization"] == "Bearer ms-token-1"
        assert server.requests[0].body["model"] == "Qwen/Qwen2.5-7B-Instruct"
    finally:
        server.close()


def test_inference_api_without_token_names_the_variable(monkeypatch):
    monkeypatch.delenv("MODELSCOPE_API_TOKEN", raising=False)
    with pytest.raises(BackendConfigError, match="MODELSCOPE_API_TOKEN"):
        ModelScopeAPIChatModel("Qwen/Qwen2.5-7B-Instruct").api_key()


@pytest.mark.parametrize("layout", ["models/raygent-test/Tiny-Qwen2___5-Chat", "hub/raygent-test/Tiny-Qwen2.5-Chat"])
def test_resolution_agrees_with_the_modelscope_sdk_offline(model_dir, tmp_path, monkeypatch, layout):
    """raygent's reader finds the folder the modelscope SDK itself finds with local_files_only (no network)."""
    modelscope = pytest.importorskip("modelscope")
    shutil.copytree(model_dir, tmp_path / layout)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path))
    sdk = modelscope.snapshot_download(MODEL_ID, local_files_only=True)
    assert str(resolve_model_dir(MODEL_ID)) == str(sdk) == str(tmp_path / layout)
