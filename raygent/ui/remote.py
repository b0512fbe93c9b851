"""The remote backend: a running `raygent serve`, reached through its URL and API key.

Chats are agent runs (`POST /v1/runs`, server-sent events) of a served agent, continued through the
server's session; stories are rooms (`POST /v1/rooms`); files a run or room made come from
`/v1/artifacts/{id}` and are kept in a local folder so the page can show them. The builder agent
runs on one of the server's models (its OpenAI-compatible API). The server has no portrait route:
the portrait studio runs here, with the stylist's rules instead of a model."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from raygent.schema import AgentEvent, Artifact
from raygent.serve.app import AgentEntry, ModelEntry, ServeConfig
from raygent.ui.backend import Backend, PortraitEvent, PublishInfo, StoryEvent, work_dir
from raygent.ui.config import AgentForm


def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, Any]]:
    async def parse() -> AsyncIterator[tuple[str, Any]]:
        name, data = "message", []
        async for line in lines:
            if not line:
                if data:
                    text = "\n".join(data)
                    yield name, (json.loads(text) if text and text != "[DONE]" else None)
                name, data = "message", []
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            yield name, json.loads("\n".join(data))
    return parse()


class RemoteError(RuntimeError):
    """The server answered with an error (its OpenAI-shaped message is kept)."""


class RemoteBackend(Backend):
    kind = "remote"

    def __init__(self, url: str, key: str | None = None, *, out_dir: str | os.PathLike[str] | None = None,
                 timeout_s: float = 600.0):
        url = url.rstrip("/")
        self.root = url[:-3] if url.endswith("/v1") else url
        self.key = key or None
        self.timeout_s = timeout_s
        self.out_dir = Path(out_dir) if out_dir else work_dir() / "remote"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, tuple[str, str]] = {}  # tab -> (agent, server session id)
        self._config: ServeConfig | None = None

    @property
    def url(self) -> str:
        return self.root + "/v1"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.root, headers=self._headers(), timeout=self.timeout_s)

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except Exception:
                message = response.text[:300]
            raise RemoteError(f"{response.request.method} {response.request.url.path}: "
                              f"{response.status_code} {message}")

    # -- what the server serves -----------------------------------------------------------------
    def config(self) -> ServeConfig:
        """The server's models and agents, as a config (from /v1/models and /v1/agents)."""
        if self._config is None:
            with httpx.Client(base_url=self.root, headers=self._headers(), timeout=30) as client:
                models = client.get("/v1/models")
                self._check(models)
                agents = client.get("/v1/agents")
                self._check(agents)
            model_names = [m["id"] for m in models.json()["data"] if m.get("owned_by") != "raygent-agent"]
            cards = agents.json()["data"]
            self._config = ServeConfig(
                models={name: ModelEntry() for name in model_names},
                agents={c["name"]: AgentEntry(description=c.get("description", ""), model=c.get("model"),
                                              tools=[t["name"] for t in c.get("tools", [])
                                                     if t["name"] != "knowledge_search"],
                                              max_steps=c.get("max_steps", 6), memory=c.get("memory", True))
                        for c in cards if c.get("model") in model_names},
                default_agent=cards[0]["name"] if cards else None)
        return self._config

    # -- chat ------------------------------------------------------------------------------------
    async def chat(self, session: str, form: AgentForm, text: str) -> AsyncIterator[AgentEvent]:
        known = self._sessions.get(session)
        session_id = known[1] if known is not None and known[0] == form.name else None
        body: dict[str, Any] = {"agent": form.name, "input": text, "stream": True}
        if session_id:
            body["session_id"] = session_id
        done: AgentEvent | None = None
        run_id: str | None = None
        async with self._client() as client:
            async with client.stream("POST", "/v1/runs", json=body, headers={"Accept": "text/event-stream"}) as r:
                if r.status_code >= 400:
                    await r.aread()
                    self._check(r)
                async for name, data in _sse_events(r.aiter_lines()):
                    if name == "run":
                        run_id = data["id"]
                        if data.get("session_id"):
                            self._sessions[session] = (form.name, data["session_id"])
                    elif name == "done":
                        done = AgentEvent.model_validate(data)
                    elif name == "end":
                        if data.get("status") == "failed" and done is None:
                            yield AgentEvent(type="error", text=data.get("error") or "the run failed")
                    elif name in ("thought", "tool_call", "tool_result", "answer_delta", "error"):
                        yield AgentEvent.model_validate(data)
            if done is not None and done.result is not None and run_id and done.result.artifacts:
                record = await client.get(f"/v1/runs/{run_id}")  # the record's artifacts have URLs
                self._check(record)
                published = record.json().get("result") or {}
                artifacts = []
                for a in published.get("artifacts", []):
                    url = (a.get("metadata") or {}).get("url")
                    if url:
                        a["uri"] = str(await self._download(client, url, a.get("mime_type")))
                    artifacts.append(a)
                done = done.model_copy(update={"result": done.result.model_copy(
                    update={"artifacts": [Artifact.model_validate(a) for a in artifacts]})})
        if done is not None:
            yield done

    async def _download(self, client: httpx.AsyncClient, url: str, mime: str | None = None,
                        folder: Path | None = None, name: str | None = None) -> Path:
        response = await client.get(url)
        self._check(response)
        if name is None:
            ext = mimetypes.guess_extension((mime or response.headers.get("content-type", "")).split(";")[0]) or ""
            name = url.rstrip("/").rsplit("/", 1)[-1] + ext
        path = (folder or self.out_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(response.content)
        return path

    async def reset(self, session: str) -> None:
        known = self._sessions.pop(session, None)
        if known is not None:
            async with self._client() as client:
                await client.delete(f"/v1/sessions/{known[1]}")

    def builder_llm(self) -> Any:
        from raygent.llm_pool.openai_backend import OpenAICompatibleChatModel

        config = self.config()
        model = config.default_model or next(iter(config.models))
        return OpenAICompatibleChatModel(model, base_url=self.url, api_key=self.key or "unused")

    # -- story -----------------------------------------------------------------------------------
    async def story(self, topic: str, pages: int, language: str | None = None) -> AsyncIterator[StoryEvent]:
        body = {"app": "story", "topic": topic, "pages": pages, "language": language or "auto"}
        async with self._client() as client:
            async with client.stream("POST", "/v1/rooms", json=body) as r:
                if r.status_code >= 400:
                    await r.aread()
                    self._check(r)
                done: dict[str, Any] | None = None
                async for name, data in _sse_events(r.aiter_lines()):
                    if name == "room":
                        yield StoryEvent(type="progress", text=f"room {data['id']} on {data.get('model')}")
                    elif name == "progress":
                        line = data.get("text", "")
                        yield StoryEvent(type="progress", sender=line.split(":", 1)[0], text=line)
                    elif name == "error":
                        yield StoryEvent(type="error", text=data.get("message", "the story failed"))
                        return
                    elif name == "done":
                        done = data
            if done is None:
                yield StoryEvent(type="error", text="the server ended the story without a book")
                return
            folder = self.out_dir / done["id"]
            local: dict[str, Path] = {}
            for f in done["files"]:  # the book's files, kept here for the page
                local[f["name"]] = await self._download(client, f["url"], folder=folder, name=f["name"])
        manifest = json.loads(local["manifest.json"].read_text(encoding="utf-8")) if "manifest.json" in local else {}
        for page in manifest.get("pages", []):
            index = page["index"]
            if page.get("text"):
                yield StoryEvent(type="page", page=index, field="text", value=page["text"])
            for field in ("image", "audio"):
                entry = page.get(field)
                if entry and entry.get("file") in local:
                    yield StoryEvent(type="page", page=index, field=field, value=str(local[entry["file"]]))
        html = local.get("book.html")
        yield StoryEvent(type="done", title=done.get("title"), html=str(html) if html else None,
                         files=[str(p) for p in local.values()], missing=list(done.get("missing", [])),
                         seconds=done.get("seconds"), text=f"bound on the server in {done.get('seconds')} s")

    # -- portrait (runs here: the server has no portrait route) ---------------------------------
    async def portrait(self, photos: list[str], style: str, *, use_llm: bool = True) -> AsyncIterator[PortraitEvent]:
        from raygent.apps.portrait import PortraitStudio
        from raygent.ui.local import _run_portrait

        queue: asyncio.Queue[PortraitEvent | None] = asyncio.Queue()
        queue.put_nowait(PortraitEvent(type="progress", text="the server has no portrait route: the studio runs "
                                                             "in this process, the stylist by its rules"))
        studio = PortraitStudio(use_llm=False, log=":memory:",
                                progress=lambda line: queue.put_nowait(PortraitEvent(type="progress", text=line)))
        async for event in _run_portrait(studio, photos, style, self.out_dir / f"portrait-{uuid.uuid4().hex[:8]}",
                                         queue):
            yield event

    # -- publish ---------------------------------------------------------------------------------
    async def publish(self, config: ServeConfig, agent: str) -> PublishInfo:
        """A remote server serves the agents of its own config: the agent is published when the
        server has it (then this key calls it); otherwise save the YAML and serve it there."""
        async with self._client() as client:
            response = await client.get("/v1/agents")
            self._check(response)
        names = [c["name"] for c in response.json()["data"]]
        if agent not in names:
            raise RemoteError(f"the server at {self.url} does not serve {agent!r} (it serves {', '.join(names)}): "
                              f"save the config as YAML and run `raygent serve --config FILE` there")
        return PublishInfo(url=self.url, agent=agent, key=self.key, note=f"{agent!r} is served at {self.url}")

    def allowed_paths(self) -> list[str]:
        from raygent.toolhub.artifacts import default_store

        return [str(self.out_dir), str(default_store().root)]


__all__ = ["RemoteBackend", "RemoteError"]
