"""What of a long session reaches the prompt: a token budget, LLM summaries, truncated tool results.

The store keeps every message; the prompt gets a *view*: the latest summary (a system message
covering everything up to some sequence number) followed by the newer messages verbatim, with
long tool results cut to a head plus a pointer (`memory://SESSION/SEQ`) to the full row and the
URIs of any artifacts. When the view exceeds the budget, the oldest whole turns are summarised by
the model and the summary is stored as a message, so a resumed session does not summarise again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, model_validator

from raygent.schema import GenerationParams, Message

#: metadata key marking messages that memory itself wrote ("summary", "interrupted")
MEMORY_KEY = "raygent_memory"
SUMMARY_PREFIX = "Summary of the earlier conversation (older turns, condensed):\n"
_SUMMARY_SYSTEM = (
    "You condense conversations between a user and an assistant that uses tools. Write a short summary "
    "in the conversation's language that keeps every fact the user gave (names, numbers, preferences), "
    "what was asked, which tools returned what, decisions taken and anything still open. No preamble.")


class HistoryBudget(BaseModel):
    """How much history the prompt may hold, and how it is shrunk."""

    max_tokens: int = Field(3000, gt=0, description="history tokens allowed in the prompt (model tokenizer)")
    keep_recent_tokens: int | None = Field(None, gt=0, description="verbatim tail kept after summarising "
                                                                    "(default: half of max_tokens)")
    tool_result_chars: int = Field(4000, gt=0, description="longer tool results are cut in the prompt")
    summary_max_tokens: int = Field(256, gt=0)
    summary_input_tokens: int | None = Field(None, gt=0, description="most history one summary request reads "
                                                                      "(default: max_tokens), newest first")
    summarize: bool = Field(True, description="False: drop the oldest turns instead of summarising them")

    @model_validator(mode="after")
    def _tail_fits(self) -> HistoryBudget:
        if self.keep_recent_tokens is None:
            self.keep_recent_tokens = max(1, self.max_tokens // 2)
        if self.summary_input_tokens is None:
            self.summary_input_tokens = self.max_tokens
        if self.keep_recent_tokens > self.max_tokens:
            raise ValueError(f"keep_recent_tokens ({self.keep_recent_tokens}) must not exceed max_tokens "
                             f"({self.max_tokens})")
        return self


def memory_kind(m: Message) -> str | None:
    return m.metadata.get(MEMORY_KEY) if m.metadata else None


def pointer(session_id: str, seq: int) -> str:
    return f"memory://{session_id}/{seq}"


def parse_pointer(uri: str) -> tuple[str, int]:
    """`memory://SESSION/SEQ` -> (session, seq)."""
    if not uri.startswith("memory://") or "/" not in uri[9:]:
        raise ValueError(f"not a memory pointer: {uri!r} (expected memory://SESSION/SEQ)")
    session, seq = uri[9:].rsplit("/", 1)
    return session, int(seq)


def truncate_tool_result(m: Message, session_id: str, seq: int, max_chars: int) -> Message:
    """A tool message cut to `max_chars`, ending with where the full result lives."""
    content = m.content or ""
    if m.role != "tool" or len(content) <= max_chars:
        return m
    note = f"\n... [truncated: {len(content)} chars in total; full result at {pointer(session_id, seq)}"
    if m.artifacts:
        note += "; artifacts: " + ", ".join(a.uri for a in m.artifacts)
    return m.model_copy(update={"content": content[:max_chars] + note + "]",
                                "metadata": {**m.metadata, "truncated_from": pointer(session_id, seq)}})


def choose_cut(roles: Sequence[str], tokens: Sequence[int], keep_tokens: int) -> int:
    """Index where the verbatim tail starts: the earliest user message whose tail fits `keep_tokens`,
    else the last user message (the current turn is never summarised). 0 means nothing to cut."""
    starts = [i for i, r in enumerate(roles) if r == "user"]
    if not starts:
        return 0
    suffix = [0] * (len(tokens) + 1)
    for i in range(len(tokens) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + tokens[i]
    for i in starts:
        if suffix[i] <= keep_tokens:
            return i
    return starts[-1]


def transcript(messages: Sequence[Message], max_chars: int) -> str:
    lines = []
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            calls = "; ".join(f"{c.name}({c.arguments})" for c in m.tool_calls)
            lines.append(f"assistant: {m.content + ' ' if m.content else ''}[calls {calls}]")
        elif m.role == "tool":
            text = m.content or ""
            lines.append(f"tool {m.name or ''}: {text[:max_chars]}{'...' if len(text) > max_chars else ''}")
        elif m.role == "system":
            lines.append(f"(earlier summary) {(m.content or '').removeprefix(SUMMARY_PREFIX)}")
        else:
            lines.append(f"{m.role}: {m.content or ''}")
    return "\n".join(lines)


async def summarise(llm: Any, previous: Message | None, messages: Sequence[Message], *, max_tokens: int,
                    tool_chars: int = 500) -> str:
    """Ask the model for a summary of `messages` (folding in the previous summary)."""
    body = transcript(([previous] if previous else []) + list(messages), tool_chars)
    request = [Message.system(_SUMMARY_SYSTEM), Message.user(f"Conversation:\n{body}\n\nSummary:")]
    completion = await llm.chat(request, None, GenerationParams(max_tokens=max_tokens, tool_choice="none"))
    text = (completion.text or "").strip()
    if not text:
        raise ValueError("the model returned an empty summary")
    return text


def summary_message(text: str, covers_from: int, covers_through: int, read_from: int | None = None) -> Message:
    """`covers_*`: the messages the summary replaces in the prompt; `read_from`: the first one the model
    actually read (older ones beyond `summary_input_tokens` were only in the previous summary, if any)."""
    return Message(role="system", content=SUMMARY_PREFIX + text,
                   metadata={MEMORY_KEY: "summary", "covers_from": covers_from, "covers_through": covers_through,
                             "read_from": covers_from if read_from is None else read_from})


def newest_within(tokens: Sequence[int], limit: int) -> int:
    """Start index of the longest suffix whose tokens fit `limit` (always at least the last item)."""
    total, start = 0, len(tokens)
    while start > 0 and total + tokens[start - 1] <= limit:
        total += tokens[start - 1]
        start -= 1
    return min(start, max(0, len(tokens) - 1))
