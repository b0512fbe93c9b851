"""The seed's prompt generators, action parsers and agent types -> raygent tool-call formats.

In the seed a PromptGenerator wrote the prompt and an ActionParser read the reply; in raygent one
ToolCallFormat (`raygent.llm_pool.formats`) does both, so each seed name maps to a format name.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class AgentType(str, Enum):
    """The seed's agent types (values as in the seed), each implying a format."""

    DEFAULT = "default"
    MS_AGENT = "ms-agent"
    MRKL = "mrkl"
    REACT = "react"
    Messages = "messages"


RAYGENT_FORMATS = ("native", "hermes", "msagent", "react")

#: seed prompt generator / action parser class names -> raygent format names
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

#: seed agent types -> format; DEFAULT keeps the model's own format (hermes for the embedded Qwen
#: models, which the seed's MS format would serve worse)
AGENT_TYPE_FORMATS: dict[str, str | None] = {
    AgentType.DEFAULT.value: None,
    AgentType.MS_AGENT.value: "msagent",
    AgentType.MRKL.value: "react",
    AgentType.REACT.value: "react",
    AgentType.Messages.value: "native",
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
