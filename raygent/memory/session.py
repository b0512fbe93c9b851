"""The agent's hook into memory: load a session, write each message as it is produced, budget the prompt.

`Agent(memory=..., session_id=...)` wraps its store in a SessionMemory and calls it at three points:
`begin_turn` (load what the store holds, then store the new user message), `add` (every message the
turn produces, written before the agent moves on, so a crash loses nothing already produced) and
`context` (the history the prompt gets, within the token budget). The store may live in this process
or be a MemoryStore actor; the hook is the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raygent.memory.history import (
    MEMORY_KEY,
    HistoryBudget,
    choose_cut,
    memory_kind,
    newest_within,
    parse_pointer,
    summarise,
    summary_message,
    truncate_tool_result,
)
from raygent.memory.store import MemoryStore, StoredMessage, check_session_id, new_session_id
from raygent.memory.tokens import TokenCounter, count_each, fallback_counter
from raygent.schema import Message

log = logging.getLogger("raygent.memory")

INTERRUPTED = ("ERROR: no result: the agent process stopped (crashed or was killed) before this tool call "
               "returned. Call the tool again if its result is still needed.")


@dataclass
class _Entry:
    seq: int
    message: Message
    tokens: int | None = None  # of the prompt view (tool results truncated)


class SessionMemory:
    """One session of a store, as the agent sees it (see the module docstring).

    store: a MemoryStore (or its actor proxy), or a path to a SQLite file.
    llm: the model that summarises and whose tokenizer counts the budget (the agent's by default).
    counter: a token counter to use instead of the model's (`fallback_counter()` for models without one).
    stored_result_chars: how much of a tool result the agent writes to the store (the prompt sees
        `budget.tool_result_chars` of it, plus a pointer to the row).
    """

    def __init__(self, store: MemoryStore | str | Path | Any, session_id: str | None = None, *, llm: Any = None,
                 budget: HistoryBudget | dict | None = None, counter: TokenCounter | None = None,
                 stored_result_chars: int = 200_000):
        if isinstance(store, (str, Path)):
            from raygent.memory.sqlite_store import SQLiteMemoryStore

            store = SQLiteMemoryStore(store)
        for method in ("append_many", "records"):
            if not hasattr(store, method):
                raise TypeError(f"memory= must be a MemoryStore, its actor proxy, or a SQLite path; got {store!r}")
        self.store = store
        self.session_id = check_session_id(session_id) if session_id else new_session_id()
        self.llm = llm
        self.budget = budget if isinstance(budget, HistoryBudget) else HistoryBudget(**(budget or {}))
        self.counter = counter
        self.stored_result_chars = stored_result_chars
        self.last_error: str | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._entries: list[_Entry] = []
        self._summary: _Entry | None = None
        self._window_start = -1  # messages with seq <= this are covered by the summary or dropped
        self._last_seq = -1

    # -- agent hook ------------------------------------------------------------------------
    async def begin_turn(self, user_message: Message) -> list[Message]:
        """Catch up with the store, close calls left open by a crash, store the user message.
        Returns the session's messages (without memory's summaries) for the agent's history.

        A retried turn (its message carries the `metadata["run_id"]` of a user message already
        stored) is not stored again: the turn goes on from what the store holds."""
        await self.refresh()
        await self._close_interrupted_calls()
        run_id = user_message.metadata.get("run_id")
        if not run_id or self._turn_start(run_id) is None:
            await self.add(user_message)
        return self.messages()

    def finished_answer(self, run_id: str) -> str | None:
        """The answer stored for turn `run_id` when that turn already ended (its last message is an
        answer: an assistant message without calls); None when it is unknown or unfinished."""
        start = self._turn_start(run_id)
        if start is None:
            return None
        turn = [e.message for e in self._entries[start + 1:]]
        last = turn[-1] if turn else None
        if last is not None and last.role == "assistant" and not last.tool_calls and last.content:
            return last.content
        return None

    def _turn_start(self, run_id: str) -> int | None:
        for i in range(len(self._entries) - 1, -1, -1):
            message = self._entries[i].message
            if message.role == "user" and message.metadata.get("run_id") == run_id:
                return i
        return None

    async def add(self, message: Message) -> int:
        """Store one message now (before the agent does anything else) and track it."""
        seq = await self.store.append(self.session_id, message)
        self._track(seq, message)
        return seq

    async def context(self) -> list[Message]:
        """The history for the prompt: latest summary + newer messages, within the token budget."""
        tail = self._tail()
        await self._count(tail)
        total = sum(e.tokens or 0 for e in tail) + (self._summary.tokens or 0 if self._summary else 0)
        if total > self.budget.max_tokens:
            await self._shrink(tail)
        return self.view()

    def new_session(self, session_id: str | None = None) -> str:
        """Continue in a fresh session (the old one stays in the store)."""
        self.session_id = check_session_id(session_id) if session_id else new_session_id()
        self._reset_state()
        return self.session_id

    # -- reading ---------------------------------------------------------------------------
    async def refresh(self) -> int:
        """Read messages other writers (or an earlier process) appended; returns how many."""
        new: list[StoredMessage] = await self.store.records(self.session_id, after=self._last_seq)
        for r in new:
            self._track(r.seq, r.message)
        return len(new)

    def messages(self) -> list[Message]:
        return [e.message for e in self._entries]

    def view(self) -> list[Message]:
        out = [self._summary.message] if self._summary else []
        return out + [self._prompt_form(e) for e in self._tail()]

    async def resolve(self, uri: str) -> Message:
        """The full message a truncation pointer (`memory://SESSION/SEQ`) refers to."""
        session, seq = parse_pointer(uri)
        found = await self.store.get_message(session, seq)
        if found is None:
            raise KeyError(f"{uri} is not in this memory store")
        return found.message

    # -- internals -------------------------------------------------------------------------
    def _track(self, seq: int, message: Message) -> None:
        self._last_seq = max(self._last_seq, seq)
        if memory_kind(message) == "summary":
            self._summary = _Entry(seq, message)
            self._window_start = max(self._window_start, int(message.metadata.get("covers_through", -1)))
        else:
            self._entries.append(_Entry(seq, message))

    def _tail(self) -> list[_Entry]:
        return [e for e in self._entries if e.seq > self._window_start]

    def _prompt_form(self, e: _Entry) -> Message:
        return truncate_tool_result(e.message, self.session_id, e.seq, self.budget.tool_result_chars)

    async def _count(self, entries: list[_Entry]) -> None:
        todo = [e for e in entries if e.tokens is None]
        if self._summary is not None and self._summary.tokens is None:
            todo.append(self._summary)
        if todo:
            forms = [self._prompt_form(e) for e in todo]
            try:
                counts = await count_each(self.llm, forms, self.counter)
            except Exception as exc:  # e.g. the model's actor is gone: estimate rather than fail the turn
                log.warning("session %s: model token count failed (%s: %s); using the fallback counter",
                            self.session_id, type(exc).__name__, exc)
                counts = fallback_counter().each(forms)
            for e, n in zip(todo, counts):
                e.tokens = int(n)

    async def _shrink(self, tail: list[_Entry]) -> None:
        keep = self.budget.keep_recent_tokens or self.budget.max_tokens // 2
        cut = choose_cut([e.message.role for e in tail], [e.tokens or 0 for e in tail], keep)
        if cut <= 0:
            return  # the current turn alone is over budget: nothing older left to shrink
        old = tail[:cut]
        if self.budget.summarize and self.llm is not None:
            # the summariser reads the newest part of the old turns that fits its input budget
            read = old[newest_within([e.tokens or 0 for e in old], self.budget.summary_input_tokens or 0):]
            try:
                text = await summarise(self.llm, self._summary.message if self._summary else None,
                                       [self._prompt_form(e) for e in read], max_tokens=self.budget.summary_max_tokens)
                msg = summary_message(text, covers_from=old[0].seq, covers_through=old[-1].seq,
                                      read_from=read[0].seq)
                seq = await self.store.append(self.session_id, msg)
                self._track(seq, msg)
                await self._count([])
                self.last_error = None
                return
            except Exception as exc:  # the turn goes on without a summary rather than failing
                self.last_error = f"summary failed ({type(exc).__name__}: {exc}); dropped the oldest turns instead"
                log.warning("session %s: %s", self.session_id, self.last_error)
        self._window_start = old[-1].seq  # dropped from the prompt only; the store keeps them

    async def _close_interrupted_calls(self) -> None:
        """A crash between a tool call and its result leaves the call open; models and APIs expect a
        result for every call, so store an explicit 'interrupted' result for each open one."""
        last_calls = next((i for i in range(len(self._entries) - 1, -1, -1)
                           if self._entries[i].message.role == "assistant" and self._entries[i].message.tool_calls),
                          None)
        if last_calls is None:
            return
        answered = {e.message.tool_call_id for e in self._entries[last_calls + 1:] if e.message.role == "tool"}
        missing = [c for c in self._entries[last_calls].message.tool_calls or [] if c.id not in answered]
        if not missing:
            return
        msgs = [Message(role="tool", name=c.name, tool_call_id=c.id, content=INTERRUPTED,
                        metadata={MEMORY_KEY: "interrupted"}) for c in missing]
        seqs = await self.store.append_many(self.session_id, msgs)
        for seq, m in zip(seqs, msgs):
            self._track(seq, m)


def attach_memory(memory: Any, session_id: str | None, llm: Any) -> SessionMemory:
    """What `Agent(memory=..., session_id=...)` accepts: a SessionMemory, a store (or proxy), or a path."""
    if isinstance(memory, SessionMemory):
        if session_id and session_id != memory.session_id:
            memory.new_session(session_id)
        if memory.llm is None:
            memory.llm = llm
        return memory
    return SessionMemory(memory, session_id, llm=llm)
