"""The seed's prompt generators, action parsers and agent types -> raygent tool-call formats.

In the seed a PromptGenerator wrote the prompt and an ActionParser read the reply; in raygent one
ToolCallFormat (`raygent.llm_pool.formats`) does both, so each seed name maps to a format name.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

# the seed-name -> format table lives with the config reader, which accepts those names too
from raygent.llm_pool.factory import PROMPT_GENERATOR_FORMATS, RAYGENT_FORMATS, format_for_prompt_generator

__all__ = ["AGENT_TYPE_FORMATS", "PROMPT_GENERATOR_FORMATS", "RAYGENT_FORMATS", "AgentType", "format_for_agent_type",
           "format_for_prompt_generator", "format_label"]


class AgentType(str, Enum):
    """The seed's agent types (values as in the seed), each implying a format."""

    DEFAULT = "default"
    MS_AGENT = "ms-agent"
    MRKL = "mrkl"
    REACT = "react"
    Messages = "messages"


#: seed agent types -> format; DEFAULT keeps the model's own format (hermes for the embedded Qwen
#: models, which the seed's MS format would serve worse)
AGENT_TYPE_FORMATS: dict[str, str | None] = {
    AgentType.DEFAULT.value: None,
    AgentType.MS_AGENT.value: "msagent",
    AgentType.MRKL.value: "react",
    AgentType.REACT.value: "react",
    AgentType.Messages.value: "native",
}


def format_for_agent_type(agent_type: AgentType | str | None) -> str | None:
    if agent_type is None:
        return None
    key = agent_type.value if isinstance(agent_type, AgentType) else str(agent_type).lower()
    if key not in AGENT_TYPE_FORMATS:
        raise ValueError(f"unknown agent_type {agent_type!r}; known: {sorted(AGENT_TYPE_FORMATS)}")
    return AGENT_TYPE_FORMATS[key]


def format_label(fmt: Any) -> str | None:
    """The name of a format given as a name or a ToolCallFormat."""
    if fmt is None or isinstance(fmt, str):
        return fmt
    return getattr(fmt, "name", None)
