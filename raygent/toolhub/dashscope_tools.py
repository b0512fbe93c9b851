"""DashScope tools through the official `dashscope` SDK: wanx image generation, sambert speech
synthesis, paraformer speech recognition and qwen-vl image understanding (the seed's tools).

The SDK calls are blocking, so they run in worker threads; wanx's asynchronous task is submitted
once and then polled with `asyncio.sleep` between fetches, so a hub stays responsive and a
timed-out call stops polling. Images and audio become artifacts in the store. The API key comes
from the tool config, $DASHSCOPE_API_KEY or `.env`; the endpoints from the config,
$DASHSCOPE_HTTP_BASE_URL / $DASHSCOPE_WEBSOCKET_BASE_URL or `.env` (the SDK's defaults
otherwise). The SDK keeps endpoints process-wide, so configuring one sets it for the process.
"""

from __future__ import annotations

import asyncio
import mimetypes
import wave
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, SecretStr

from raygent.schema import Artifact
from raygent.toolhub.artifacts import ArtifactStore, default_store
from raygent.toolhub.base import Tool, ToolOutput
from raygent.toolhub.credentials import env_value
from raygent.toolhub.errors import ToolError, ToolUnavailableError

_NO_KEY = ("DashScope tools need an API key: set DASHSCOPE_API_KEY in the environment or in a .env file "
           "(create a key in the DashScope console), or pass DashScopeConfig(api_key=...)")


class DashScopeConfig(BaseModel):
    """Credentials and endpoints; unset fields fall back to the environment / `.env` at call time."""

    api_key: SecretStr | None = None
    http_base_url: str | None = None
    websocket_base_url: str | None = None

    def key(self) -> str:
        key = env_value("DASHSCOPE_API_KEY", self.api_key.get_secret_value() if self.api_key else None)
        if not key:
            raise ToolUnavailableError(_NO_KEY)
        return key

    def sdk(self) -> Any:
        """The dashscope module, pointed at the configured endpoints."""
        try:
            import dashscope
        except ImportError as exc:
            raise ToolUnavailableError("DashScope tools need the official SDK: pip install 'raygent[dashscope]'"
                                       ) from exc
        http = env_value("DASHSCOPE_HTTP_BASE_URL", self.http_base_url)
        ws = env_value("DASHSCOPE_WEBSOCKET_BASE_URL", self.websocket_base_url)
        if http:
            dashscope.base_http_api_url = http
        if ws:
            dashscope.base_websocket_api_url = ws
        return dashscope


def _raise_for(response: Any, what: str) -> None:
    """A DashScope response that is not OK -> ToolError with the service's code and message."""
    status = getattr(response, "status_code", None)
    if status == HTTPStatus.OK:
        return
    code = getattr(response, "code", "") or ""
    message = getattr(response, "message", "") or ""
    hint = " (check DASHSCOPE_API_KEY)" if status in (401, 403) or code == "InvalidApiKey" else ""
    raise ToolError(f"DashScope {what} failed: status {status} {code}: {message}{hint} "
                    f"(request id {getattr(response, 'request_id', '') or '-'})")


async def _sdk(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking SDK call in a thread; transport failures (unreachable endpoint, TLS, ...)
    become a ToolError naming the call (the SDK raises `requests` errors for those)."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except ToolError:
        raise
    except Exception as exc:
        raise ToolError(f"DashScope {what} failed: {type(exc).__name__}: {exc}") from exc


def _local_file(value: str, store: ArtifactStore) -> Path | None:
    """An artifact URI / local path / file:// URI -> its path; None for an http(s) URL. The file is
    uploaded to DashScope, so only the folders tools may read qualify (ArtifactStore.open_input):
    the model cannot send ~/.ssh/id_rsa off the machine."""
    if value.startswith(("http://", "https://", "oss://")):
        return None
    try:
        return store.open_input(value)
    except FileNotFoundError:
        raise ToolError(f"file not found: {value} (pass a path, an artifact URI or an http(s) URL)") from None


class DashScopeTool(Tool):
    """Shared config, artifact store and the seed-style `_remote_call` entry point."""

    domain = "dashscope"
    timeout_s = 120.0

    def __init__(self, config: DashScopeConfig | None = None, *, model: str | None = None,
                 artifact_store: ArtifactStore | None = None, timeout_s: float | None = None):
        self.config = config or DashScopeConfig()
        if model:
            self.model = model
        self.artifact_store = artifact_store
        if timeout_s is not None:
            self.timeout_s = timeout_s

    @property
    def store(self) -> ArtifactStore:
        return self.artifact_store or default_store()

    async def call(self, **arguments: Any) -> Any:
        return await self._remote_call(**arguments)

    async def _remote_call(self, **arguments: Any) -> Any:
        raise NotImplementedError


class WanxImageGeneration(DashScopeTool):
    """Text-to-image with wanx: submit an asynchronous task, poll it, download the images."""

    name = "wanx_image_generation"
    description = "AI绘画（图像生成）：根据文本描述生成图片 / generate images from a text description (DashScope wanx)"
    parameters = {"type": "object", "properties": {
        "text": {"type": "string", "description": "what the image should show"},
        "resolution": {"type": "string", "enum": ["1024*1024", "720*1280", "1280*720"], "default": "1024*1024",
                       "description": "width*height"},
        "n": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
        "negative_prompt": {"type": "string"},
        "seed": {"type": "integer"},
    }, "required": ["text"]}
    model = "wanx-v1"
    poll_interval_s = 1.0

    async def _remote_call(self, text: str, resolution: str = "1024*1024", n: int = 1,
                           negative_prompt: str | None = None, seed: int | None = None, **_: Any) -> ToolOutput:
        ds = self.config.sdk()
        key = self.config.key()
        extra = {k: v for k, v in {"negative_prompt": negative_prompt, "seed": seed}.items() if v is not None}
        submitted = await _sdk(f"{self.model} task submission", ds.ImageSynthesis.async_call, model=self.model,
                               prompt=text, n=n, size=resolution, api_key=key, **extra)
        _raise_for(submitted, f"{self.model} task submission")
        task_id = submitted.output.task_id
        while True:
            status = await _sdk(f"{self.model} task {task_id} status", ds.ImageSynthesis.fetch, task_id, api_key=key)
            _raise_for(status, f"{self.model} task {task_id} status")
            state = status.output.task_status
            if state == "SUCCEEDED":
                break
            if state in ("FAILED", "CANCELED", "UNKNOWN"):
                out = status.output
                raise ToolError(f"DashScope {self.model} task {task_id} {state}: "
                                f"{getattr(out, 'code', '') or ''} {getattr(out, 'message', '') or ''}".rstrip())
            await asyncio.sleep(self.poll_interval_s)
        urls = [r.url for r in status.output.results if getattr(r, "url", None)]
        if not urls:
            raise ToolError(f"DashScope {self.model} task {task_id} succeeded without images: {status.output}")
        artifacts = [await self._download(url, task_id) for url in urls]
        return ToolOutput({"task_id": task_id, "images": [a.uri for a in artifacts]}, artifacts)

    async def _download(self, url: str, task_id: str) -> Artifact:
        async with httpx.AsyncClient(timeout=60, follow_redirects=True) as client:
            try:
                response = await client.get(url)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise ToolError(f"cannot download the image of task {task_id} from {url}: {exc}") from exc
        mime = response.headers.get("content-type", "").split(";")[0] or mimetypes.guess_type(url)[0] or "image/png"
        return self.store.save_bytes(response.content, mime_type=mime,
                                     metadata={"source_url": url, "task_id": task_id})


class SambertTTS(DashScopeTool):
    """Speech synthesis with sambert (the SDK speaks DashScope's websocket protocol)."""

    name = "sambert_tts"
    description = "Sambert语音合成服务，将文本转成语音 / text to speech (DashScope sambert), returns a WAV file"
    parameters = {"type": "object", "properties": {
        "text": {"type": "string", "description": "需要转成语音的文本 / the text to speak"},
        "gender": {"type": "string", "enum": ["man", "woman"], "description": "voice: man or woman"},
    }, "required": ["text"]}
    model = "sambert-zhijia-v1"  # a female voice; `gender: man` picks VOICES["man"]
    VOICES = {"man": "sambert-zhide-v1", "woman": "sambert-zhijia-v1"}  # news-style male / standard female
    sample_rate = 16000

    async def _remote_call(self, text: str, gender: str | None = None, **_: Any) -> ToolOutput:
        if not text.strip():
            raise ToolError("sambert_tts: the text is empty")
        ds = self.config.sdk()
        key = self.config.key()
        model = self.VOICES.get(gender or "", self.model)
        from dashscope.audio.tts import SpeechSynthesizer

        result = await _sdk(f"{model} speech synthesis", SpeechSynthesizer.call, model=model, text=text,
                            format="wav", sample_rate=self.sample_rate, api_key=key)
        audio = result.get_audio_data()
        if not audio:
            response = result.get_response()
            _raise_for(response, f"{model} speech synthesis")
            raise ToolError(f"DashScope {model} returned no audio (request id {getattr(response, 'request_id', '-')})")
        art = self.store.save_bytes(audio, mime_type="audio/wav", metadata={"model": model, "text": text[:200]})
        return ToolOutput({"audio": art.uri, "duration_s": art.metadata.get("duration_s")}, [art])


class ParaformerASR(DashScopeTool):
    """Speech recognition with paraformer (realtime model over the websocket protocol)."""

    name = "paraformer_asr"
    description = "Paraformer语音识别服务，将语音转成文本 / speech to text (DashScope paraformer)"
    parameters = {"type": "object", "properties": {
        "audio": {"type": "string", "description": "audio file: a path or an artifact URI (wav, pcm, mp3, ...)"},
    }, "required": ["audio"]}
    model = "paraformer-realtime-v2"
    default_sample_rate = 16000

    async def _remote_call(self, audio: str, **_: Any) -> dict[str, Any]:
        path = _local_file(audio, self.store)
        if path is None:
            raise ToolError("paraformer_asr needs a local audio file (download the URL first)")
        fmt = path.suffix.lstrip(".").lower() or "pcm"
        sample_rate = self.default_sample_rate
        if fmt == "wav":
            try:
                with wave.open(str(path), "rb") as w:
                    sample_rate = w.getframerate()
            except (wave.Error, EOFError) as exc:
                raise ToolError(f"{audio} is not a readable WAV file: {exc}") from exc
        self.config.sdk()
        key = self.config.key()
        from dashscope.audio.asr import Recognition

        def recognize() -> Any:
            return Recognition(model=self.model, callback=None, format=fmt,
                               sample_rate=sample_rate).call(str(path), api_key=key)

        result = await _sdk(f"{self.model} recognition", recognize)
        _raise_for(result, f"{self.model} recognition")
        sentences = result.get_sentence() or []
        return {"text": "".join(s.get("text", "") for s in sentences),
                "sentences": [{"text": s.get("text", ""), "begin_ms": s.get("begin_time"),
                               "end_ms": s.get("end_time")} for s in sentences]}


class QwenVL(DashScopeTool):
    """Image understanding with qwen-vl (local images are uploaded by the SDK first)."""

    name = "qwen_vl"
    description = "调用qwen_vl处理图片：针对图片回答问题 / answer a question about an image (DashScope qwen-vl)"
    parameters = {"type": "object", "properties": {
        "image": {"type": "string", "description": "the image: a path, an artifact URI or an http(s) URL"},
        "text": {"type": "string", "description": "the question about the image"},
    }, "required": ["image", "text"]}
    model = "qwen-vl-plus"

    async def _remote_call(self, image: str, text: str, **_: Any) -> str:
        path = _local_file(image, self.store)
        ref = image if path is None else f"file://{path.resolve()}"
        ds = self.config.sdk()
        key = self.config.key()
        messages = [{"role": "system", "content": [{"text": "You are a helpful assistant."}]},
                    {"role": "user", "content": [{"image": ref}, {"text": text}]}]
        response = await _sdk(f"{self.model} conversation", ds.MultiModalConversation.call, model=self.model,
                              messages=messages, api_key=key)
        _raise_for(response, f"{self.model} conversation")
        return _message_text(response)


def _message_text(response: Any) -> str:
    choices = (response.output or {}).get("choices") or []
    if not choices:
        raise ToolError(f"DashScope answered without choices: {response.output}")
    content = choices[0]["message"]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


DASHSCOPE_TOOLS: dict[str, type[DashScopeTool]] = {
    t.name: t for t in (WanxImageGeneration, SambertTTS, ParaformerASR, QwenVL)  # type: ignore[misc]
}


def dashscope_tools(config: DashScopeConfig | None = None, *, artifact_store: ArtifactStore | None = None,
                    names: list[str] | None = None) -> list[DashScopeTool]:
    """Instances of the DashScope tools (all, or the given names) sharing one config."""
    unknown = set(names or []) - set(DASHSCOPE_TOOLS)
    if unknown:
        raise ValueError(f"unknown DashScope tools {sorted(unknown)}; available: {sorted(DASHSCOPE_TOOLS)}")
    return [cls(config, artifact_store=artifact_store) for name, cls in DASHSCOPE_TOOLS.items()
            if names is None or name in names]


__all__ = ["DashScopeConfig", "DashScopeTool", "WanxImageGeneration", "SambertTTS", "ParaformerASR", "QwenVL",
           "DASHSCOPE_TOOLS", "dashscope_tools"]
