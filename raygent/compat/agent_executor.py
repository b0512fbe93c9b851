"""`AgentExecutor`: the seed's entry point (ModelScope-Agent v0.x), running on raygent's Agent.

The seed's loop (prompt generator -> LLM -> action parser -> tool -> repeat) is raygent's
`Agent`; this class keeps the seed's constructor, its synchronous `run` / `stream_run` and its
result shapes, so seed scripts port by changing imports. Differences from the seed:

* `run` returns one dict per tool call, `{"name", "arguments", "result"}` (the seed's tool dicts
  held only `"result"`), then a final `{"answer": ...}` (the seed only printed the answer). A
  failing tool adds `"error"` to its dict and the model is told, instead of the whole run
  returning `[{"exec_result": message}]`; a run that fails or hits `max_steps` puts `"error"` and
  `"stop_reason"` in the final dict.
* `remote=True` places the LLM and the tools as Ray actors (`raygent.runtime.deploy`), cached per
  executor; in the seed it meant calling ModelScope's hosted inference API over HTTP.
* Prompt generators and action parsers become one tool-call format (`raygent.compat.prompt`).
* `print_info=True` prints the steps (calls, results, answer); the seed printed the prompts.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import queue
import threading
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any

from raygent.actors.agent import DEFAULT_SYSTEM, Agent
from raygent.compat.config import Config, as_config, default_tool_config
from raygent.compat.prompt import (
    AgentType,
    format_for_agent_type,
    format_for_prompt_generator,
    format_label,
)
from raygent.compat.tools import additional_tools, tool_aliases, tools_from_config
from raygent.schema import AgentEvent, RunResult
from raygent.toolhub.base import Tool
from raygent.toolhub.registry import ToolRegistry

logger = logging.getLogger(__name__)

#: file types the seed's knowledge retrieval accepted in `append_files`
KNOWLEDGE_FILE_TYPES = (".txt", ".md", ".pdf")


class EventLoopError(RuntimeError):
    """A blocking method was called from inside a running event loop."""


class _LoopThread:
    """One event loop in a daemon thread: the sync API runs every coroutine of an executor there, so
    models and actor proxies always see the same loop, and `stream_run` can yield events live."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="raygent-compat-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def iterate(self, agen: AsyncIterator[Any]) -> Iterator[Any]:
        items: queue.Queue[tuple[str, Any]] = queue.Queue()

        async def pump() -> None:
            try:
                async for item in agen:
                    items.put(("item", item))
            except BaseException as exc:  # re-raised in the consumer's thread
                items.put(("error", exc))
            finally:
                items.put(("end", None))

        future: Future = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        try:
            while True:
                kind, value = items.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            if not future.done():  # the consumer stopped early
                future.cancel()

    def close(self, *closers: Any) -> None:
        """Run the async `closers` (e.g. a model's `aclose`, whose HTTP session belongs to this loop)
        on the loop, then stop it."""
        if not self.thread.is_alive():
            return
        for closer in closers:
            try:
                self.run(closer())
            except Exception as exc:  # closing is best effort: report, keep closing
                logger.warning("closing %r failed: %s", closer, exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def _async_closers(llm: Any) -> list[Any]:
    closer = getattr(llm, "aclose", None)
    return [closer] if closer is not None and inspect.iscoroutinefunction(closer) else []


def _ensure_no_running_loop(method: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    hint = "async for event in executor.astream_run(...)" if method == "stream_run" else "await executor.arun(...)"
    raise EventLoopError(f"AgentExecutor.{method}() blocks, so it cannot run inside a running event loop "
                         f"(Jupyter, async code); use `{hint}` instead")


class AgentExecutor:
    """The seed's AgentExecutor on raygent: same constructor, `run`, `stream_run`, `reset`,
    `set_available_tools`; plus `arun` / `astream_run` for async code.

    llm: a raygent ChatModel (e.g. from `LLMFactory.build_llm`), an actor proxy of one, a name
        (from the model config, or an embedded model) or GGUF path, or None for the embedded default.
    tool_cfg: the seed's tool config (dict, Config or path); None = raygent's template (the
        built-in tools on). Enabled tools that raygent lacks land in `unavailable_tools`.
    prompt_generator / output_parser / agent_type: pick the tool-call format (seed names or raygent
        format names). Applied by rebuilding an llm that came from LLMFactory (cheap: weights load
        lazily); for any other pre-built llm it is ignored with a warning: build that llm with
        `format=...` instead.
    tool_retrieval / knowledge_retrieval: duck-typed objects with `retrieve(query)` (the seed's
        interface); `tool_retrieval=True` asks for a default retriever, which this build does not
        have yet, so every enabled tool is offered (a warning says so).
    """

    def __init__(self, llm: Any = None, tool_cfg: Config | Mapping[str, Any] | str | None = None,
                 agent_type: AgentType | str = AgentType.DEFAULT,
                 additional_tool_list: Mapping[str, Any] | Iterable[Any] | None = None,
                 prompt_generator: Any = None, output_parser: Any = None, tool_retrieval: Any = False,
                 knowledge_retrieval: Any = None, *, max_steps: int = 6, system: str | None = DEFAULT_SYSTEM,
                 action_parser: Any = None, **kwargs: Any):
        if kwargs:
            logger.debug("AgentExecutor ignores seed options %s", sorted(kwargs))
        self.agent_type = agent_type
        self.llm, self.format_ignored = self._resolve_llm(llm, prompt_generator, output_parser or action_parser,
                                                          agent_type)
        self.format = format_label(getattr(self.llm, "format", None))

        cfg = default_tool_config() if tool_cfg is None else as_config(tool_cfg)
        cfg_tools, self.unavailable_tools = tools_from_config(cfg)
        self.tool_list: dict[str, Tool] = {**cfg_tools, **additional_tools(additional_tool_list)}
        for name, reason in self.unavailable_tools.items():
            logger.warning("tool %r is not available: %s", name, reason)
        self.available_tool_list: dict[str, Tool] = dict(self.tool_list)

        if tool_retrieval is True:
            logger.warning("tool_retrieval=True: no default tool retriever in this build yet; "
                           "all %d enabled tools are offered", len(self.tool_list))
            tool_retrieval = None
        elif tool_retrieval is not None and tool_retrieval is not False and hasattr(tool_retrieval, "construct"):
            tool_retrieval.construct([t.spec.model_dump_json() for t in self.tool_list.values()])
        self.tool_retrieval = tool_retrieval or None
        self.knowledge_retrieval = knowledge_retrieval

        self._local_tools = ToolRegistry(self.available_tool_list.values())
        self.agent = Agent(self.llm, self._local_tools, system, max_steps=max_steps,
                           params=getattr(self.llm, "default_params", None))
        self.last_result: RunResult | None = None
        self.agent_state: dict[str, Any] = {}
        self._remote_llm: Any = None
        self._remote_tools: Any = None
        self._remote_tools_key: tuple[str, ...] | None = None
        self._loop: _LoopThread | None = None

    # -- construction ----------------------------------------------------------------------
    @staticmethod
    def _resolve_llm(llm: Any, prompt_generator: Any, output_parser: Any,
                     agent_type: AgentType | str) -> tuple[Any, bool]:
        from raygent.compat.llm_factory import LLMFactory

        fmt = (format_for_prompt_generator(prompt_generator) or format_for_prompt_generator(output_parser)
               or format_for_agent_type(agent_type))
        if llm is None or isinstance(llm, str):
            from raygent.compat.config import default_model_config
            from raygent.llm_pool.embedded import DEFAULT_MODEL

            models = default_model_config()  # a name from the model config, else an embedded name / GGUF path
            name = llm or DEFAULT_MODEL
            return LLMFactory.build_llm(name, models if name in models else None,
                                        **({"format": fmt} if fmt else {})), False
        if fmt is None or format_label(fmt) == format_label(getattr(llm, "format", None)):
            return llm, False
        spec = getattr(llm, "compat_spec", None)
        if spec is not None:
            return spec.build(format=fmt), False
        logger.warning("prompt format %r ignored: the llm was not built by LLMFactory, so it keeps its own "
                       "format; construct it with format=%r instead", format_label(fmt), format_label(fmt))
        return llm, True

    # -- tools -----------------------------------------------------------------------------
    def set_available_tools(self, available_tool_list: Iterable[str]) -> None:
        """Offer only these tools (raygent names or the seed names that map to them)."""
        aliases = tool_aliases()
        chosen: dict[str, Tool] = {}
        for name in available_tool_list:
            key = name if name in self.tool_list else aliases.get(name)
            if key is None or key not in self.tool_list:
                raise ValueError(f"unsupported tool {name!r}; enabled tools: {sorted(self.tool_list)}"
                                 + (f" ({name!r} is unavailable: {self.unavailable_tools[name]})"
                                    if name in self.unavailable_tools else ""))
            chosen[key] = self.tool_list[key]
        self.available_tool_list = chosen
        self._local_tools = ToolRegistry(chosen.values())
        if not (self._remote_tools is not None and self.agent.tools is self._remote_tools):
            self.agent.tools = self._local_tools

    def _retrieve_tools(self, task: str) -> None:
        if self.tool_retrieval is None:
            return
        found = self.tool_retrieval.retrieve(task)
        names = [n for n in (found.keys() if isinstance(found, Mapping) else found) if n in self.tool_list]
        if names:
            self.set_available_tools(names)

    def _with_knowledge(self, task: str, append_files: list[str]) -> str:
        kr = self.knowledge_retrieval
        docs = [f for f in append_files if f.lower().endswith(KNOWLEDGE_FILE_TYPES)]
        if kr is not None and docs and hasattr(kr, "add_file"):
            kr.add_file(docs)
        knowledge = list(kr.retrieve(task)) if kr is not None else []
        text = task
        if knowledge:
            text = "Relevant knowledge:\n" + "\n".join(f"- {k}" for k in knowledge) + f"\n\n{text}"
        if append_files:
            text += "\n\nAttached files: " + ", ".join(append_files)
        return text

    # -- placement -------------------------------------------------------------------------
    async def _place(self, remote: bool) -> None:
        """Point the agent at in-process or actor-hosted llm and tools (actors are made once)."""
        if not remote:
            self.agent.llm, self.agent.tools = self.llm, self._local_tools
            return
        from raygent.runtime import deploy, is_remote, kill

        if self._remote_llm is None:
            if is_remote(self.llm):
                self._remote_llm = self.llm
            else:
                spec = getattr(self.llm, "compat_spec", None)
                # a model from LLMFactory is constructed inside the actor; any other is pickled there
                self._remote_llm = await asyncio.to_thread(
                    (lambda: deploy(spec.cls, init_kwargs=spec.kwargs)) if spec is not None
                    else (lambda: deploy(self.llm)))
        key = tuple(sorted(self.available_tool_list))
        if self._remote_tools is None or self._remote_tools_key != key:
            if self._remote_tools is not None:
                kill(self._remote_tools)
            tools = list(self.available_tool_list.values())
            self._remote_tools = await asyncio.to_thread(lambda: deploy(ToolRegistry, init_kwargs={"tools": tools}))
            self._remote_tools_key = key
        self.agent.llm, self.agent.tools = self._remote_llm, self._remote_tools

    def close(self) -> None:
        """Stop the actors and the event-loop thread this executor started."""
        from raygent.runtime import kill

        if self._remote_tools is not None:
            kill(self._remote_tools)
        if self._remote_llm is not None and self._remote_llm is not self.llm:
            kill(self._remote_llm)
        self._remote_llm = self._remote_tools = self._remote_tools_key = None
        if self._loop is not None:
            self._closer.detach()
            self._loop.close(*_async_closers(self.llm))
            self._loop = None

    # -- running ---------------------------------------------------------------------------
    async def _events(self, task: str, remote: bool, append_files: list[str] | None) -> AsyncIterator[AgentEvent]:
        self._retrieve_tools(task)
        text = self._with_knowledge(task, list(append_files or []))
        await self._place(remote)
        async for event in self.agent.stream(text):
            if event.type == "done":
                self.last_result = event.result
            yield event

    async def arun(self, task: str, remote: bool = False, print_info: bool = False,
                   append_files: list[str] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        """Run one task; returns `[{"name", "arguments", "result"[, "error"]}, ..., {"answer", ...}]`."""
        async for event in self._events(task, remote, append_files):
            if print_info:
                _print_event(event)
        assert self.last_result is not None
        return exec_results(self.last_result)

    def run(self, task: str, remote: bool = False, print_info: bool = False,
            append_files: list[str] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        """Blocking `arun` (the seed's `run`). Raises EventLoopError inside a running event loop."""
        _ensure_no_running_loop("run")
        return self._loop_thread().run(self.arun(task, remote, print_info, append_files, **kwargs))

    async def astream_run(self, task: str, remote: bool = False, print_info: bool = False,
                          append_files: list[str] | None = None, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """Seed-shaped stream: {"llm_text"}, {"llm_text", "tool_call"}, {"exec_result", "name"},
        {"error"}, and last {"is_final": True, "answer"}."""
        fmt = getattr(self.llm, "format", None)
        async for event in self._events(task, remote, append_files):
            if print_info:
                _print_event(event)
            out = seed_event(event, fmt)
            if out is not None:
                yield out

    def stream_run(self, task: str, remote: bool = False, print_info: bool = False,
                   append_files: list[str] | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Blocking iterator over `astream_run` (events arrive as they happen)."""
        _ensure_no_running_loop("stream_run")
        return self._loop_thread().iterate(self.astream_run(task, remote, print_info, append_files, **kwargs))

    def _loop_thread(self) -> _LoopThread:
        if self._loop is None:
            self._loop = _LoopThread()
            # a script that never calls close(): the model's HTTP session is closed on its own loop
            # when the executor is collected or the interpreter exits (no "Unclosed client session")
            self._closer = weakref.finalize(self, self._loop.close, *_async_closers(self.llm))
        return self._loop

    def reset(self) -> None:
        """Forget the conversation (tools, placement and format stay)."""
        self.agent.reset()
        self.agent_state = {}
        self.last_result = None

    @property
    def history(self) -> list[Any]:
        return list(self.agent.history)


def exec_results(result: RunResult) -> list[dict[str, Any]]:
    """RunResult -> the seed-like list: one dict per tool call, then the answer."""
    out: list[dict[str, Any]] = []
    for rec in result.tool_calls:
        item: dict[str, Any] = {"name": rec.name, "arguments": rec.arguments, "result": rec.result}
        if rec.error is not None:
            item["error"] = rec.error
        out.append(item)
    final: dict[str, Any] = {"answer": result.answer}
    if result.stop_reason != "answer":
        final.update(error=result.error, stop_reason=result.stop_reason)
    if result.artifacts:
        final["artifacts"] = [a.model_dump() for a in result.artifacts]
    out.append(final)
    return out


def seed_event(event: AgentEvent, fmt: Any = None) -> dict[str, Any] | None:
    """One AgentEvent -> the seed's stream dict (None for events the seed had no shape for)."""
    if event.type in ("answer_delta", "thought"):
        return {"llm_text": event.text or ""}
    if event.type == "tool_call" and event.tool_call is not None:
        call = event.tool_call
        render = getattr(fmt, "render_call", None)
        text = render(call) if callable(render) else json.dumps(
            {"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
        return {"llm_text": text, "tool_call": {"name": call.name, "arguments": call.arguments}}
    if event.type == "tool_result" and event.tool_result is not None:
        r = event.tool_result
        return {"exec_result": {"error": r.error} if r.error else {"result": r.output}, "name": r.name}
    if event.type == "error":
        return {"error": event.text}
    if event.type == "done" and event.result is not None:
        out: dict[str, Any] = {"is_final": True, "answer": event.result.answer}
        if event.result.stop_reason != "answer":
            out["error"] = event.result.error
        return out
    return None


def _print_event(event: AgentEvent) -> None:
    if event.type == "tool_call" and event.tool_call:
        print(f"[step {event.step}] call {event.tool_call.name} "
              f"{json.dumps(event.tool_call.arguments, ensure_ascii=False)}", flush=True)
    elif event.type == "tool_result" and event.tool_result:
        r = event.tool_result
        print(f"[step {event.step}] result {r.name}: {r.content_for_model(600)}", flush=True)
    elif event.type == "thought" and event.text:
        print(f"[step {event.step}] thought: {event.text}", flush=True)
    elif event.type == "error":
        print(f"[step {event.step}] error: {event.text}", flush=True)
    elif event.type == "done" and event.result:
        print(f"[step {event.step}] answer: {event.result.answer}", flush=True)
