"""The builder agent: a conversation that fills the builder's form (AgentFabric's "Create" chat).

The builder asks the model for one call of `configure_agent`, a tool whose JSON schema is the form
(its `tools` limited to the offered names), with tool_choice naming it: a grammar-constrained model
(the embedded default) can only produce a well-formed form, and a remote one is told to call it.
Left to choose, the embedded 0.5B answered junk or called another tool (measured: 0 of 2 requests
filled the form). The arguments become the form's new values; the reply lists what changed."""

from __future__ import annotations

from typing import Any

from raygent.toolhub.base import Tool
from raygent.ui.config import AgentForm

BUILDER_SYSTEM = (
    "You help the user build an AI agent. From what the user wants, fill in the agent's form: a short name "
    "(lowercase words joined by dashes), a one-sentence description of what it does, instructions telling the agent "
    "how to behave, only the tools it needs, and two conversation starters (requests a user might send it).\n"
    "Example: for \"an agent that tells me the time in other cities\" the form is "
    '{"name": "world-clock", "description": "Tells the current time in any city.", '
    '"instructions": "Find the city\'s time zone, call current_datetime for it and answer with the local time.", '
    '"tools": ["current_datetime"], "starters": ["What time is it in Tokyo?", "Is it night in New York now?"]}')

class ConfigureAgentTool(Tool):
    """`configure_agent`: the form as a tool. `applied` holds the last arguments it got."""

    name = "configure_agent"
    description = "Saves."
    timeout_s = 10.0

    def __init__(self, tool_names: list[str], tool_help: dict[str, str] | None = None):
        # no descriptions inside the schema: a small model copies them into the form's values
        self.parameters = {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 40},
            "description": {"type": "string", "maxLength": 160},
            "instructions": {"type": "string", "maxLength": 400},
            "tools": {"type": "array", "maxItems": 6, "items": {"type": "string", "enum": list(tool_names)}},
            "starters": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 120}}},
            "required": ["name", "description", "instructions", "tools", "starters"]}
        self.tool_help = {n: (tool_help or {}).get(n, "") for n in tool_names}
        self.applied: dict[str, Any] | None = None

    async def call(self, **arguments: Any) -> Any:
        self.applied = arguments
        return {"ok": True, "form": arguments}


def apply(form: AgentForm, arguments: dict[str, Any], known_tools: list[str]) -> AgentForm:
    """The form with the builder's arguments filled in (an unusable name keeps the old one)."""
    update: dict[str, Any] = {}
    name = str(arguments.get("name") or "").strip().lower().replace(" ", "-").replace("_", "-")
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
    """One turn of the builder conversation: (the updated form, the reply, the model's Completion)."""
    from raygent.schema import GenerationParams, Message

    tool = ConfigureAgentTool(tool_names, tool_help)
    offered = "\n".join(f"- {name}: {(help_text or '').split('.')[0][:90]}" for name, help_text in tool.tool_help.items())
    current = f"The form now: {form.model_dump_json(include={'name', 'description', 'instructions', 'tools'})}"
    system = f"{BUILDER_SYSTEM}\nThe tools there are:\n{offered}\n{current}"
    messages = [Message.system(system), *(history or []), Message.user(text)]
    completion = await llm.chat(messages, [tool.spec], GenerationParams(tool_choice=tool.name, max_tokens=400))
    calls = [c for c in completion.tool_calls if c.name == tool.name]
    if not calls:
        problem = "; ".join(completion.parse_errors) or (completion.text or "no call")[:200]
        return form, f"The builder model did not fill in the form ({problem}). Try rephrasing.", completion
    arguments = dict(calls[0].arguments)
    if str(arguments.get("description", "")).strip() in ("", ConfigureAgentTool.description):
        # the 0.5B model often copies the tool's own description: the user's words say it better
        arguments["description"] = text.strip()[:160]
    new_form = apply(form, arguments, tool_names)
    return new_form, describe_changes(form, new_form), completion


def describe_changes(old: AgentForm, new: AgentForm) -> str:
    """What the builder changed, in one line per field."""
    lines = []
    for key in ("name", "description", "instructions", "tools", "starters"):
        before, after = getattr(old, key), getattr(new, key)
        if before != after:
            shown = ", ".join(after) if isinstance(after, list) else after
            lines.append(f"- {key}: {shown or '(empty)'}")
    return ("I filled in the form:\n" + "\n".join(lines)) if lines else "The form already says that; nothing changed."


__all__ = ["BUILDER_SYSTEM", "ConfigureAgentTool", "apply", "build_turn", "describe_changes"]
