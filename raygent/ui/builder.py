"""The builder agent: a conversation that fills the builder's form (AgentFabric's "Create" chat).

The builder is a raygent Agent with one tool, `configure_agent`, whose JSON schema is the form
(its `tools` limited to the built-in names). When the model calls it, the arguments become the
form's new values; the model's reply tells the user what changed."""

from __future__ import annotations

from typing import Any

from raygent.toolhub.base import Tool
from raygent.ui.config import AgentForm

BUILDER_SYSTEM = (
    "You help the user build an AI agent. From what the user wants, call configure_agent once with: a short "
    "name (lowercase, dashes), a one-sentence description, instructions for the agent (how it should behave), "
    "the tools it needs (only from the list), and two or three conversation starters (example requests). "
    "Then tell the user in one or two sentences what you configured.")


class ConfigureAgentTool(Tool):
    """`configure_agent`: the form as a tool. `applied` holds the last arguments it got."""

    name = "configure_agent"
    description = ("Fill in the agent builder's form: name, description, instructions, tools and conversation "
                   "starters of the agent the user wants. 配置智能体。")
    timeout_s = 10.0

    def __init__(self, tool_names: list[str], tool_help: dict[str, str] | None = None):
        help_text = "; ".join(f"{n}: {tool_help[n][:60]}" for n in tool_names if tool_help and n in tool_help)
        self.parameters = {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 40, "description": "the agent's name, e.g. address-helper"},
            "description": {"type": "string", "maxLength": 160, "description": "what the agent does, one sentence"},
            "instructions": {"type": "string", "maxLength": 400, "description": "how the agent should behave"},
            "tools": {"type": "array", "maxItems": 6, "items": {"type": "string", "enum": list(tool_names)},
                      "description": "the tools it needs" + (f" ({help_text})" if help_text else "")},
            "starters": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 120},
                         "description": "example requests a user could start with"}},
            "required": ["name", "description", "instructions", "tools"]}
        self.applied: dict[str, Any] | None = None

    async def call(self, **arguments: Any) -> Any:
        self.applied = arguments
        return {"ok": True, "form": arguments}


def apply(form: AgentForm, arguments: dict[str, Any], known_tools: list[str]) -> AgentForm:
    """The form with the builder's arguments filled in (an unusable name keeps the old one)."""
    update: dict[str, Any] = {}
    name = str(arguments.get("name") or "").strip().lower().replace(" ", "-")
    try:
        AgentForm(name=name)
        update["name"] = name
    except ValueError:
        pass
    for key in ("description", "instructions"):
        if isinstance(arguments.get(key), str) and arguments[key].strip():
            update[key] = arguments[key].strip()
    if isinstance(arguments.get("tools"), list):
        update["tools"] = [t for t in arguments["tools"] if t in known_tools]
    if isinstance(arguments.get("starters"), list):
        update["starters"] = [str(s) for s in arguments["starters"] if str(s).strip()]
    return form.model_copy(update=update)


async def build_turn(llm: Any, form: AgentForm, text: str, tool_names: list[str],
                     tool_help: dict[str, str] | None = None, history: list[Any] | None = None) -> tuple[AgentForm, str, Any]:
    """One turn of the builder conversation: (the updated form, the builder's reply, its RunResult)."""
    from raygent.actors.agent import Agent

    tool = ConfigureAgentTool(tool_names, tool_help)
    current = f"The form now: {form.model_dump_json(include={'name', 'description', 'instructions', 'tools'})}"
    agent = Agent(llm, tools=[tool], system=BUILDER_SYSTEM + "\n" + current, max_steps=2,
                  params={"max_tokens": 400}, history=history or [])
    result = await agent.run(text)
    new_form = apply(form, tool.applied, tool_names) if tool.applied else form
    reply = result.answer or ("I updated the form." if tool.applied else result.error or "")
    return new_form, reply, result


__all__ = ["BUILDER_SYSTEM", "ConfigureAgentTool", "apply", "build_turn"]
