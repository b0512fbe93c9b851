"""Seed tool configs and seed-style tool objects -> raygent Tools.

The seed's tool config enables tools by its own names (`modelscope_text-address`, ...); each maps
to a raygent built-in where one exists. The rest (speech, video, image generation, web tools, ...)
need models or services that this offline build does not have: they are reported with the reason,
never silently dropped. When raygent gains such a tool, giving its row a raygent name enables it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from raygent.toolhub.base import FunctionTool, Tool
from raygent.toolhub.builtin import BUILTIN_TOOLS


@dataclass(frozen=True)
class SeedTool:
    """A seed tool name: the raygent built-in that replaces it, or why there is none yet."""

    raygent_name: str | None
    reason: str = ""


_OFFLINE = "this offline build has no {what}; it needs {needs}"

#: the seed's tool names (TOOL_INFO_LIST) -> raygent
SEED_TOOLS: dict[str, SeedTool] = {
    "modelscope_text-address": SeedTool("address_parse"),
    "modelscope_text-ner": SeedTool(None, _OFFLINE.format(what="NER model", needs="a ModelScope NER pipeline")),
    "modelscope_text-ie": SeedTool(None, _OFFLINE.format(what="information-extraction model",
                                                         needs="a ModelScope SiameseUIE pipeline")),
    "modelscope_speech-generation": SeedTool(None, _OFFLINE.format(
        what="text-to-speech model", needs="a TTS model (the seed used ModelScope sambert-hifigan)")),
    "modelscope_video-generation": SeedTool(None, _OFFLINE.format(
        what="text-to-video model", needs="a video diffusion model and a GPU")),
    "modelscope_image-chat": SeedTool(None, _OFFLINE.format(what="vision-language model", needs="an mPLUG-Owl/VL model")),
    "modelscope_text-translation-en2zh": SeedTool(None, _OFFLINE.format(what="translation model",
                                                                        needs="a ModelScope CSANMT pipeline")),
    "modelscope_text-translation-zh2en": SeedTool(None, _OFFLINE.format(what="translation model",
                                                                        needs="a ModelScope CSANMT pipeline")),
    "image_gen": SeedTool(None, _OFFLINE.format(what="image generation model", needs="Stable Diffusion and a GPU")),
    "amap_weather": SeedTool(None, "needs network access to the AMap API and an AMap token"),
    "code_interpreter": SeedTool("code_interpreter"),
    "wordart_texture_generation": SeedTool(None, "needs the DashScope WordArt API (network + DASHSCOPE_API_KEY)"),
    "web_search": SeedTool(None, "needs network access and a search API key"),
    "web_browser": SeedTool(None, "needs network access"),
    "qwen_vl": SeedTool(None, "needs the DashScope Qwen-VL API (network + DASHSCOPE_API_KEY)"),
    "style_repaint": SeedTool(None, "needs the DashScope style-repaint API (network + DASHSCOPE_API_KEY)"),
}

def tool_aliases() -> dict[str, str]:
    """Every name that selects a raygent tool: raygent names, and seed names that map to one."""
    aliases = {name: name for name in BUILTIN_TOOLS}
    aliases.update({seed: t.raygent_name for seed, t in SEED_TOOLS.items()
                    if t.raygent_name and t.raygent_name in BUILTIN_TOOLS})
    return aliases


def tools_from_config(tool_cfg: Mapping[str, Any]) -> tuple[dict[str, Tool], dict[str, str]]:
    """Enabled (`use: true`) entries -> ({raygent name: Tool}, {config name: why unavailable})."""
    tools: dict[str, Tool] = {}
    unavailable: dict[str, str] = {}
    aliases = tool_aliases()
    for cfg_name, entry in tool_cfg.items():
        if not isinstance(entry, Mapping) or not entry.get("use", False):
            continue
        name = aliases.get(cfg_name)
        if name is not None:
            if name not in tools:
                tools[name] = BUILTIN_TOOLS[name]()
            continue
        seed = SEED_TOOLS.get(cfg_name)
        if seed is not None:
            reason = seed.reason or f"maps to raygent tool {seed.raygent_name!r}, which is not installed"
        else:
            reason = (f"unknown tool name; raygent tools: {sorted(BUILTIN_TOOLS)}, seed tools: {sorted(SEED_TOOLS)} "
                      f"(pass your own tools with additional_tool_list)")
        unavailable[cfg_name] = reason
    return tools, unavailable


class SeedToolAdapter(Tool):
    """Wraps a seed-style tool (name, description, parameter list, `__call__`/`_local_call`).

    Sync callables run in a worker thread so a slow tool never blocks the agent's event loop. A
    `{'result': x}` return (the seed's convention) is unwrapped to `x`, so the model and the exec
    results see the value itself.
    """

    def __init__(self, obj: Any, name: str | None = None):
        self.obj = obj
        self.name = name or getattr(obj, "name", "")
        if not self.name:
            raise ValueError(f"seed-style tool {obj!r} has no name")
        self.description = getattr(obj, "description", "") or ""
        params = getattr(obj, "parameters", None) or []
        # the seed's parameter schema made `required` default to True
        self.parameters = [{**p, "required": p.get("required", True)} for p in params] if isinstance(
            params, list) else params
        self.timeout_s = float(getattr(obj, "timeout_s", 60.0))

    async def call(self, **arguments: Any) -> Any:
        fn = self.obj if callable(self.obj) else getattr(self.obj, "_local_call", None)
        if fn is None:
            raise TypeError(f"tool {self.name!r} has neither __call__ nor _local_call")
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):
            out = await fn(**arguments)
        else:
            out = await asyncio.to_thread(fn, **arguments)
        return out["result"] if isinstance(out, dict) and set(out) == {"result"} else out


def as_tool(obj: Any, name: str | None = None) -> Tool:
    """A raygent Tool from a Tool (instance or class), a seed-style tool object, or a typed function."""
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, type) and issubclass(obj, Tool):
        return obj()
    if hasattr(obj, "description") and (hasattr(obj, "parameters") or hasattr(obj, "_local_call")):
        return SeedToolAdapter(obj, name)
    if callable(obj):
        return FunctionTool(obj, name=name) if name else FunctionTool(obj)
    raise TypeError(f"not a tool: {obj!r} (pass a raygent Tool, an @tool function, or a seed-style tool object)")


def additional_tools(items: Mapping[str, Any] | Iterable[Any] | None) -> dict[str, Tool]:
    """The seed passed `{name: tool}`; a list of tools works too."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, Mapping) else ((None, t) for t in items)
    out: dict[str, Tool] = {}
    for key, obj in pairs:
        t = as_tool(obj, key if key and not getattr(obj, "name", None) else None)
        out[t.spec.name] = t
    return out
