"""The agent loop (coordinator): ask the model, run the tools it calls, feed results back, repeat.

The loop is written once against two interfaces, a ChatModel (`stream`, `get_model_name`) and a
tool registry (`list_specs`, `call_many`); either may be an in-process object or a Ray actor
proxy from `raygent.runtime.deploy`, and the loop cannot tell the difference.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from raygent.llm_pool.base import as_params
from raygent.schema import (
    AgentEvent,
    Artifact,
    Delta,
    GenerationParams,
    Message,
    RunResult,
    ToolCall,
    ToolCallRecord,
    ToolResult,
    Usage,
)
from raygent.telemetry.runs import run_trace
from raygent.telemetry.tracing import new_run_id
from raygent.toolhub.base import FunctionTool, Tool
from raygent.toolhub.registry import ToolRegistry

DEFAULT_SYSTEM = ("You are a helpful assistant. Call a tool when the request needs one; after a tool returns, "
                  "answer the user directly from its result, quoting the relevant values. Otherwise answer directly.")


def _as_registry(tools: Any) -> Any:
    if tools is None:
        return ToolRegistry()
    if hasattr(tools, "list_specs") and hasattr(tools, "call_many"):
        return tools  # a registry, a hub, or an actor proxy of one
    items: list[Tool] = []
    for t in tools:
        if isinstance(t, Tool):
            items.append(t)
        elif isinstance(t, type) and issubclass(t, Tool):
            items.append(t())
        elif callable(t):
            items.append(FunctionTool(t))
        else:
            raise TypeError(f"not a tool: {t!r} (pass Tool instances, @tool functions, or plain typed functions)")
    return ToolRegistry(items)


def _call_key(call: ToolCall) -> str:
    return call.name + json.dumps(call.arguments, sort_keys=True, ensure_ascii=False, default=str)


class Agent:
    """An LLM that decides, step by step, which tools to call.

    `run(text)` returns a RunResult; `stream(text)` yields AgentEvents (thought, tool_call,
    tool_result, answer_delta, error, done). History is kept across calls (multi-turn) until
    `reset()`. `max_steps` bounds model calls per run so that a looping model stops cleanly.
    """

    def __init__(self, llm: Any = None, tools: Any = None, system: str | None = DEFAULT_SYSTEM, *,
                 max_steps: int = 6, params: GenerationParams | dict | None = None,
                 history: Sequence[Message] | None = None, memory: Any = None, session_id: str | None = None,
                 retriever: Any = None, tool_top_k: int = 5, retrieval_threshold: int = 16,
                 tool_specs_ttl_s: float = 5.0):
        if llm is None:
            from raygent.llm_pool.llama_cpp import LlamaCppChatModel

            llm = LlamaCppChatModel()
        self.llm = llm
        self.tools = _as_registry(tools)
        self.system = system
        self.max_steps = max_steps
        self.params = as_params(params)
        self.history: list[Message] = list(history or [])
        self._model_name: str | None = None
        # memory: a MemoryStore (or its actor proxy), a SQLite path, or a raygent.memory.SessionMemory
        self.memory: Any = None
        if memory is not None:
            from raygent.memory.session import attach_memory

            self.memory = attach_memory(memory, session_id, self.llm)
        # tool retrieval: with more than `retrieval_threshold` tools, only the top-k reach the prompt
        self.retriever = retriever
        self.tool_top_k = tool_top_k
        self.retrieval_threshold = retrieval_threshold
        # the tool specs, cached between turns (see `_tool_specs`)
        self.tool_specs_ttl_s = tool_specs_ttl_s
        self._specs_cache: list[Any] | None = None
        self._specs_stamp: tuple[Any, float] = (None, 0.0)

    # -- public API ------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the conversation (the system prompt and tools stay); with memory, start a new session."""
        self.history = []
        if self.memory is not None:
            self.memory.new_session()

    def refresh_tools(self) -> None:
        """Fetch the tool specs again at the next turn (after registering tools on a remote hub)."""
        self._specs_cache = None

    async def get_history(self) -> list[Message]:
        return list(self.history)

    async def get_session_id(self) -> str | None:
        """The memory session this agent writes to (None without memory); awaitable on an actor too."""
        return self.memory.session_id if self.memory is not None else None

    async def use_session(self, session_id: str) -> str:
        """Continue in the stored session `session_id` (read from the store at the next turn). An
        agent actor restarted by Ray is built again without it: its caller says which session to go
        on with. A no-op when the agent is already there."""
        if self.memory is None:
            raise ValueError("this agent has no memory: pass memory= (a store or a SQLite path)")
        if self.memory.session_id != session_id:
            self.memory.new_session(session_id)
            self.history = []
        return session_id

    async def run(self, text: str, *, params: GenerationParams | dict | None = None,
                  run_id: str | None = None) -> RunResult:
        """One user turn to its RunResult. With memory, a `run_id` makes the turn safe to retry: a
        second call with the same id (after a crash, a timeout, a restarted actor) goes on from what
        the first stored instead of storing the user's message again, and returns the stored answer
        when the first call had finished."""
        result: RunResult | None = None
        # no one reads token deltas here: a whole-reply `chat` is one actor round trip, not a stream
        async for event in self.stream(text, params=params, token_stream=False, run_id=run_id):
            if event.type == "done":
                result = event.result
        assert result is not None
        return result

    def run_sync(self, text: str, **kwargs: Any) -> RunResult:
        """Blocking `run` for scripts and notebooks without an event loop."""
        return _run_blocking(self.run(text, **kwargs))

    def stream_sync(self, text: str, **kwargs: Any) -> Iterator[AgentEvent]:
        """Blocking iterator over `stream` events (collects them; for scripts)."""
        async def collect() -> list[AgentEvent]:
            return [e async for e in self.stream(text, **kwargs)]
        return iter(_run_blocking(collect()))

    async def stream(self, text: str, *, params: GenerationParams | dict | None = None,
                     token_stream: bool = True, run_id: str | None = None) -> AsyncIterator[AgentEvent]:
        """Run one user turn, yielding step events. With `token_stream=False` the model is asked for
        whole replies (answer text then arrives as one answer_delta per step). `run_id` names the run
        in its trace (`raygent trace RUN_ID`); default a new `run_...` id, reported in RunResult.run_id."""
        trace = run_trace(run_id or new_run_id(), self)
        steps = self._steps(text, params, token_stream, trace, retry_key=run_id)
        try:
            async for event in steps:
                if event.type == "done":
                    trace.finish(event.result)
                yield event
        except (Exception, asyncio.CancelledError) as exc:
            trace.close(exc)
            raise
        finally:
            await steps.aclose()  # a caller that stopped reading ends the step under way now, not at GC
            trace.close()

    async def _steps(self, text: str, params: GenerationParams | dict | None, token_stream: bool,
                     trace: Any, retry_key: str | None = None) -> AsyncIterator[AgentEvent]:
        base = as_params(params) if params is not None else self.params
        user = Message.user(text)
        if retry_key is not None and self.memory is not None:  # a retry of this run finds its stored turn
            user.metadata["run_id"] = retry_key
        self.history.append(user)
        usage = Usage()
        records: list[ToolCallRecord] = []
        artifacts: list[Artifact] = []
        seen: dict[str, ToolResult] = {}
        force_answer = False
        model = ""
        try:
            if self.memory is not None:  # load the stored session and store the user message first
                self.history = await self.memory.begin_turn(self.history.pop())
            if self._model_name is None:
                self._model_name = await self.llm.get_model_name()
            model = self._model_name
            trace.set_model(model)
            stored = self.memory.finished_answer(retry_key) if retry_key and self.memory is not None else None
            if stored is None:
                specs = await self._select_tools(text, await self._tool_specs())
        except Exception as exc:
            async for e in self._fail(0, f"agent setup failed: {type(exc).__name__}: {exc}", usage, records, model):
                yield e
            return
        if stored is not None:  # this run already ended before (its caller never heard): the same answer
            yield AgentEvent(type="answer_delta", step=0, text=stored)
            yield AgentEvent(type="done", step=0, result=RunResult(answer=stored, steps=0, usage=usage, model=model))
            return
        last_text = ""
        for step in range(1, self.max_steps + 1):
            trace.begin_step(step)
            step_params = base.model_copy(update={"tool_choice": "none"}) if force_answer else base
            history = await self.memory.context() if self.memory is not None else self.history
            messages = ([Message.system(self.system)] if self.system else []) + history
            answer_parts: list[str] = []
            final = None
            model_call = trace.model_call(token_stream)
            try:
                if token_stream:
                    async for delta in self.llm.stream(messages, specs or None, step_params):
                        model_call.token()
                        if delta.finish_reason is None:
                            if delta.text:
                                answer_parts.append(delta.text)
                                yield AgentEvent(type="answer_delta", step=step, text=delta.text)
                        else:
                            final = delta
                else:
                    c = await self.llm.chat(messages, specs or None, step_params)
                    final = Delta(text=c.text, tool_calls=c.tool_calls, finish_reason=c.finish_reason, usage=c.usage,
                                  parse_errors=c.parse_errors)
            except Exception as exc:
                model_call.end(error=exc)
                async for e in self._fail(step, f"model call failed: {type(exc).__name__}: {exc}", usage, records,
                                          model):
                    yield e
                return
            except BaseException as exc:  # cancelled, or the caller stopped reading mid-call: still ended
                model_call.end(error=exc)
                raise
            model_call.end(final)
            if final is None:
                async for e in self._fail(step, "model stream ended without a final delta", usage, records, model):
                    yield e
                return
            if final.usage:
                usage = usage + final.usage
            calls = final.tool_calls
            if not calls:
                answer = ("".join(answer_parts) + (final.text or "")).strip()
                if final.text:
                    yield AgentEvent(type="answer_delta", step=step, text=final.text)
                if final.parse_errors and not answer_parts:
                    # an unreadable call: tell the model what went wrong and let it try again
                    problem = "; ".join(final.parse_errors)
                    yield AgentEvent(type="error", step=step, text=f"could not read the model's tool call: {problem}")
                    await self._add(Message.assistant(final.text or None))
                    await self._add(Message.user(
                        f"Your tool call could not be read: {problem}. Reply with one valid tool call, "
                        f"or answer directly."))
                    last_text = answer
                    continue
                await self._add(Message.assistant(answer))
                result = RunResult(answer=answer, tool_calls=records, steps=step, usage=usage, model=model,
                                   artifacts=artifacts)
                yield AgentEvent(type="done", step=step, result=result)
                return
            if final.text:
                yield AgentEvent(type="thought", step=step, text=final.text)
            for err in final.parse_errors:
                yield AgentEvent(type="error", step=step, text=f"could not read part of the model's reply: {err}")
            for call in calls:
                yield AgentEvent(type="tool_call", step=step, tool_call=call)
            # stored before the tools run: a crash during a call must not lose the model's request
            await self._add(Message.assistant(final.text or None, tool_calls=calls))
            fresh = [c for c in calls if _call_key(c) not in seen]
            tools_span = trace.tools(fresh)
            try:
                fresh_results = await self.tools.call_many(fresh) if fresh else []
            except Exception as exc:
                tools_span.fail(exc)
                fresh_results = [ToolResult(call_id=c.id, name=c.name, arguments=c.arguments,
                                            error=f"tool hub unavailable: {type(exc).__name__}: {exc}") for c in fresh]
            trace.tools_done(tools_span)
            by_id = {r.call_id: r for r in fresh_results}
            results = []
            for call in calls:
                if call.id in by_id:
                    r = by_id[call.id]
                    seen[_call_key(call)] = r
                else:  # the model repeated a call it already made this run: reuse, then ask for the answer
                    r = seen[_call_key(call)].model_copy(update={"call_id": call.id})
                results.append(r)
            if not fresh:
                force_answer = True
            for call, r in zip(calls, results):
                if call.id in by_id:
                    records.append(ToolCallRecord(name=r.name, arguments=r.arguments, result=r.output, error=r.error))
                    artifacts.extend(r.artifacts)
                yield AgentEvent(type="tool_result", step=step, tool_result=r)
                if r.error:
                    if r.error.startswith("unknown tool"):  # the registry changed under the cached specs
                        self._specs_cache = None
                    yield AgentEvent(type="error", step=step, text=f"tool {r.name!r}: {r.error}")
                await self._add(Message(role="tool", content=r.content_for_model(*self._result_chars()),
                                        tool_call_id=call.id, name=r.name, artifacts=r.artifacts))
            last_text = final.text or ""
        message = (f"step limit reached: the model made {self.max_steps} steps without a final answer "
                   f"(raise max_steps if the task needs more)")
        yield AgentEvent(type="error", step=self.max_steps, text=message)
        result = RunResult(answer=last_text, tool_calls=records, steps=self.max_steps, usage=usage, model=model,
                           stop_reason="max_steps", error=message, artifacts=artifacts)
        yield AgentEvent(type="done", step=self.max_steps, result=result)

    async def _add(self, message: Message) -> None:
        """Append to the history and, with memory, to the store before going on (crash-safe)."""
        self.history.append(message)
        if self.memory is not None:
            await self.memory.add(message)

    def _result_chars(self) -> tuple[int, ...]:
        # with memory the store keeps (nearly) whole results; the prompt view truncates them with a pointer
        return (self.memory.stored_result_chars,) if self.memory is not None else ()
    async def _tool_specs(self) -> list[Any]:
        """The registry's specs, without a round trip per turn when they cannot have changed.

        An in-process registry exposes `specs_version` (bumped by register/unregister): the cache
        holds exactly as long as that number. A remote one (an actor proxy, a hub client) cannot be
        asked for free, so its specs are kept for `tool_specs_ttl_s` seconds (0 fetches every turn);
        a call to a tool that has since gone ("unknown tool") or `refresh_tools()` drops them early.
        """
        version = getattr(self.tools, "specs_version", None)
        version = version if isinstance(version, int) else None
        now = time.monotonic()
        if self._specs_cache is not None:
            cached_version, fetched = self._specs_stamp
            if version is not None and version == cached_version:
                return self._specs_cache
            if version is None and cached_version is None and now - fetched < self.tool_specs_ttl_s:
                return self._specs_cache
        self._specs_cache = list(await self.tools.list_specs())
        self._specs_stamp = (version, now)
        return self._specs_cache

    async def _select_tools(self, text: str, specs: list[Any]) -> list[Any]:
        """The specs offered to the model this turn: all of them, or the retriever's top-k for `text`
        when more than `retrieval_threshold` tools are registered (`retriever=True` builds the default
        ToolRetriever; any object, or actor proxy, with `select(query, specs, k)` works)."""
        if self.retriever is None or self.retriever is False or len(specs) <= self.retrieval_threshold:
            return specs
        if self.retriever is True:
            from raygent.retrieval.tool_retriever import ToolRetriever

            self.retriever = ToolRetriever()
        return list(await self.retriever.select(text, specs, self.tool_top_k))

    async def _fail(self, step: int, message: str, usage: Usage, records: list[ToolCallRecord],
                    model: str) -> AsyncIterator[AgentEvent]:
        yield AgentEvent(type="error", step=step, text=message)
        result = RunResult(answer="", tool_calls=records, steps=step, usage=usage, model=model,
                           stop_reason="error", error=message)
        yield AgentEvent(type="done", step=step, result=result)


def _run_blocking(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    raise RuntimeError("run_sync/stream_sync cannot be used inside a running event loop; await run()/stream()")

