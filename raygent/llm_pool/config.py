"""One model config format for every backend, and `build_chat_model` to turn an entry into a model.

A config file maps names to entries, in the shape of the seed's `cfg_model_template.json`:

    {"qwen-plus":  {"type": "dashscope", "model": "qwen-plus", "generate_cfg": {"top_p": 0.8}},
     "local-qwen": {"type": "transformers", "path": "~/models/Qwen2.5-0.5B-Instruct", "device": "cpu"},
     "gguf":       {"type": "llama_cpp", "path": "~/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"},
     "vllm-qwen":  {"type": "vllm", "model_id": "Qwen/Qwen2.5-7B-Instruct", "url": "http://head:8000/v1",
                    "tensor_parallel_size": 2, "accelerator_type": "A10G"},
     "ms-agent":   {"type": "modelscope", "model_id": "damo/ModelScope-Agent-7B", "model_revision": "v1.0.0"}}

Files are JSON or YAML; string values may use ${VAR} / ${VAR:-default}, filled from the
environment after the nearest `.env` is loaded (API keys are read from there too, never stored in
the config: `api_key_env` names the variable). Seed keys are accepted as aliases (`model_revision`,
`api_base`, `prompt_generator`, HF-style `max_new_tokens`); unknown keys are kept and passed to
the backend where it takes them (e.g. llama.cpp's `n_ctx`).

The seed-compatible layer (the compat package: `Config`, `LLMFactory`) adapts this module; nothing
in the LLM pool imports it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from raygent.llm_pool.base import ChatModel
from raygent.llm_pool.errors import BackendConfigError
from raygent.llm_pool.factory import format_for_prompt_generator, generation_params, llama_cpp_spec
from raygent.schema import GenerationParams

BackendType = Literal["llama_cpp", "transformers", "openai", "dashscope", "modelscope", "vllm", "scripted",
                      "custom_llm"]

#: other spellings of the backend types (the seed's and common ones)
TYPE_ALIASES: dict[str, str] = {
    "gguf": "llama_cpp", "embedded": "llama_cpp", "raygent": "llama_cpp", "llama.cpp": "llama_cpp",
    "llamacpp": "llama_cpp", "hf": "transformers", "huggingface": "transformers",
    "openai_compatible": "openai", "openai-compatible": "openai", "ollama": "openai", "qwen": "dashscope",
    "modelscope_api": "modelscope",
}
#: entry keys that are aliases of a field (seed and OpenAI-client spellings)
_KEY_ALIASES = {"model_revision": "revision", "api_base": "url", "base_url": "url", "openai_api_base": "url",
                "prompt_generator": "format", "generation": "generate_cfg", "extra_headers": "headers"}
#: per-model defaults for ModelScope models whose repos need them (the seed's agent model: Qwen-7B
#: based, remote code, no chat template in its tokenizer, trained on the MSAgent format)
MODELSCOPE_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "damo/ModelScope-Agent-7B": {"format": "msagent", "chat_template": "chatml", "trust_remote_code": True},
    "damo/ModelScope-Agent-14B": {"format": "msagent", "chat_template": "chatml", "trust_remote_code": True},
}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ModelConfig(BaseModel):
    """One model entry. Which fields matter depends on `type` (see docs/llm_backends.md)."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    type: BackendType
    model: str | None = None  # a model name (remote APIs, embedded models) or HF id
    model_id: str | None = None  # a hub id (ModelScope / Hugging Face); also vLLM's served name
    path: str | None = None  # a local folder or GGUF file
    gguf_file: str | None = None
    revision: str | None = None
    url: str | None = None  # the API root of a remote/OpenAI-compatible server (ending in /v1)
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    format: str | None = None  # tool-call format: native / hermes / msagent / react (or a seed generator name)
    generate_cfg: dict[str, Any] = Field(default_factory=dict)
    # local engines
    device: str | None = None
    device_map: str | dict[str, Any] | None = None
    dtype: str | None = None
    # vLLM on Ray Serve LLM (see vllm_llm_config)
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    accelerator_type: str | None = None
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    deployment: dict[str, Any] = Field(default_factory=dict)  # Ray Serve deployment options
    placement_strategy: Literal["PACK", "STRICT_PACK", "SPREAD", "STRICT_SPREAD"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for alias, field in _KEY_ALIASES.items():
            if alias in out:
                value = out.pop(alias)
                out.setdefault(field, value)
        if isinstance(out.get("type"), str):
            t = out["type"].strip().lower()
            out["type"] = TYPE_ALIASES.get(t, t)
        if "format" in out and out["format"] is not None:
            out["format"] = format_for_prompt_generator(out["format"])
        return out

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        from raygent.llm_pool.formats import FORMATS

        if value is not None and value not in FORMATS:
            raise ValueError(f"unknown tool-call format {value!r}; choose one of {sorted(FORMATS)}")
        return value

    @property
    def extras(self) -> dict[str, Any]:
        """Keys not declared above (backend-specific arguments such as n_ctx)."""
        return dict(self.model_extra or {})

    def params(self) -> GenerationParams:
        """Default GenerationParams of this model (from generate_cfg; unused keys are ignored)."""
        return generation_params(self.generate_cfg)[0]

    def served_name(self) -> str:
        return self.model_id or self.model or self.name


class ModelConfigError(BackendConfigError):
    """A model config entry is missing something its backend needs."""


class ConfigError(ValueError):
    """A config file is missing, unreadable, or in a format this install cannot read."""


# -- loading ------------------------------------------------------------------------------------
#: environment variables naming the model config file (the seed's .env template used these)
MODEL_CONFIG_VARS = ("MODEL_CONFIG_FILE", "LLM_CONFIG_FILE")


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a `.json`, `.yaml` or `.yml` file (YAML needs PyYAML)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ConfigError(f"{p} is YAML, but PyYAML is not installed: pip install pyyaml "
                              f"(or convert the file to JSON)") from exc
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p} is not valid JSON: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def load_env(path: str | os.PathLike | None = None, *, override: bool = False) -> Path | None:
    """Load a `.env` file into os.environ (python-dotenv); returns the file used, or None.

    Without `path`, the nearest `.env` from the working directory upwards is used, as the seed did.
    Existing environment variables win unless `override`.
    """
    from dotenv import find_dotenv, load_dotenv

    if path is None:
        found = find_dotenv(usecwd=True)
        if not found:
            return None
        env_path = Path(found)
    else:
        env_path = Path(path).expanduser()
        if not env_path.is_file():
            raise ConfigError(f".env file not found: {env_path}")
    load_dotenv(env_path, override=override)
    return env_path


def default_model_config_file() -> Path:
    """MODEL_CONFIG_FILE / LLM_CONFIG_FILE if set (the seed's .env names), else the bundled template
    (`cfg_model_template.json`, a data file shipped in the compat package's templates folder)."""
    for var in MODEL_CONFIG_VARS:
        if os.environ.get(var):
            return Path(os.environ[var])
    return Path(str(resources.files("raygent") / "compat" / "templates" / "cfg_model_template.json"))


def expand_env(value: Any) -> Any:
    """Fill ${VAR} and ${VAR:-default} in strings (recursively); an unset VAR without default is an error."""
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            raise ModelConfigError(f"the model config refers to ${{{var}}}, which is not set (environment or .env)")

        return _ENV_REF.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


def parse_model_configs(data: Mapping[str, Any]) -> dict[str, ModelConfig]:
    """name -> entry mapping (already loaded) -> validated ModelConfigs; errors name the entry."""
    from pydantic import ValidationError

    out: dict[str, ModelConfig] = {}
    for name, entry in data.items():
        if not isinstance(entry, Mapping):
            raise ModelConfigError(f"model config entry {name!r} must be a mapping, got {type(entry).__name__}")
        try:
            out[name] = ModelConfig(**{**expand_env(dict(entry)), "name": name})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise ModelConfigError(f"model config entry {name!r} is invalid: {problems}") from None
    return out


def load_model_configs(source: str | os.PathLike | Mapping[str, Any] | None = None, *,
                       env_file: str | os.PathLike | None = None) -> dict[str, ModelConfig]:
    """Read a model config (JSON/YAML file, mapping, or None for $MODEL_CONFIG_FILE / the bundled
    template), after loading `.env` (`env_file`, else the nearest one) into the environment.
    A model described by RAYGENT_LLM_* variables is added under its RAYGENT_LLM_NAME ("env")."""
    used = load_env(env_file)
    if source is None:
        data: Mapping[str, Any] = read_config_file(default_model_config_file())
    elif isinstance(source, Mapping):
        data = source  # a seed Config too: parse_model_configs copies entries into plain dicts
    else:
        data = read_config_file(source)
    configs = parse_model_configs(data)
    from_env = model_config_from_env(used)
    if from_env is not None:
        configs[from_env.name] = from_env
    return configs


class EnvModelSettings(BaseSettings):
    """One model described by RAYGENT_LLM_* variables (environment or a .env file), for deployments
    configured by environment only, e.g. RAYGENT_LLM_TYPE=openai, RAYGENT_LLM_MODEL=qwen2.5:7b,
    RAYGENT_LLM_URL=http://localhost:11434/v1, RAYGENT_LLM_TEMPERATURE=0.2."""

    model_config = SettingsConfigDict(env_prefix="RAYGENT_LLM_", env_file=".env", extra="ignore")

    name: str = "env"
    type: str | None = None
    model: str | None = None
    model_id: str | None = None
    path: str | None = None
    gguf_file: str | None = None
    url: str | None = None
    api_key_env: str | None = None
    format: str | None = None
    device: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None


def model_config_from_env(env_file: str | os.PathLike | None = ".env") -> ModelConfig | None:
    """The RAYGENT_LLM_* model, or None when RAYGENT_LLM_TYPE is not set."""
    settings = EnvModelSettings(_env_file=env_file)  # type: ignore[call-arg]
    if not settings.type:
        return None
    data = settings.model_dump(exclude_none=True)
    gen = {k: data.pop(k) for k in ("temperature", "top_p", "max_tokens", "seed") if k in data}
    name = data.pop("name")
    return parse_model_configs({name: {**data, "generate_cfg": gen}})[name]


# -- building -----------------------------------------------------------------------------------
def as_model_config(cfg: ModelConfig | Mapping[str, Any], name: str | None = None) -> ModelConfig:
    """A ModelConfig from a ModelConfig or one entry mapping (named `name`)."""
    if isinstance(cfg, ModelConfig):
        return cfg
    key = name or str(cfg.get("name") or "model")
    return parse_model_configs({key: cfg})[key]


def chat_model_spec(cfg: ModelConfig | Mapping[str, Any]) -> tuple[type[ChatModel], dict[str, Any]]:
    """(backend class, constructor arguments) for an entry: enough to build it here or in a Ray actor."""
    c = as_model_config(cfg)
    builder = _BUILDERS[c.type]
    return builder(c)


def build_chat_model(cfg: ModelConfig | Mapping[str, Any], name: str | None = None, **overrides: Any) -> ChatModel:
    """A ChatModel from one config entry; `overrides` win over the entry's constructor arguments.

    The model gets `default_params` (GenerationParams from generate_cfg). Nothing is loaded or
    contacted yet: local weights load on first use, remote servers are reached on the first request.
    """
    c = as_model_config(cfg, name)
    cls, kwargs = chat_model_spec(c)
    model = cls(**{**kwargs, **overrides})
    model.default_params = c.params()  # type: ignore[attr-defined]
    return model


def _kw(c: ModelConfig, *keys: str) -> dict[str, Any]:
    """Constructor arguments taken from the entry's extra keys, when present."""
    extra = c.extras
    return {k: extra[k] for k in keys if k in extra}


def _require(c: ModelConfig, value: Any, what: str) -> Any:
    if not value:
        raise ModelConfigError(f"model config {c.name!r} (type {c.type}) needs {what}")
    return value


def _llama_cpp(c: ModelConfig) -> tuple[type[ChatModel], dict[str, Any]]:
    entry = {**c.extras, "type": c.type, "path": c.path, "model": c.model or c.model_id, "format": c.format}
    return llama_cpp_spec({k: v for k, v in entry.items() if v is not None})


def _transformers(c: ModelConfig) -> tuple[type[ChatModel], dict[str, Any]]:
    from raygent.llm_pool.transformers_backend import TransformersChatModel

    model = _require(c, c.path or c.model_id or c.model, "`path` (a local model folder) or `model_id`")
    kwargs: dict[str, Any] = {"model": os.path.expanduser(model) if c.path else model, "gguf_file": c.gguf_file,
                              "device": c.device, "device_map": c.device_map, "dtype": c.dtype,
                              "revision": c.revision, "model_name": c.name or None,
                              **_kw(c, "max_batch_size", "batch_wait_ms", "trust_remote_code", "chat_template",
                                    "batch_wait_max_ms", "template_tools", "local_files_only", "model_kwargs")}
    if c.format:
        kwargs["format"] = c.format
    return TransformersChatModel, {k: v for k, v in kwargs.items() if v is not None}


def _remote_common(c: ModelConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model_name": c.name or None, **_kw(c, "timeout")}
    if c.format:
        kwargs["format"] = c.format
    if c.api_key_env:
        kwargs["api_key_env"] = c.api_key_env
    return kwargs


def _openai(c: ModelConfig) -> tuple[type[ChatModel], dict[str, Any]]:
    from raygent.llm_pool.openai_backend import OpenAICompatibleChatModel

    model = _require(c, c.model or c.model_id, "`model` (the name the server serves)")
    kwargs = {"model": model, "base_url": c.url, "headers": c.headers or None, **_remote_common(c),
              **_kw(c, "max_retries", "stream_usage", "extra_body")}
    return OpenAICompatibleChatModel, {k: v for k, v in kwargs.items() if v is not None}


def _dashscope(c: ModelConfig) -> tuple[type[ChatModel], dict[str, Any]]:
    from raygent.llm_pool.dashscope_backend import DashScopeChatModel

    model = _require(c, c.model or c.model_id, "`model` (e.g. qwen-plus)")
    kwargs = {"model": model, "base_url": c.url, **_remote_common(c), **_kw(c, "workspace", "extra_parameters")}
    return DashScopeChatModel, {k: v for k, v in kwargs.items() if v is not None}


def _modelscope(c: ModelConfig) -> tuple[type[ChatModel], dict[str, Any]]:
    """A cached ModelScope model on the transformers backend, or (with `url` or `api: true`) the API."""
    from raygent.llm_pool.modelscope_backend import ModelScopeAPIChatModel, ModelScopeChatModel

    if c.url or c.extras.get("api"):
        model = _require(c, c.model_id or c.model, "`model_id` (the ModelScope model id)")
        kwargs = {"model": model, "base_url": c.url, "headers": c.headers or None, **_remote_common(c)}
        return ModelScopeAPIChatModel, {k: v for k, v in kwargs.items() if v is not None}
    model_id = _require(c, c.model_id or c.model, "`model_id` ('org/name' on modelscope.cn)")
    defaults = dict(MODELSCOPE_MODEL_DEFAULTS.get(model_id, {}))
    if c.path:  # an explicit folder wins over the cache lookup
        return _transformers(c.model_copy(update={"format": c.format or defaults.get("format")}))
    kwargs: dict[str, Any] = {**defaults, "model_id": model_id, "revision": c.revision,
                              "cache_dir": c.extras.get("cache_dir"), "device": c.device,
                              "device_map": c.device_map, "dtype": c.dtype, "model_name": c.name or None,
                              **_kw(c, "max_batch_size", "batch_wait_ms", "trust_remote_code", "chat_template",
                                    "batch_wait_max_ms", "download", "template_tools", "model_kwargs")}
    if c.format:
        kwargs["format"] = c.format
    return ModelScopeChatModel, {k: v for k, v in kwargs.items() if v is not None}


def _vllm(c: ModelConfig) -> tuple[type[ChatModel], dict[str, Any]]:
    """vLLM runs on the GPU cluster under Ray Serve LLM; raygent reaches it over its OpenAI API."""
    from raygent.llm_pool.openai_backend import OpenAICompatibleChatModel

    url = _require(c, c.url, "`url`: the OpenAI endpoint of the Ray Serve LLM app that runs it (e.g. "
                             "http://head-node:8000/v1; deploy it with the serve config from "
                             "raygent.llm_pool.vllm.vllm_serve_config, see docs/llm_backends.md)")
    kwargs = {"model": c.served_name(), "base_url": url, "headers": c.headers or None, **_remote_common(c),
              **_kw(c, "max_retries", "extra_body")}
    kwargs.setdefault("format", "native")
    return OpenAICompatibleChatModel, {k: v for k, v in kwargs.items() if v is not None}


def _scripted(c: ModelConfig) -> tuple[type[ChatModel], dict[str, Any]]:
    from raygent.llm_pool.scripted import ScriptedChatModel, ToolThenAnswerModel

    rule = c.extras.get("tool_then_answer")
    if rule:
        if not isinstance(rule, dict) or not rule.get("tool") or not rule.get("argument"):
            raise ModelConfigError(f"model config {c.name!r}: tool_then_answer needs {{tool: NAME, argument: NAME}}")
        return ToolThenAnswerModel, {"model_name": c.model or c.name, **rule}
    kwargs: dict[str, Any] = {"replies": list(c.extras.get("replies") or []), "model_name": c.model or c.name}
    if c.format:
        kwargs["format"] = c.format
    return ScriptedChatModel, kwargs


def _custom(c: ModelConfig) -> tuple[type[ChatModel], dict[str, Any]]:
    raise ModelConfigError(f"model config {c.name!r} has type custom_llm, which cannot be built from a config: "
                           f"subclass raygent.llm_pool.base.ChatModel and pass an instance to the agent directly")


_BUILDERS = {"llama_cpp": _llama_cpp, "transformers": _transformers, "openai": _openai, "dashscope": _dashscope,
             "modelscope": _modelscope, "vllm": _vllm, "scripted": _scripted, "custom_llm": _custom}
