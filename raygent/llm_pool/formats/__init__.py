"""Tool-call formats: how tools are shown to a model and how its reply is read back."""

from __future__ import annotations

from raygent.llm_pool.formats.base import ParsedReply, ToolCallFormat
from raygent.llm_pool.formats.hermes import HermesFormat
from raygent.llm_pool.formats.jsonrepair import JSONRepairError, find_json_objects, loads_lenient
from raygent.llm_pool.formats.msagent import MSAgentFormat
from raygent.llm_pool.formats.native import NativeFormat
from raygent.llm_pool.formats.react import ReActFormat

FORMATS: dict[str, type[ToolCallFormat]] = {
    "native": NativeFormat,
    "hermes": HermesFormat,
    "msagent": MSAgentFormat,
    "react": ReActFormat,
}


def get_format(name: str | ToolCallFormat) -> ToolCallFormat:
    """A format instance by name (case-insensitive); an instance is returned as is."""
    if isinstance(name, ToolCallFormat):
        return name
    cls = FORMATS.get(str(name).strip().lower())
    if cls is None:
        raise ValueError(f"unknown tool-call format {name!r}; choose one of: {', '.join(FORMATS)}")
    return cls()


__all__ = [
    "FORMATS",
    "HermesFormat",
    "JSONRepairError",
    "MSAgentFormat",
    "NativeFormat",
    "ParsedReply",
    "ReActFormat",
    "ToolCallFormat",
    "find_json_objects",
    "get_format",
    "loads_lenient",
]
