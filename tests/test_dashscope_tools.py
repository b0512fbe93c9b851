"""DashScope tools through the official SDK, against a local server speaking DashScope's protocol
(HTTP, the asynchronous task flow, the OSS upload flow and the websocket inference protocol)."""

from __future__ import annotations

import wave

import pytest

from _local_servers import free_port, serve_asgi
from fake_dashscope import FakeDashScope
from raygent.toolhub.artifacts import ArtifactStore, PathNotAllowed
from raygent.toolhub.base import ToolOutput
from raygent.toolhub.dashscope_tools import (
    DashScopeConfig,
    ParaformerASR,
    QwenVL,
    SambertTTS,
    WanxImageGeneration,
    dashscope_tools,
)
from raygent.toolhub.errors import ToolError, ToolUnavailableError
from raygent.toolhub.registry import ToolRegistry


@pytest.fixture(scope="module")
def fake():
    service = FakeDashScope(api_key="sk-test")
    with serve_asgi(service.app()) as base:
        service.base = base
        yield service


def config(fake, key: str = "sk-test") -> DashScopeConfig:
    return DashScopeConfig(api_key=key, http_base_url=fake.base + "/api/v1",
                           websocket_base_url=fake.base.replace("http://", "ws://") + "/api-ws/v1/inference")


async def test_wanx_submits_polls_and_downloads_images(fake, tmp_path):
    tool = WanxImageGeneration(config(fake), artifact_store=ArtifactStore(tmp_path))
    tool.poll_interval_s = 0.05
    fake.polls_until_done = 3
    out = await tool.call(text="a red panda reading a book", resolution="720*1280", n=2)
    assert isinstance(out, ToolOutput) and len(out.artifacts) == 2
    assert all(a.kind == "image" and a.metadata["width"] == 720 and a.metadata["height"] == 1280
               for a in out.artifacts)
    task_id = out.output["task_id"]
    assert fake.tasks[task_id]["polls"] == 3  # PENDING, RUNNING, SUCCEEDED
    assert out.artifacts[0].metadata["source_url"].endswith(f"/files/{task_id}-0.png")
    assert out.output["images"] == [a.uri for a in out.artifacts]


async def test_wanx_task_failure_and_bad_key(fake):
    tool = WanxImageGeneration(config(fake))
    tool.poll_interval_s = 0.05
    with pytest.raises(ToolError, match="task .* FAILED: DataInspectionFailed Input data may contain"):
        await tool.call(text="something forbidden")
    with pytest.raises(ToolError, match="status 401 InvalidApiKey: Invalid API-key provided. "
                                        r"\(check DASHSCOPE_API_KEY\)"):
        await WanxImageGeneration(config(fake, key="sk-wrong")).call(text="a cat")


async def test_sambert_tts_over_websocket_gives_a_wav_artifact(fake, tmp_path):
    tool = SambertTTS(config(fake), artifact_store=ArtifactStore(tmp_path))
    out = await tool.call(text="你好，世界", gender="man")
    (art,) = out.artifacts
    assert art.kind == "audio" and art.mime_type == "audio/wav"
    assert art.metadata["duration_s"] == pytest.approx(0.5, abs=0.01)  # the fake speaks 0.1 s per character
    assert art.metadata["sample_rate"] == 16000 and art.metadata["model"] == "sambert-zhide-v1"
    start = fake.ws_log[-1]
    assert start["header"]["action"] == "run-task" and start["header"]["streaming"] == "out"
    assert start["payload"]["input"] == {"text": "你好，世界"}
    assert start["payload"]["parameters"]["format"] == "wav"
    woman = await tool.call(text="早上好")
    assert woman.artifacts[0].metadata["model"] == "sambert-zhijia-v1"


async def test_sambert_errors(fake):
    with pytest.raises(ToolError, match="ModelNotFound: Model not found: nobody-v1"):
        await SambertTTS(config(fake), model="nobody-v1").call(text="hi")
    with pytest.raises(ToolError, match="Unauthorized, your api-key is invalid"):
        await SambertTTS(config(fake, key="sk-wrong")).call(text="hi")


def _wav(path, seconds: float, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * int(seconds * rate))


async def test_paraformer_streams_the_audio_and_reads_sentences(fake, tmp_path):
    audio = tmp_path / "speech.wav"
    _wav(audio, 2.5)
    store = ArtifactStore(tmp_path / "store", readable=[tmp_path])  # the tool may read (and upload) tmp_path
    out = await ParaformerASR(config(fake), artifact_store=store).call(audio=str(audio))
    assert out["text"] == fake.transcript
    assert out["sentences"] == [{"text": fake.transcript, "begin_ms": 0, "end_ms": 2500}]
    assert fake.received_audio == audio.read_bytes()  # every frame arrived, in order
    start = fake.ws_log[-1]
    assert start["header"]["streaming"] == "duplex"
    assert start["payload"]["parameters"]["sample_rate"] == 16000 and start["payload"]["parameters"]["format"] == "wav"
    with pytest.raises(ToolError, match="file not found"):
        await ParaformerASR(config(fake), artifact_store=store).call(audio=str(tmp_path / "missing.wav"))
    with pytest.raises(PathNotAllowed, match="outside the folders tools may read"):  # never uploaded
        await ParaformerASR(config(fake), artifact_store=store).call(audio=str(tmp_path / ".." / "speech.wav"))


async def test_qwen_vl_uploads_a_local_image_and_answers(fake, tmp_path):
    from PIL import Image

    path = tmp_path / "green.png"
    Image.new("RGB", (32, 16), (0, 200, 0)).save(path)
    store = ArtifactStore(tmp_path / "store")
    art = store.save_file(path)
    answer = await QwenVL(config(fake), artifact_store=store).call(image=art.uri, text="What colour is it?")
    assert answer == "The image is 32x16 pixels; its main colour is RGB(0, 200, 0). Question: What colour is it?"
    assert any(p == "/api/v1/uploads" for _, p in fake.log)
    assert list(fake.uploads.values())[-1] == path.read_bytes()


async def test_missing_key_and_registry(fake, tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    no_key = DashScopeConfig(http_base_url=fake.base + "/api/v1")
    with pytest.raises(ToolUnavailableError, match="set DASHSCOPE_API_KEY"):
        await WanxImageGeneration(no_key).call(text="x")
    (tmp_path / ".env").write_text("DASHSCOPE_API_KEY=sk-test\n")  # picked up from .env at call time
    registry = ToolRegistry(dashscope_tools(no_key, artifact_store=ArtifactStore(tmp_path / "art")))
    assert {s.name for s in await registry.list_specs()} == {"wanx_image_generation", "sambert_tts",
                                                             "paraformer_asr", "qwen_vl"}
    result = await registry.call("sambert_tts", {"text": "好"})
    assert result.ok and result.artifacts[0].kind == "audio"
    bad = await registry.call("wanx_image_generation", {"text": "x", "resolution": "5*5"})
    assert bad.error and "invalid arguments" in bad.error
    down = DashScopeConfig(api_key="k", http_base_url=f"http://127.0.0.1:{free_port()}/api/v1")
    with pytest.raises(ToolError, match="DashScope wanx-v1 task submission failed"):
        await WanxImageGeneration(down).call(text="x")
