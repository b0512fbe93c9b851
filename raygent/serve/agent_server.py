"""One served agent: a Ray Serve deployment whose replicas run the agent loop for HTTP callers.

A replica holds no model. It reaches the model pool through a DeploymentHandle (`PooledLLM`), runs
its tools in-process (a ToolRegistry of built-ins), and keeps conversations in the shared memory
store (`state.url`: SQLite under RAYGENT_HOME, or Redis on a cluster), so any replica continues
any session and a replica that dies loses nothing that was said. Each request builds a fresh
`Agent` (cheap: the tools and the pool handle are shared), which keeps runs independent.

`ServedAgent` is the caller's side: the AgentRunner interface over the deployment's handle, used
by the HTTP routes and by A2A alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from raygent.llm_pool.errors import BackendError
from raygent.schema import AgentEvent, Message, RunResult
from raygent.serve.models import AgentCard, RunRequest, ToolCard


class SessionAccessError(LookupError):
    """The session does not exist for this caller (unknown, or another key's): answered as 404."""


class AgentBusyError(BackendError):
    """Every replica of the agent is at max_ongoing_requests and its queue is full: answered as 503
    with Retry-After (the caller retries; nothing was started)."""

    status = 503
    retryable = True


def _is_back_pressure(exc: BaseException) -> bool:
    from ray.serve.exceptions import BackPressureError

    return isinstance(exc, BackPressureError)


class _RefusalProbe:
    """The run's model, watched. The pool's refusal (PoolBusyError) of the run's first model call is
    kept in `refused`: the run has done nothing yet, so the caller is told to retry (429 with
    Retry-After) instead of getting a failed run. A run the pool has admitted (one call answered) is
    finished: a later refusal is retried with backoff, for up to `patience_s`, as the pool frees up."""

    PATIENCE_S = 60.0

    def __init__(self, llm: Any, patience_s: float | None = None):
        self._llm = llm
        self.refused: BaseException | None = None
        self.answered = False
        self.patience_s = self.PATIENCE_S if patience_s is None else patience_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def _retry(self, exc: BaseException, waited: float) -> bool:
        """Whether to try again after a failed call (and note a refusal of the run's first call)."""
        from raygent.llm_pool.pool import PoolBusyError

        if not isinstance(exc, PoolBusyError):
            return False
        if not self.answered:
            self.refused = exc
            return False
        return waited < self.patience_s

    @staticmethod
    def _pause(tries: int) -> float:
        return min(1.0, 0.05 * 2 ** min(tries, 5))

    async def chat(self, *args: Any, **kwargs: Any) -> Any:
        waited, tries = 0.0, 0
        while True:
            try:
                reply = await self._llm.chat(*args, **kwargs)
                break
            except Exception as exc:
                if not self._retry(exc, waited):
                    raise
                await asyncio.sleep(self._pause(tries))
                waited, tries = waited + self._pause(tries), tries + 1
        self.answered = True
        return reply

    async def stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        waited, tries = 0.0, 0
        while True:
            sent = False
            try:
                async for delta in self._llm.stream(*args, **kwargs):
                    self.answered = sent = True
                    yield delta
                return
            except Exception as exc:
                if sent or not self._retry(exc, waited):  # text already went out: not repeated
                    raise
                await asyncio.sleep(self._pause(tries))
                waited, tries = waited + self._pause(tries), tries + 1


def build_tools(names: list[str]) -> list[Any]:
    """Built-in tools by name; "*" adds every built-in that can run on this machine. Unknown names
    and tools that cannot run here are refused with what to install."""
    from raygent.toolhub.builtin import BUILTIN_TOOLS, available_tools, missing_requirements

    tools: dict[str, Any] = {}
    for name in names:
        if name == "*":
            for tool in available_tools():
                tools.setdefault(tool.name, tool)
            continue
        cls = BUILTIN_TOOLS.get(name)
        if cls is None:
            raise ValueError(f"unknown tool {name!r}; built-in tools: {sorted(BUILTIN_TOOLS)} (or '*' for all)")
        missing = missing_requirements(name)
        if missing:
            raise ValueError(f"tool {name!r} cannot run on this machine: {missing}")
        tools.setdefault(name, cls())
    return list(tools.values())


class AgentServer:
    """The replica: `card()`, `stream(request, owner)` (AgentEvents), `run(request, owner)`.

    `model` is the pool's DeploymentHandle (bound by build_app) or any ChatModel (tests).
    """

    def __init__(self, name: str, entry: dict[str, Any], model: Any, model_name: str, state_url: str | None = None):
        from raygent.serve.app import AgentEntry

        self.name = name
        self.entry = AgentEntry(**entry)
        self.model_name = model_name
        from ray.serve.handle import DeploymentHandle

        if isinstance(model, DeploymentHandle):  # (a handle answers hasattr() for any method name)
            from raygent.llm_pool.pool import PooledLLM

            self.llm = PooledLLM(model, name=model_name)
        else:
            self.llm = model
        from raygent.toolhub.registry import ToolRegistry

        tools = build_tools(self.entry.tools)
        if self.entry.knowledge:  # the agent's knowledge base, searched by the knowledge_search tool
            from raygent.retrieval.knowledge import KnowledgeSearchTool

            tools.append(KnowledgeSearchTool(kb=self.entry.knowledge))
        self.tools = ToolRegistry(tools)
        self.state_url = state_url
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from raygent.serve.state import memory_store

            self._store = memory_store(self.state_url)
        return self._store

    async def card(self) -> AgentCard:
        specs = self.tools.list_specs()
        if asyncio.iscoroutine(specs):
            specs = await specs
        return AgentCard(name=self.name, description=self.entry.description, model=self.model_name,
                         tools=[ToolCard(name=s.name, description=s.description) for s in specs],
                         max_steps=self.entry.max_steps, memory=self.entry.memory)

    async def _session(self, request: RunRequest, owner: str) -> str | None:
        """The session this run writes to: the caller's own (created when new), None when stateless."""
        if not self.entry.memory or request.session_id is None:
            return None
        info = await self.store.get_session(request.session_id)
        if info is None:  # exist_ok: two first requests of one session may race; the owner check decides
            info = await self.store.create_session(request.session_id, metadata={"owner": owner, "agent": self.name},
                                                   exist_ok=True)
        if info.metadata.get("owner", "anonymous") != owner:
            raise SessionAccessError(f"session {request.session_id!r} not found")
        return request.session_id

    def _agent(self, request: RunRequest, session_id: str | None) -> Any:
        from raygent.actors.agent import Agent

        history: list[Message] = []
        if session_id is None and not isinstance(request.input, str):
            history = [m for m in request.input[:-1] if m.role != "system"]  # stateless: the caller's history
        params = {k: v for k, v in (("temperature", request.temperature), ("max_tokens", request.max_tokens))
                  if v is not None}
        kwargs: dict[str, Any] = {}
        if self.entry.system is not None:
            kwargs["system"] = self.entry.system
        return Agent(self.llm, tools=self.tools, max_steps=request.max_steps or self.entry.max_steps,
                     params=params or None, history=history,
                     memory=self.store if session_id else None, session_id=session_id, **kwargs)

    async def stream(self, request: RunRequest | dict[str, Any], owner: str = "anonymous", *,
                     token_stream: bool = True, run_id: str | None = None) -> AsyncIterator[AgentEvent]:
        """`run_id`: the API's run id, which names the run's trace (`raygent trace RUN_ID`)."""
        request = request if isinstance(request, RunRequest) else RunRequest(**request)
        session_id = await self._session(request, owner)
        agent = self._agent(request, session_id)
        agent.llm = probe = _RefusalProbe(agent.llm)
        async for event in agent.stream(request.text(), token_stream=token_stream, run_id=run_id):
            if event.type == "error" and probe.refused is not None:
                raise probe.refused  # the pool refused the run's first model call: 429, retry later
            yield event

    async def run(self, request: RunRequest | dict[str, Any], owner: str = "anonymous",
                  run_id: str | None = None) -> RunResult:
        """The result only: the model is asked for whole replies (one unary pool call per step
        instead of a token stream nobody reads)."""
        result: RunResult | None = None
        async for event in self.stream(request, owner, token_stream=False, run_id=run_id):
            if event.type == "done":
                result = event.result
        if result is None:
            raise RuntimeError(f"agent {self.name!r} ended without a result")
        return result

    async def check_health(self) -> None:
        """Serve's health check: the replica's tools are loaded (the pool has its own checks)."""


class ServedAgent:
    """AgentRunner over an AgentServer deployment handle (or an in-process AgentServer)."""

    def __init__(self, name: str, target: Any):
        from raygent.ray_env import with_process_transport

        self.name = name
        self._remote = not isinstance(target, AgentServer)
        self._target = with_process_transport(target) if self._remote else target
        self._card: AgentCard | None = None

    async def card(self) -> AgentCard:
        if self._card is None:
            self._card = await self._target.card.remote() if self._remote else await self._target.card()
        return self._card

    async def run(self, request: RunRequest, owner: str = "anonymous") -> RunResult:
        """The whole run in one call (no event stream to relay: one hop less for callers that only
        want the result)."""
        if not self._remote:
            return await self._target.run(request, owner)
        from raygent.llm_pool.pool import own_request_id

        with own_request_id():
            response = self._target.run.remote(request.model_dump(mode="json"), owner)
        try:
            return await response
        except Exception as exc:
            if _is_back_pressure(exc):
                raise AgentBusyError(f"agent {self.name!r} is at capacity (every replica at max_ongoing_requests "
                                     f"and its queue full): retry later") from exc
            raise

    async def stream(self, request: RunRequest, owner: str = "anonymous",
                     run_id: str | None = None) -> AsyncIterator[AgentEvent]:
        extra = {"run_id": run_id} if run_id else {}
        if not self._remote:
            async for event in self._target.stream(request, owner, **extra):
                yield event
            return
        from raygent.llm_pool.pool import own_request_id

        with own_request_id():  # see own_request_id: concurrent runs from one request must not share an id
            responses = self._target.options(stream=True).stream.remote(request.model_dump(mode="json"), owner,
                                                                         **extra)
        finished = False
        try:
            async for event in responses:
                yield event
            finished = True
        except Exception as exc:
            if _is_back_pressure(exc):
                raise AgentBusyError(f"agent {self.name!r} is at capacity (every replica at max_ongoing_requests "
                                     f"and its queue full): retry later") from exc
            raise
        finally:
            if not finished:  # the caller stopped (cancelled run, closed connection): stop the replica's loop
                responses.cancel()

