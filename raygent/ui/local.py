"""The in-process backend: the embedded model (or any model of the config), the real tool hubs,
the story and portrait teams, all in this process; publishing starts `raygent serve` on local Ray
(or RAY_ADDRESS)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from raygent.schema import AgentEvent
from raygent.serve.app import ServeConfig
from raygent.ui.backend import Backend, PortraitEvent, PublishInfo, StoryEvent, work_dir
from raygent.ui.config import AgentForm, base_config

PREVIEW_PARAMS = {"max_tokens": 384}


def _is_embedded_default(entry: dict[str, Any]) -> bool:
    from raygent.llm_pool.embedded import DEFAULT_MODEL

    return entry.get("type", "llama_cpp") == "llama_cpp" and entry.get("model") in (None, DEFAULT_MODEL) \
        and entry.get("lora", "auto") == "auto"


class LocalBackend(Backend):
    """`llm`: the embedded model instance to share (default: made and loaded on first use) for
    every config model that is the embedded default; other models are built from their config
    entry. `story_llm`: the storybook team's model (default: the story studio's own, the embedded
    0.5B with two parallel slots and no adapter). `serve_host`/`serve_port`: where Publish serves."""

    kind = "local"

    def __init__(self, config: ServeConfig | None = None, *, llm: Any = None, story_llm: Any = None,
                 serve_host: str = "127.0.0.1", serve_port: int = 8000, out_dir: str | os.PathLike[str] | None = None):
        self._config = config or base_config()
        self._llm = llm
        self._story_llm = story_llm
        self._models: dict[str, Any] = {}
        self._sessions: dict[str, tuple[str, Any]] = {}
        self.serve_host, self.serve_port = serve_host, serve_port
        self.out_dir = Path(out_dir) if out_dir else work_dir()
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def config(self) -> ServeConfig:
        return self._config

    # -- models and agents ----------------------------------------------------------------------
    def model(self, name: str | None = None) -> Any:
        """The chat model for config model `name` (default: the config's default model)."""
        name = name or self._config.default_model or next(iter(self._config.models))
        if name not in self._config.models:
            raise ValueError(f"no model {name!r}; models: {sorted(self._config.models)}")
        if name not in self._models:
            entry = dict(self._config.models[name].model)
            if _is_embedded_default(entry):
                if self._llm is None:
                    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

                    self._llm = LlamaCppChatModel()
                self._models[name] = self._llm
            else:
                from raygent.llm_pool.config import build_chat_model

                self._models[name] = build_chat_model(entry, name=name)
        return self._models[name]

    def _agent(self, form: AgentForm) -> Any:
        from raygent.actors.agent import DEFAULT_SYSTEM, Agent
        from raygent.serve.agent_server import build_tools

        tools = build_tools(form.tools)
        if form.knowledge:
            from raygent.retrieval.knowledge import KnowledgeSearchTool

            tools.append(KnowledgeSearchTool(kb=form.knowledge))
        return Agent(self.model(form.model), tools=tools, system=form.instructions or DEFAULT_SYSTEM,
                     max_steps=form.max_steps, params=PREVIEW_PARAMS)

    async def chat(self, session: str, form: AgentForm, text: str) -> AsyncIterator[AgentEvent]:
        key = form.model_dump_json()
        known = self._sessions.get(session)
        if known is None or known[0] != key:  # a changed form starts a new conversation
            known = self._sessions[session] = (key, self._agent(form))
        async for event in known[1].stream(text):
            yield event

    async def reset(self, session: str) -> None:
        self._sessions.pop(session, None)

    def builder_llm(self) -> Any:
        return self.model()

    async def add_knowledge(self, kb: str, files: list[str]) -> str:
        import shutil

        from raygent.retrieval.knowledge import KnowledgeRetriever, kb_folder

        retriever = await asyncio.to_thread(KnowledgeRetriever, kb)
        kept = kb_folder(kb) / "files"  # uploads are temporary files: the base keeps its own copies
        kept.mkdir(parents=True, exist_ok=True)
        chunks, errors = 0, []
        for path in files:
            copy = kept / Path(path).name
            await asyncio.to_thread(shutil.copyfile, path, copy)
            report = await retriever.add_path(copy)
            chunks += report["chunks"]
            errors += report["errors"]
        total = await retriever.count()
        problems = f"; errors: {'; '.join(errors)}" if errors else ""
        return f"knowledge base {kb!r}: {len(files)} file(s), {chunks} new passage(s), {total} in all{problems}"

    # -- the story studio -----------------------------------------------------------------------
    async def story(self, topic: str, pages: int, language: str | None = None) -> AsyncIterator[StoryEvent]:
        from raygent.apps.story.studio import StoryRequest, StoryStudio

        queue: asyncio.Queue[StoryEvent | None] = asyncio.Queue()
        relays: list[asyncio.Task[None]] = []

        class WatchedStudio(StoryStudio):
            async def build_team(self, request: StoryRequest, room: str) -> Any:
                team = await super().build_team(request, room)
                relays.append(asyncio.ensure_future(relay_room(team, queue)))
                return team

        studio = WatchedStudio(llm=self._story_llm, writers=2, log=":memory:",
                               progress=lambda line: queue.put_nowait(StoryEvent(type="progress", text=line)))
        request = StoryRequest(topic=topic, pages=pages, language=language or None)
        out = self.out_dir / f"story-{uuid.uuid4().hex[:8]}"
        task = asyncio.ensure_future(studio.make(request, out))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
            try:
                result = task.result()
            except Exception as exc:
                yield StoryEvent(type="error", text=f"{type(exc).__name__}: {exc}")
                return
        finally:
            if not task.done():
                task.cancel()
            for relay in relays:
                relay.cancel()
        for page in result.book.pages:  # the final state of every page (a live event may have been missed)
            if page.text:
                yield StoryEvent(type="page", page=page.index, field="text", value=page.text)
            if page.image is not None:
                yield StoryEvent(type="page", page=page.index, field="image", value=page.image.uri)
            if page.audio is not None:
                yield StoryEvent(type="page", page=page.index, field="audio", value=page.audio.uri)
        bound = result.bound
        yield StoryEvent(type="done", title=result.book.title, html=str(bound.html),
                         files=[str(bound.html), str(bound.epub), str(bound.manifest)], missing=list(bound.missing),
                         seconds=round(result.seconds, 1), text=f"bound {bound.html.name} in {result.seconds:.0f} s")

    # -- the portrait studio --------------------------------------------------------------------
    async def portrait(self, photos: list[str], style: str, *, use_llm: bool = True) -> AsyncIterator[PortraitEvent]:
        from raygent.apps.portrait import PortraitStudio

        queue: asyncio.Queue[PortraitEvent | None] = asyncio.Queue()
        studio = PortraitStudio(llm=self.model() if use_llm else None, use_llm=use_llm, log=":memory:",
                                progress=lambda line: queue.put_nowait(PortraitEvent(type="progress", text=line)))
        out = self.out_dir / f"portrait-{uuid.uuid4().hex[:8]}"
        async for event in _run_portrait(studio, photos, style, out, queue):
            yield event

    # -- publish --------------------------------------------------------------------------------
    async def publish(self, config: ServeConfig, agent: str) -> PublishInfo:
        from raygent.ui.publish import publish_local

        return await publish_local(config, agent, host=self.serve_host, port=self.serve_port)

    def allowed_paths(self) -> list[str]:
        from raygent.toolhub.artifacts import default_store

        return [str(self.out_dir), str(default_store().root)]


async def _run_portrait(studio: Any, photos: list[str], style: str, out: Path,
                        queue: asyncio.Queue[PortraitEvent | None]) -> AsyncIterator[PortraitEvent]:
    task = asyncio.ensure_future(studio.make(photos, style, out))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (event := await queue.get()) is not None:
            yield event
    finally:
        if not task.done():
            task.cancel()
    try:
        result = task.result()
    except Exception as exc:
        yield PortraitEvent(type="error", text=f"{type(exc).__name__}: {exc}")
        return
    yield PortraitEvent(type="done", result=json.loads(result.model_dump_json()))


async def relay_room(team: Any, queue: asyncio.Queue[StoryEvent | None]) -> None:
    """The room's live events as StoryEvents: each message between members, and each page's text,
    picture and recording as soon as its member replies (matched to the driver's request by the
    reply's correlation id; the request's headers name the page and the asset)."""
    asked: dict[str, tuple[int, str]] = {}
    try:
        async for env in team.events():
            if env.kind == "event":
                meta = env.content.metadata or {}
                if meta.get("text"):
                    queue.put_nowait(StoryEvent(type="progress", sender=env.sender, text=f"{env.sender}: {meta['text']}"))
                continue
            if env.kind != "message":
                continue
            text = (env.content.content or "").replace("\n", " ")
            if len(text) > 140:
                text = text[:137] + "..."
            files = [a.kind for a in env.artifacts or env.content.artifacts]
            label = f"{env.sender} → {env.recipient or env.topic}: {text}" + (f" [{', '.join(files)}]" if files else "")
            queue.put_nowait(StoryEvent(type="message", sender=env.sender, recipient=env.recipient, text=label))
            page, asset = env.headers.get("page"), env.headers.get("asset")
            if page is not None and asset is not None and env.reply_to:
                asked[env.id] = (int(page), str(asset))
            target = asked.get(env.correlation_id or "")
            if target is None or env.id == env.correlation_id:
                continue
            index, asset = target
            artifacts = env.content.artifacts or env.artifacts
            if asset == "text" and env.content.content and not env.headers.get("error"):
                queue.put_nowait(StoryEvent(type="page", page=index, field="text", value=env.content.content.strip()))
            elif asset in ("image", "audio") and artifacts:
                queue.put_nowait(StoryEvent(type="page", page=index, field=asset, value=artifacts[0].uri))
    except asyncio.CancelledError:
        pass
    except Exception:  # the live view is a convenience: the book itself comes from the studio
        return


__all__ = ["LocalBackend", "relay_room"]
