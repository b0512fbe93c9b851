"""`LLMFactory.build_llm(name, cfg)`: the seed's model-config entry -> a raygent ChatModel.

A thin adapter: models are built by `raygent.llm_pool` (`llm_pool.factory` for generation
parameters, format names and the llama.cpp / scripted backends, `llm_pool.config` for the pool
backends); this module keeps the seed's names and call shape. One table, `BACKENDS`, maps each
config `type` to a builder; a type with no builder (custom_llm) fails with
`UnsupportedBackendError`, which says what to do.

The returned model carries `default_params` (GenerationParams from the entry's `generate_cfg`) and
`compat_spec` (its class and constructor arguments), so AgentExecutor can rebuild it with another
tool-call format or construct it inside a Ray actor instead of pickling a loaded model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from raygent.compat.config import Config
from raygent.llm_pool.config import as_model_config, chat_model_spec
from raygent.llm_pool.factory import format_name, generation_params, llama_cpp_spec, scripted_spec
from raygent.schema import GenerationParams


class UnsupportedBackendError(NotImplementedError):
    """The config names a backend type that this build of raygent cannot construct yet."""


@dataclass
class LLMSpec:
    """How a model was built: enough to build it again (elsewhere, or with changed arguments)."""

    name: str
    type: str
    cls: type
    kwargs: dict[str, Any] = field(default_factory=dict)
    params: GenerationParams = field(default_factory=GenerationParams)
    ignored_generate_cfg: dict[str, Any] = field(default_factory=dict)

    def with_kwargs(self, **overrides: Any) -> LLMSpec:
        if "format" in overrides:
            overrides["format"] = format_name(overrides["format"])
        return replace(self, kwargs={**self.kwargs, **overrides})

    def build(self, **overrides: Any) -> Any:
        """Construct the model (cheap for llama.cpp: the weights load on first use)."""
        spec = self.with_kwargs(**overrides)
        llm = spec.cls(**spec.kwargs)
        llm.default_params = spec.params
        llm.ignored_generate_cfg = spec.ignored_generate_cfg
        llm.compat_spec = spec
        return llm


@dataclass(frozen=True)
class Backend:
    """One row of the backend table: a builder, or (None) what the missing backend will need."""

    builder: Callable[[str, dict[str, Any]], LLMSpec] | None
    extra: str | None = None
    needs: str = ""


def _build_llama_cpp(name: str, entry: dict[str, Any]) -> LLMSpec:
    cls, kwargs = llama_cpp_spec(entry)
    return LLMSpec(name=name, type=str(entry.get("type")), cls=cls, kwargs=kwargs)


def _build_scripted(name: str, entry: dict[str, Any]) -> LLMSpec:
    cls, kwargs = scripted_spec(name, entry)
    return LLMSpec(name=name, type="scripted", cls=cls, kwargs=kwargs)


def _build_from_model_config(name: str, entry: dict[str, Any]) -> LLMSpec:
    """The LLM-pool backends: the entry is read by raygent.llm_pool.config (one format for all)."""
    cls, kwargs = chat_model_spec(as_model_config(entry, name))
    return LLMSpec(name=name, type=str(entry.get("type")), cls=cls, kwargs=kwargs)


_LLAMA = Backend(_build_llama_cpp, "llama", "`path` to a GGUF file, or `model` = an embedded model name")

#: config `type` -> backend. Adding a backend = giving its row a builder.
BACKENDS: dict[str, Backend] = {
    "llama_cpp": _LLAMA,
    "gguf": _LLAMA,
    "embedded": _LLAMA,
    "raygent": _LLAMA,
    "scripted": Backend(_build_scripted, None, "`replies`: the list of replies to play back (tests)"),
    "openai": Backend(_build_from_model_config, "openai",
                      "`model` and OPENAI_API_KEY (or `url` / `api_base` for an OpenAI-compatible server)"),
    "dashscope": Backend(_build_from_model_config, "dashscope", "`model` and DASHSCOPE_API_KEY"),
    "modelscope": Backend(_build_from_model_config, "modelscope",
                          "`model_id` (+ `model_revision`) in the local ModelScope cache, or `url` for the API"),
    "custom_llm": Backend(None, None, "a subclass of raygent.llm_pool.base.ChatModel, passed to AgentExecutor "
                                      "directly instead of through a config"),
    "vllm": Backend(_build_from_model_config, "vllm", "`model_id` and `url` of the Ray Serve LLM app"),
    "transformers": Backend(_build_from_model_config, "hf", "`path` (a local model folder) or `model_id`"),
}


class LLMFactory:
    """Builds a raygent ChatModel from a seed-shaped model config."""

    @staticmethod
    def build_llm(model_name: str, cfg: Config | dict[str, Any] | None = None, **overrides: Any) -> Any:
        """`cfg` is the whole model config (name -> entry), as in the seed, or one entry.

        With no cfg, `model_name` may be an embedded model name or a GGUF path. `overrides` are
        constructor arguments that win over the entry's (e.g. `format="msagent"`, `n_ctx=8192`).
        The cfg is not modified (the seed popped its `type`).
        """
        entry = _entry(model_name, cfg)
        llm_type = str(entry.get("type", "")).strip()
        if not llm_type:
            raise ValueError(f"model config {model_name!r} has no 'type'; known types: {sorted(BACKENDS)}")
        backend = BACKENDS.get(llm_type.lower())
        if backend is None:
            raise ValueError(f"unknown llm type {llm_type!r} for {model_name!r}; known types: {sorted(BACKENDS)}")
        if backend.builder is None:
            extra = f"the extra `pip install 'raygent[{backend.extra}]'` and " if backend.extra else ""
            raise UnsupportedBackendError(
                f"llm type {llm_type!r} (config {model_name!r}) is not available in this build of raygent from a "
                f"config: it needs {extra}{backend.needs}. Config types that build: "
                f"{sorted(t for t, b in BACKENDS.items() if b.builder is not None)}."
            )
        spec = backend.builder(model_name, entry)
        spec.params, spec.ignored_generate_cfg = generation_params(entry.get("generate_cfg"))
        return spec.build(**overrides)


def _entry(model_name: str, cfg: Config | dict[str, Any] | None) -> dict[str, Any]:
    if cfg is None:
        from raygent.llm_pool.embedded import EMBEDDED_MODELS

        if model_name in EMBEDDED_MODELS:
            return {"type": "embedded", "model": model_name}
        if os.path.isfile(os.path.expanduser(model_name)):
            return {"type": "gguf", "path": model_name}
        raise ValueError(f"no config given and {model_name!r} is neither an embedded model "
                         f"({sorted(EMBEDDED_MODELS)}) nor a GGUF file")
    data = cfg.to_dict() if isinstance(cfg, Config) else dict(cfg)
    if model_name in data and isinstance(data[model_name], dict):
        return dict(data[model_name])
    if "type" in data:  # a single entry was passed
        return data
    raise KeyError(f"model {model_name!r} is not in the model config; available: {sorted(data)}")
