"""ModelScope pipeline tools (the seed's list): speech generation, address parsing, information
extraction, NER, translation en2zh / zh2en, image chat, video generation, image generation.

Each tool is a class in the seed's shape: `_local_call` runs `modelscope.pipeline(task, model)`
on a model found in the local ModelScope cache (or a model directory), `_remote_call` POSTs to
the hosted inference API, `_remote_parse_input` / `_local_parse_input` shape the arguments and
`_parse_output` turns the pipeline's output into the tool's. `mode="auto"` (the default) picks
local when the model is on disk, remote when a MODELSCOPE_API_TOKEN is set (environment or
`.env`), and otherwise fails with a message naming the model id and both ways to get it.
Audio, image and video outputs are written to the artifact store.

Pipelines load lazily on first local call (in a worker thread, once) and run one call at a time;
`device` ("cpu", "gpu", "gpu:0") is handed to the pipeline, so a hub placed on a GPU uses it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, SecretStr

from raygent.toolhub.artifacts import ArtifactStore, default_store
from raygent.toolhub.base import Tool, ToolOutput
from raygent.toolhub.credentials import env_value
from raygent.toolhub.errors import ToolError, ToolUnavailableError

DEFAULT_API_BASE = "https://api-inference.modelscope.cn/api-inference/v1/models"
MAX_RETRY_TIMES = 3


class ModelScopeConfig(BaseModel):
    """Mode, credentials, endpoint and pipeline options of one tool (unset -> environment / .env)."""

    mode: Literal["auto", "local", "remote"] = "auto"
    model: str | None = None  # a hub model id or a local model directory; the tool's default otherwise
    model_revision: str | None = None
    device: str | None = None  # "cpu", "gpu", "gpu:0"; the pipeline's default otherwise
    pipeline_params: dict[str, Any] = {}
    cache_dir: str | None = None  # the ModelScope cache; $MODELSCOPE_CACHE or ~/.cache/modelscope otherwise
    api_token: SecretStr | None = None
    api_base: str | None = None  # hosted inference API base ($MODELSCOPE_API_BASE)
    url: str | None = None  # full endpoint of this tool's model (the seed's per-tool `url`)
    timeout_s: float = 120.0


def modelscope_cache_root(cache_dir: str | None = None) -> Path:
    return Path(cache_dir or os.environ.get("MODELSCOPE_CACHE") or Path.home() / ".cache" / "modelscope").expanduser()


def find_cached_model(model: str, cache_dir: str | None = None) -> Path | None:
    """The local directory of `model` (a directory itself, or a hub id in one of the cache layouts
    ModelScope writes), if it holds a configuration.json; else None."""
    direct = Path(model).expanduser()
    if direct.is_dir():
        return direct if (direct / "configuration.json").is_file() else None
    if "/" not in model:
        return None
    base = modelscope_cache_root(cache_dir)
    owner, name = model.split("/", 1)
    safe = name.replace(".", "___")
    candidates = [base / "models" / owner / safe, base / "models" / owner / name,
                  base / "hub" / "models" / owner / safe, base / owner / name, base / owner / safe, base / "hub" / owner / name, base / "hub" / owner / safe]
    snapshots = base / "models" / f"{owner}--{name}" / "snapshots"
    if snapshots.is_dir():
        candidates.extend(sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True))
    return next((c for c in candidates if (c / "configuration.json").is_file()), None)


class ModelscopePipelineTool(Tool):
    """Base of the ModelScope tools: mode selection, the local pipeline and the remote API call."""

    default_model: ClassVar[str] = ""
    task: ClassVar[str] = ""
    domain = "modelscope"
    timeout_s = 120.0

    def __init__(self, config: ModelScopeConfig | dict[str, Any] | None = None, *,
                 artifact_store: ArtifactStore | None = None):
        self.config = config if isinstance(config, ModelScopeConfig) else ModelScopeConfig(**(config or {}))
        self.model = self.config.model or self.default_model
        self.timeout_s = self.config.timeout_s
        self.artifact_store = artifact_store
        self.pipeline: Any = None
        self._pipeline_lock = threading.Lock()

    @classmethod
    def from_seed_config(cls, cfg: dict[str, Any], *, artifact_store: ArtifactStore | None = None
                         ) -> ModelscopePipelineTool:
        """Build from a seed tool config (`{tool name: {"url", "is_remote_tool", "model", ...}}`; the
        entry may be under the seed's name with or without the `modelscope_` prefix)."""
        short = cls.name.removeprefix("modelscope_")
        entry = dict(cfg.get(cls.name) or cfg.get(short) or {})
        options: dict[str, Any] = {k: entry[k] for k in ("url", "model", "model_revision", "pipeline_params",
                                                         "device") if entry.get(k) is not None}
        if "is_remote_tool" in entry:
            options["mode"] = "remote" if entry["is_remote_tool"] else "local"
        return cls(ModelScopeConfig(**options), artifact_store=artifact_store)

    def __getstate__(self) -> dict[str, Any]:  # a loaded pipeline and its lock stay in their process
        state = dict(self.__dict__)
        state["pipeline"] = None
        state.pop("_pipeline_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pipeline_lock = threading.Lock()

    @property
    def store(self) -> ArtifactStore:
        return self.artifact_store or default_store()

    # --- mode selection ------------------------------------------------------------------------
    def local_model_dir(self) -> Path | None:
        return find_cached_model(self.model, self.config.cache_dir)

    def api_token(self) -> str | None:
        return env_value("MODELSCOPE_API_TOKEN", self.config.api_token.get_secret_value()
                         if self.config.api_token else None)

    def endpoint(self) -> str:
        if self.config.url:
            return self.config.url
        base = env_value("MODELSCOPE_API_BASE", self.config.api_base) or DEFAULT_API_BASE
        return f"{base.rstrip('/')}/{self.model}"

    def _how_to_get(self) -> str:
        return (f"the ModelScope model {self.model!r} ({self.task} pipeline) is needed: either download it "
                f"for local use (`modelscope download --model {self.model}`, which fills the ModelScope cache "
                f"{modelscope_cache_root(self.config.cache_dir)}; local mode also needs `pip install "
                f"'raygent[modelscope]'` and the model's framework), or set MODELSCOPE_API_TOKEN (environment or "
                f".env) to call the hosted inference API")

    def resolve_mode(self) -> Literal["local", "remote"]:
        mode = self.config.mode
        if mode == "local" or (mode == "auto" and self.local_model_dir() is not None):
            if self.local_model_dir() is None:
                raise ToolUnavailableError(f"{self.name}: local mode, but the model is not in the local cache; "
                                           + self._how_to_get())
            return "local"
        if mode == "remote" or self.api_token():
            return "remote"
        raise ToolUnavailableError(f"{self.name}: no local model and no API token; " + self._how_to_get())

    async def call(self, **arguments: Any) -> Any:
        if self.resolve_mode() == "local":
            return await self._local_call(**arguments)
        return await self._remote_call(**arguments)

    # --- local: modelscope.pipeline -------------------------------------------------------------
    def setup(self) -> Any:
        """Build the pipeline once (heavy: imports torch/TF and loads the weights)."""
        if self.pipeline is not None:
            return self.pipeline
        model_dir = self.local_model_dir()
        if model_dir is None:
            raise ToolUnavailableError(f"{self.name}: " + self._how_to_get())
        try:
            from modelscope.pipelines import pipeline
        except ImportError as exc:
            raise ToolUnavailableError(f"{self.name}: local ModelScope pipelines need `pip install "
                                       f"'raygent[modelscope]'` (modelscope with its framework extras): {exc}") from exc
        options = dict(self.config.pipeline_params)
        if self.config.device:
            options["device"] = self.config.device
        if self.config.model_revision:
            options["model_revision"] = self.config.model_revision
        self.pipeline = pipeline(task=self.task, model=str(model_dir), **options)
        return self.pipeline

    def _run_local(self, **arguments: Any) -> Any:
        with self._pipeline_lock:  # one call at a time per pipeline (they are not thread-safe)
            pipe = self.setup()
            args, kwargs = self._local_parse_input(**arguments)
            try:
                return pipe(*args, **kwargs)
            except Exception as exc:
                raise ToolError(f"{self.name}: the local pipeline {self.task!r} ({self.model}) failed: "
                                f"{type(exc).__name__}: {exc}") from exc

    async def _local_call(self, **arguments: Any) -> Any:
        origin = await asyncio.to_thread(self._run_local, **arguments)
        return self._parse_output(origin, remote=False)

    def _local_parse_input(self, **arguments: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (), arguments

    # --- remote: the hosted inference API -------------------------------------------------------
    def _remote_parse_input(self, **arguments: Any) -> dict[str, Any]:
        return arguments

    async def _remote_call(self, **arguments: Any) -> Any:
        token = self.api_token()
        if not token:
            raise ToolUnavailableError(f"{self.name}: remote mode needs MODELSCOPE_API_TOKEN (environment or .env); "
                                       + self._how_to_get())
        url = self.endpoint()
        body = self._remote_parse_input(**arguments)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(timeout=self.config.timeout_s) as client:
            for attempt in range(MAX_RETRY_TIMES):
                try:
                    response = await client.post(url, json=body, headers=headers)
                    break
                except httpx.TimeoutException:
                    if attempt == MAX_RETRY_TIMES - 1:
                        raise ToolError(f"{self.name}: the ModelScope inference API at {url} timed out "
                                        f"{MAX_RETRY_TIMES} times; try local mode") from None
                except httpx.HTTPError as exc:
                    raise ToolError(f"{self.name}: cannot reach the ModelScope inference API at {url}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400 or not isinstance(payload, dict):
            message = payload.get("Message") or payload.get("message") if isinstance(payload, dict) else None
            hint = " (check MODELSCOPE_API_TOKEN)" if response.status_code in (401, 403) else ""
            raise ToolError(f"{self.name}: the ModelScope inference API returned HTTP {response.status_code}: "
                            f"{message or response.text[:300]}{hint}")
        code = payload.get("Code", 200)
        if code not in (200, "200", 0) or "Data" not in payload:
            raise ToolError(f"{self.name}: the ModelScope inference API answered Code {code}: "
                            f"{payload.get('Message') or payload}")
        return await self._remote_output(payload["Data"])

    async def _remote_output(self, data: Any) -> Any:
        return self._parse_output(data, remote=True)

    def _parse_output(self, origin_result: Any, remote: bool = True) -> Any:
        return origin_result

    # --- binary outputs -----------------------------------------------------------------------
    async def _fetch_media(self, value: Any) -> bytes:
        """A remote pipeline's media output: a URL to download, or base64 text."""
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            async with httpx.AsyncClient(timeout=self.config.timeout_s, follow_redirects=True) as client:
                try:
                    response = await client.get(value)
                    response.raise_for_status()
                except httpx.HTTPError as exc:
                    raise ToolError(f"{self.name}: cannot download the output from {value}: {exc}") from exc
                return response.content
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ToolError(f"{self.name}: the output is neither a URL nor base64 data") from exc
        raise ToolError(f"{self.name}: unexpected output type {type(value).__name__}")


# --- the seed's tools --------------------------------------------------------------------------

class TexttoSpeechTool(ModelscopePipelineTool):
    default_model = "damo/speech_sambert-hifigan_tts_zh-cn_16k"
    task = "text-to-speech"
    name = "modelscope_speech-generation"
    description = "文本转语音服务，将文字转换为自然而逼真的语音，可配置男声/女声"
    parameters = [{"name": "input", "description": "要转成语音的文本", "required": True, "type": "string"},
                  {"name": "gender", "description": "用户身份 (man / woman)", "required": False, "type": "string"}]

    @staticmethod
    def _voice(arguments: dict[str, Any]) -> dict[str, Any]:
        arguments = dict(arguments)
        gender = arguments.pop("gender", None) or "man"
        arguments["voice"] = "zhizhe_emo" if gender in ("man", "male", "男") else "zhiyan_emo"
        if "text" in arguments and "input" not in arguments:
            arguments["input"] = arguments.pop("text")
        return arguments

    def _local_parse_input(self, **arguments: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (), self._voice(arguments)

    def _remote_parse_input(self, **arguments: Any) -> dict[str, Any]:
        return self._voice(arguments)

    def _parse_output(self, origin_result: Any, remote: bool = True) -> Any:
        wav = origin_result["output_wav"]
        art = self.store.save_bytes(bytes(wav), mime_type="audio/wav", metadata={"model": self.model})
        return ToolOutput({"audio": art.uri, "duration_s": art.metadata.get("duration_s")}, [art])

    async def _remote_output(self, data: Any) -> Any:
        return self._parse_output({"output_wav": await self._fetch_media(data["output_wav"])}, remote=True)


class TextAddressTool(ModelscopePipelineTool):
    default_model = "damo/mgeo_geographic_elements_tagging_chinese_base"
    task = "token-classification"
    name = "modelscope_text-address"
    description = "地址解析服务，针对中文地址信息，识别出里面的元素，包括省、市、区、镇、社区、道路、路号、POI、楼栋号、户室号等"
    parameters = [{"name": "input", "description": "用户输入的地址信息", "required": True, "type": "string"}]

    def _parse_output(self, origin_result: Any, remote: bool = True) -> Any:
        return {e["type"]: e["span"] for e in origin_result["output"]}


class TextInfoExtractTool(ModelscopePipelineTool):
    default_model = "damo/nlp_structbert_siamese-uie_chinese-base"
    task = "siamese-uie"
    name = "modelscope_text-ie"
    description = "信息抽取服务，针对中文的文本，根据schema要抽取的内容，找出其中对应信息，并用json格式展示"
    parameters = [{"name": "input", "description": "用户输入的文本", "required": True, "type": "string"},
                  {"name": "schema", "description": "要抽取信息的json表示", "required": True, "type": "object"}]

    @staticmethod
    def _schema(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ToolError(f"modelscope_text-ie: schema must be JSON, e.g. {{\"人物\": null}}: {exc}") from exc
        return value

    def _local_parse_input(self, **arguments: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (), {"input": arguments["input"], "schema": self._schema(arguments["schema"])}

    def _remote_parse_input(self, **arguments: Any) -> dict[str, Any]:
        return {"input": arguments["input"], "parameters": {"schema": self._schema(arguments["schema"])}}

    def _parse_output(self, origin_result: Any, remote: bool = True) -> Any:
        result: dict[str, list[str]] = defaultdict(list)
        for e in origin_result["output"]:
            result[e[0]["type"]].append(e[0]["span"])
        return dict(result)


class TextNerTool(ModelscopePipelineTool):
    default_model = "damo/nlp_raner_named-entity-recognition_chinese-base-news"
    task = "named-entity-recognition"
    name = "modelscope_text-ner"
    description = "命名实体识别服务，针对需要识别的中文文本，找出其中的实体，返回json格式结果"
    parameters = [{"name": "input", "description": "用户输入的文本", "required": True, "type": "string"}]

    def _parse_output(self, origin_result: Any, remote: bool = True) -> Any:
        result: dict[str, list[str]] = defaultdict(list)
        for e in origin_result["output"]:
            result[e["type"]].append(e["span"])
        return dict(result)


class TranslationEn2ZhTool(ModelscopePipelineTool):
    default_model = "damo/nlp_csanmt_translation_en2zh"
    task = "translation"
    name = "modelscope_text-translation-en2zh"
    description = "根据输入指令，将相应的英文文本翻译成中文回复"
    parameters = [{"name": "input", "description": "用户输入的英文文本", "required": True, "type": "string"}]

    def _parse_output(self, origin_result: Any, remote: bool = True) -> Any:
        return origin_result["translation"]


class TranslationZh2EnTool(TranslationEn2ZhTool):
    default_model = "damo/nlp_csanmt_translation_zh2en"
    name = "modelscope_text-translation-zh2en"
    description = "根据输入指令，将相应的中文文本翻译成英文回复"
    parameters = [{"name": "input", "description": "用户输入的中文文本", "required": True, "type": "string"}]


class ImageChatTool(ModelscopePipelineTool):
    default_model = "damo/multi-modal_mplug_owl_multimodal-dialogue_7b"
    task = "multimodal-dialogue"
    name = "modelscope_image-chat"
    description = "图文对话和图像描述服务，针对输入的图片和用户的文本输入，给出文本回复"
    parameters = [{"name": "image", "description": "用户输入的图片 (URL or path)", "required": True, "type": "string"},
                  {"name": "text", "description": "用户输入的文本", "required": True, "type": "string"}]
    SYSTEM = ("The following is a conversation between a curious human and AI assistant. The assistant gives "
              "helpful, detailed, and polite answers to the user's questions.")

    def _messages(self, image: str, text: str) -> dict[str, Any]:
        return {"messages": [{"role": "system", "content": self.SYSTEM},
                             {"role": "user", "content": [{"image": image}]},
                             {"role": "user", "content": text}]}

    def _local_parse_input(self, **arguments: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (self._messages(arguments["image"], arguments["text"]),), {}

    def _remote_parse_input(self, **arguments: Any) -> dict[str, Any]:
        return {"input": self._messages(arguments["image"], arguments["text"])}

    def _parse_output(self, origin_result: Any, remote: bool = True) -> Any:
        return origin_result["text"] if isinstance(origin_result, dict) and "text" in origin_result else origin_result


class TextToVideoTool(ModelscopePipelineTool):
    default_model = "damo/text-to-video-synthesis"
    task = "text-to-video-synthesis"
    name = "modelscope_video-generation"
    description = "视频生成服务，针对英文文本输入，生成一段描述视频；如果是中文输入同时依赖插件modelscope_text-translation-zh2en翻译成英文"
    parameters = [{"name": "text", "description": "用户输入的文本信息", "required": True, "type": "string"}]
    timeout_s = 600.0

    def _local_parse_input(self, **arguments: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return ({"text": arguments["text"]},), {"output_video": str(self.store.new_path(".mp4"))}

    def _remote_parse_input(self, **arguments: Any) -> dict[str, Any]:
        return {"input": {"text": arguments["text"]}}

    def _parse_output(self, origin_result: Any, remote: bool = True) -> Any:
        art = self.store.register(origin_result["output_video"], mime_type="video/mp4")
        return ToolOutput({"video": art.uri}, [art])

    async def _remote_output(self, data: Any) -> Any:
        art = self.store.save_bytes(await self._fetch_media(data["output_video"]), mime_type="video/mp4")
        return ToolOutput({"video": art.uri}, [art])


class TextToImageTool(ModelscopePipelineTool):
    """Local: a ModelScope text-to-image pipeline (SDXL); remote: DashScope wanx, as in the seed."""

    default_model = "AI-ModelScope/stable-diffusion-xl-base-1.0"
    task = "text-to-image-synthesis"
    name = "image_gen"
    description = "AI绘画（图像生成）服务，输入文本描述和图像分辨率，返回根据文本信息绘制的图片"
    parameters = [{"name": "text", "description": "详细描述了希望生成的图像具有什么内容，例如人物、环境、动作等细节描述",
                   "required": True, "type": "string"},
                  {"name": "resolution", "description": "格式是 数字*数字，表示希望生成的图像的分辨率大小，"
                   "选项有[1024*1024, 720*1280, 1280*720]", "required": False, "type": "string"}]
    RESOLUTIONS = ("1024*1024", "720*1280", "1280*720")

    def __init__(self, config: ModelScopeConfig | dict[str, Any] | None = None, *,
                 artifact_store: ArtifactStore | None = None, dashscope: Any = None):
        super().__init__(config, artifact_store=artifact_store)
        self.dashscope_config = dashscope  # a DashScopeConfig for the remote mode; environment otherwise

    def api_token(self) -> str | None:  # remote mode is DashScope's
        return env_value("DASHSCOPE_API_KEY", self.dashscope_config.api_key.get_secret_value()
                         if self.dashscope_config is not None and self.dashscope_config.api_key else None)

    def _how_to_get(self) -> str:
        return super()._how_to_get().replace("MODELSCOPE_API_TOKEN (environment or .env) to call the hosted "
                                             "inference API", "DASHSCOPE_API_KEY (environment or .env) to "
                                             "generate with DashScope wanx")

    def _local_parse_input(self, **arguments: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return ({"text": arguments["text"]},), {}

    async def _remote_call(self, **arguments: Any) -> Any:
        from raygent.toolhub.dashscope_tools import WanxImageGeneration

        resolution = arguments.get("resolution")
        wanx = WanxImageGeneration(self.dashscope_config, artifact_store=self.artifact_store)
        return await wanx.call(text=arguments["text"],
                               resolution=resolution if resolution in self.RESOLUTIONS else "1280*720")

    def _parse_output(self, origin_result: Any, remote: bool = True) -> Any:
        import io

        from PIL import Image

        array = origin_result["output_imgs"][0]
        image = Image.fromarray(array[..., ::-1].astype("uint8"))  # the pipeline's images are BGR
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        art = self.store.save_bytes(buf.getvalue(), mime_type="image/png", metadata={"model": self.model})
        return ToolOutput({"image": art.uri}, [art])


MODELSCOPE_TOOLS: dict[str, type[ModelscopePipelineTool]] = {
    t.name: t for t in (TexttoSpeechTool, TextAddressTool, TextInfoExtractTool, TextNerTool,  # type: ignore[misc]
                        TranslationEn2ZhTool, TranslationZh2EnTool, ImageChatTool, TextToVideoTool, TextToImageTool)
}


def modelscope_tools(configs: dict[str, ModelScopeConfig | dict[str, Any]] | None = None, *,
                     artifact_store: ArtifactStore | None = None,
                     names: list[str] | None = None) -> list[ModelscopePipelineTool]:
    """Instances of the ModelScope tools (all, or `names`), each with its own config if given."""
    configs = configs or {}
    unknown = (set(names or []) | set(configs)) - set(MODELSCOPE_TOOLS)
    if unknown:
        raise ValueError(f"unknown ModelScope tools {sorted(unknown)}; available: {sorted(MODELSCOPE_TOOLS)}")
    return [cls(configs.get(name), artifact_store=artifact_store) for name, cls in MODELSCOPE_TOOLS.items()
            if names is None or name in names]
