"""ReAct (Yao et al. 2022): Thought / Action / Action Input / Observation / Final Answer.

Works with any instruction model, no special tokens needed. Generation stops before
"Observation:" so the model never invents a tool result; the result comes back as an
"Observation: ..." user turn (see `render_turns` for why not an assistant continuation).
"""

from __future__ import annotations

import re
from typing import Any

from raygent.llm_pool.formats.base import ParsedReply, ToolCallFormat
from raygent.llm_pool.formats.common import (
    CallShapeError,
    call_error,
    coerce_calls,
    decode_arguments,
    dumps,
    find_spec,
    render_turns,
    resolve_tool_name,
    with_tools_section,
)
from raygent.llm_pool.formats.jsonrepair import JSONRepairError, loads_lenient, strip_code_fence
from raygent.schema import Message, ToolCall, ToolSpec

#: a label at the start of a line, tolerating markdown ("**Action:**"), numbering and full-width colons
_LABEL = re.compile(
    r"^[ \t>*#-]*(thought|action[ \t_]*input|action|observation|final[ \t_]*answer)"
    r"[ \t]*\d*[ \t*]*[:\uff1a][ \t*]*",
    re.I | re.M,
)
_NO_ACTION = {"", "none", "n/a", "na", "null", "no action", "nothing"}
_FINAL = "final_answer"
EXAMPLE = 'Action: <tool name>\nAction Input: {"<argument name>": <value>}'


def _kind(label: str) -> str:
    return re.sub(r"[\s_]+", "_", label.lower())


class ReActFormat(ToolCallFormat):
    """ReAct text protocol; `text` is the final answer, or the thought when there are actions."""

    name = "react"
    stop = ["\nObservation:", "Observation:"]

    def render_tools(self, tools: list[ToolSpec]) -> str:
        if not tools:
            return ""
        lines = "\n".join(f"{t.name}: {t.description} Parameters: {dumps(t.parameters)}" for t in tools)
        names = ", ".join(t.name for t in tools)
        return (
            "Answer the following questions as best you can. You have access to the following tools:\n\n"
            f"{lines}\n\nUse the following format:\n\n"
            "Question: the input question you must answer\n"
            "Thought: you should always think about what to do\n"
            f"Action: the action to take, should be one of [{names}]\n"
            "Action Input: the input to the action, a JSON object of arguments\n"
            "Observation: the result of the action\n"
            "... (this Thought/Action/Action Input/Observation can repeat N times)\n"
            "Thought: I now know the final answer\n"
            "Final Answer: the final answer to the original input question"
        )

    @staticmethod
    def render_call(call: ToolCall) -> str:
        return f"Action: {call.name}\nAction Input: {dumps(call.arguments)}"

    def _render_assistant(self, m: Message) -> str:
        thought = f"Thought: {m.content.strip()}\n" if (m.content or "").strip() else ""
        return thought + "\n".join(self.render_call(c) for c in m.tool_calls or [])

    def render_messages(self, messages: list[Message], tools: list[ToolSpec] | None) -> list[dict[str, Any]]:
        """Calls become Thought/Action/Action Input text, results "Observation: ..." user turns.

        Earlier plain assistant answers are shown as "Final Answer: ..." so the history keeps
        teaching the model the protocol.
        """
        if tools:
            messages = [
                m.model_copy(update={"content": f"Final Answer: {m.content}"})
                if m.role == "assistant" and not m.tool_calls and m.content and "Final Answer" not in m.content
                else m
                for m in messages
            ]
        turns = render_turns(messages, self._render_assistant, lambda m: f"Observation: {m.content or ''}")
        return with_tools_section(turns, self.render_tools(tools or []))

    def _parse(self, text: str, tools: list[ToolSpec] | None) -> ParsedReply:
        marks = list(_LABEL.finditer(text))
        sections = [
            (_kind(m.group(1)), text[m.end() : marks[k + 1].start() if k + 1 < len(marks) else len(text)].strip())
            for k, m in enumerate(marks)
        ]
        preamble = text[: marks[0].start()].strip() if marks else text.strip()
        kinds = [k for k, _ in sections]
        first_action = kinds.index("action") if "action" in kinds else None
        first_final = kinds.index(_FINAL) if _FINAL in kinds else None
        if first_final is not None and (first_action is None or first_final < first_action):
            return ParsedReply(text=text[marks[first_final].end() :].strip())  # the answer runs to the end
        before = sections if first_action is None else sections[:first_action]
        thought = "\n".join(([preamble] if preamble else []) + [c for k, c in before if k == "thought" and c])
        if first_action is None:
            return ParsedReply(text=thought.strip())
        calls: list[ToolCall] = []
        errors: list[str] = []
        for k in range(first_action, len(sections)):
            if sections[k][0] != "action":
                continue
            nxt = sections[k + 1] if k + 1 < len(sections) else None
            given = nxt[1] if nxt and nxt[0] == "action_input" else None
            result = self._action(sections[k][1], given, tools)
            if isinstance(result, str):  # "Action: Final Answer"
                return ParsedReply(text=result)
            calls, errors = calls + result[0], errors + result[1]
        if not calls and not errors and first_final is not None:  # only "Action: None" before the answer
            return ParsedReply(text=text[marks[first_final].end() :].strip())
        return ParsedReply(text=thought.strip(), tool_calls=calls, errors=errors)

    def _action(
        self, action: str, given: str | None, tools: list[ToolSpec] | None
    ) -> tuple[list[ToolCall], list[str]] | str:
        """One Action (+ its Action Input) -> calls and errors, or a final answer given as an action."""
        action = strip_code_fence(action) if action.lstrip().startswith("```") else action
        if re.match(r"\s*(\{|\[\s*\{)", action):  # LangChain JSON blob: {"action": ..., "action_input": ...}
            try:
                value = loads_lenient(action)
            except JSONRepairError as e:
                return [], [call_error("the Action", str(e), EXAMPLE)]
            if isinstance(value, dict) and _kind(str(value.get("action", ""))) == _FINAL:
                return str(value.get("action_input", ""))
            return coerce_calls(value, tools, "the Action", EXAMPLE)
        first, _, rest = action.partition("\n")
        raw_name = first.strip().strip("`'\"*").strip()
        if given is None and rest.strip():  # input written on the lines after the name
            given = rest.strip()
        m = re.fullmatch(r"([\w.\-]+)\s*[:\s]\s*([{\uff5b].*)", raw_name, re.S)  # search {"q": ...}
        if m and given is None:
            raw_name, given = m.group(1), m.group(2)
        m = re.fullmatch(r"([\w.\-]+)\s*[\[(](.*)[\])]", raw_name, re.S)  # search[Paris] / search("Paris")
        if m:
            raw_name, given = m.group(1), given if given is not None else m.group(2)
        raw_name = raw_name.strip("[]()` ").strip()
        if raw_name.lower() in _NO_ACTION:
            return [], []
        if _kind(raw_name) == _FINAL:
            return _plain(given or "")
        name = resolve_tool_name(raw_name, tools)
        body = (given or "").strip()
        body = strip_code_fence(body) if body.startswith("```") else body
        try:
            return [ToolCall(name=name, arguments=decode_arguments(body or None, find_spec(name, tools)))], []
        except CallShapeError as e:
            return [], [call_error(f"the Action Input of {name!r}", str(e), EXAMPLE)]


def _plain(text: str) -> str:
    """A final answer given as Action Input may be a JSON string: unquote it."""
    try:
        value = loads_lenient(text)
    except JSONRepairError:
        return text.strip()
    return value if isinstance(value, str) else text.strip()
