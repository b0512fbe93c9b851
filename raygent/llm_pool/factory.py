"""The pieces of model building that every config reader shares: generation parameters from a
`generate_cfg`, tool-call format names (raygent's, and the seed's prompt generator names as
aliases), and the constructor arguments of the llama.cpp and scripted backends.

`raygent.llm_pool.config` builds every backend from one entry with these; the seed-compatible
`LLMFactory` (in the compat package) is a thin adapter over the same functions. Nothing here imports
either of them, so the dependency runs one way: compat -> llm_pool.config -> llm_pool.factory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from raygent.schema import GenerationParams

logger = logging.getLogger(__name__)

# -- generation parameters ----------------------------------------------------------------------
#: generate_cfg keys -> GenerationParams fields (the seed's HF-style names included)
PARAM_ALIASES = {"temperature": "temperature", "top_p": "top_p", "max_tokens": "max_tokens",
                 "max_new_tokens": "max_tokens", "max_length": "max_tokens", "stop": "stop", "seed": "seed",
                 "tool_choice": "tool_choice"}


def generation_params(generate_cfg: Mapping[str, Any] | None) -> tuple[GenerationParams, dict[str, Any]]:
    """generate_cfg -> (GenerationParams, the keys raygent does not use, e.g. top_k, use_raw_prompt).

    `max_length` (prompt + output in the seed's HF backends) is read as an output budget, an
    approximation: the backends here budget only generated tokens.
    """
    values: dict[str, Any] = {}
    ignored: dict[str, Any] = {}
    for key, value in (generate_cfg or {}).items():
        target = PARAM_ALIASES.get(key)
        if target is None:
            ignored[key] = value
        elif target == "stop" and isinstance(value, str):
            values[target] = [value]
        elif target not in values or key == target:  # the explicit name wins over an alias
            values[target] = value
    if ignored:
        logger.debug("generate_cfg keys not used by raygent: %s", sorted(ignored))
    return GenerationParams(**values), ignored


# -- tool-call format names ---------------------------------------------------------------------
RAYGENT_FORMATS = ("native", "hermes", "msagent", "react")

#: the seed's prompt generator / action parser class names -> raygent format names (in the seed a
#: PromptGenerator wrote the prompt and an ActionParser read the reply; one format does both here)
PROMPT_GENERATOR_FORMATS: dict[str, str] = {
    "MSPromptGenerator": "msagent",
    "MsActionParser": "msagent",
    "ChatGLMPromptGenerator": "hermes",
    "ChatGLMActionParser": "hermes",
    "QwenPromptGenerator": "hermes",
    "QwenActionParser": "hermes",
    "MrklPromptGenerator": "react",
    "MRKLPromptGenerator": "react",
    "MRKLActionParser": "react",
    "MessagesGenerator": "native",
    "OpenAiFunctionsActionParser": "native",
}


def format_for_prompt_generator(value: Any) -> Any:
    """A seed generator/parser name (or instance), a raygent format name, or a ToolCallFormat -> a format.

    Strings come back as raygent format names; ToolCallFormat instances are returned unchanged.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value in PROMPT_GENERATOR_FORMATS:
            return PROMPT_GENERATOR_FORMATS[value]
        if value.lower() in RAYGENT_FORMATS:
            return value.lower()
        raise ValueError(f"unknown prompt generator / format {value!r}; use a raygent format "
                         f"{list(RAYGENT_FORMATS)} or a seed name {sorted(PROMPT_GENERATOR_FORMATS)}")
    from raygent.llm_pool.formats import ToolCallFormat

    if isinstance(value, ToolCallFormat):
        return value
    cls_name = value.__name__ if isinstance(value, type) else type(value).__name__
    if cls_name in PROMPT_GENERATOR_FORMATS:
        return PROMPT_GENERATOR_FORMATS[cls_name]
    raise TypeError(f"cannot use {value!r} as a prompt generator: pass a raygent format name "
                    f"{list(RAYGENT_FORMATS)}, a ToolCallFormat, or a seed generator name")


def format_name(fmt: Any) -> Any:
    """Seed generator names become raygent format names; formats (and None) pass through."""
    return format_for_prompt_generator(fmt) if isinstance(fmt, str) else fmt


def entry_format(entry: Mapping[str, Any]) -> str | None:
    """The tool-call format an entry chooses, by raygent name or by seed prompt generator."""
    fmt = entry.get("format") or entry.get("prompt_generator")
    return format_for_prompt_generator(fmt) if fmt else None


# -- constructor arguments of the in-process backends -------------------------------------------
#: LlamaCppChatModel keyword arguments a config entry may set directly
LLAMA_KEYS = ("n_ctx", "n_threads", "grammar", "few_shot", "n_batch", "verbose", "n_gpu_layers", "chat_format",
              "lora", "lora_scale", "merge_lora", "parallel", "session_cache", "answer_invented", "continue_chains",
              "next_call_bias", "fill_options", "call_described", "stop_repeated_calls", "continue_left_parts")


def llama_cpp_spec(entry: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """(LlamaCppChatModel, constructor arguments) for an entry: `path` (a GGUF file) or `model` /
    `model_id` (an embedded model name; the default embedded model when none), the LLAMA_KEYS it
    sets, `llama_kwargs` (passed through) and its format."""
    from raygent.llm_pool.embedded import DEFAULT_MODEL
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    model = entry.get("path") or entry.get("model") or entry.get("model_id") or DEFAULT_MODEL
    kwargs: dict[str, Any] = {"model": os.path.expanduser(str(model)) if entry.get("path") else str(model)}
    kwargs.update({k: entry[k] for k in LLAMA_KEYS if k in entry})
    kwargs.update(entry.get("llama_kwargs") or {})
    fmt = entry_format(entry)
    if fmt:
        kwargs["format"] = fmt
    return LlamaCppChatModel, kwargs


def scripted_spec(name: str, entry: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """(ScriptedChatModel, constructor arguments): `replies` to play back (tests)."""
    from raygent.llm_pool.scripted import ScriptedChatModel

    kwargs: dict[str, Any] = {"replies": list(entry.get("replies") or []), "model_name": entry.get("model") or name}
    fmt = entry_format(entry)
    if fmt:
        kwargs["format"] = fmt
    return ScriptedChatModel, kwargs
