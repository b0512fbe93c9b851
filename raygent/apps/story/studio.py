"""The storybook team: a planner, writers, an illustrator, a narrator and a binder in one room.

Flow (each arrow is a message through the room's MessageHub):
  driver -> planner: the topic -> a plan with a fixed cast (StoryPlan.parse reads the model's reply)
  driver -> writer (replicas share one mailbox): one message per page, all at once -> page texts
  driver -> illustrator: each page's scene and the cast's looks, as soon as the plan exists -> PNG
  driver -> narrator: each page's text, as soon as it is written -> WAV
  driver -> binder: the book -> book.html, book.epub, manifest.json
Writers and the planner are LLM agents (the embedded model by default); the illustrator, narrator
and binder run real tools (the image backend, espeak-ng, the binder) through a ToolRegistry, so
arguments are validated and calls time-limited. A failed asset is asked for again (`attempts`),
then recorded as an AssetProblem that the book and the manifest show. Cancelling the room stops
every agent; the partial book is still bound and says what is missing.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from raygent.actors.coordinator import AgentRole, StructuredHandler, ToolHandler
from raygent.actors.team import Team, TeamCancelledError, TeamError
from raygent.apps.story.binder import BoundBook, bind
from raygent.apps.story.book import AssetProblem, StoryBook, StoryPlan, StoryPlanError
from raygent.schema import Envelope, Message

PLANNER_SYSTEM = {
    "en": "You plan picture books for children: a title, a small cast with their looks, and one scene per page.",
    "zh": "你为儿童绘本做规划：标题、几个角色和他们的外貌、每一页的画面和情节。",
}
# string lengths keep a small model from looping inside a field (Chinese counts characters)
_PLAN_LIMITS = {"en": (40, 80, 90, 110), "zh": (16, 30, 30, 50)}  # title, look/description, scene, summary


# the arc of a picture book: the first beat opens every book, the last ends it, the middle ones are
# spread over the pages between
STORY_BEATS = {"en": ["meet the hero", "a problem appears", "the hero tries", "a friend helps", "the problem is solved",
                      "a happy ending"],
               "zh": ["认识主角", "出现问题", "主角尝试", "朋友帮忙", "解决问题", "快乐结局"]}


def story_beats(pages: int, lang: str) -> list[str]:
    """One beat of the arc per page (`pages` of them, first and last fixed)."""
    beats = STORY_BEATS[lang]
    if pages == 1:
        return [beats[0]]
    middle = beats[1:-1]
    return [beats[0]] + [middle[i * len(middle) // (pages - 2)] for i in range(pages - 2)] + [beats[-1]]


def plan_schema(pages: int, lang: str) -> dict[str, Any]:
    """The planner's output shape: the model fills it under a grammar, so the plan always parses
    and always has exactly `pages` pages. Each page opens with its beat of the story's arc (a
    constant the grammar writes for the model), which keeps a small model from writing the same
    page again and again."""
    title, look, scene, summary = _PLAN_LIMITS[lang]
    text = lambda n: {"type": "string", "minLength": 1, "maxLength": n}  # noqa: E731
    page = lambda beat: {"type": "object", "properties": {  # noqa: E731
        "beat": {"const": beat}, "scene": text(scene), "summary": text(summary)}, "required": ["beat", "scene", "summary"]}
    return {"type": "object", "properties": {
        "title": text(title),
        "cast": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "object", "properties": {
            "name": text(20), "description": text(look), "look": text(look)}, "required": ["name", "description", "look"]}},
        "pages": {"type": "array", "prefixItems": [page(b) for b in story_beats(pages, lang)], "items": False,
                  "minItems": pages, "maxItems": pages}},
        "required": ["title", "cast", "pages"]}


WRITER_SYSTEM = {
    "en": ("You write one page of a children's picture book: three or four short, warm sentences. "
           "Reply with the page text only."),
    "zh": "你为儿童绘本写一页：三四句简短温暖的话。只回复这一页的正文。",
}


class StoryRequest(BaseModel):
    """What to make."""

    topic: str = Field(min_length=1)
    pages: int = Field(4, ge=1, le=24)
    language: str | None = None  # "en" | "zh"; None detects Chinese in the topic
    style: str | None = None  # the illustrator's style (the image backend's names)
    seed: int = 0


class StoryResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    book: StoryBook
    bound: BoundBook
    room: str
    seconds: float


# -- the binder's tool ----------------------------------------------------------------------------
async def bind_story(book: dict, out_dir: str) -> dict:
    """Bind a storybook (pages with pictures and recordings) into HTML, EPUB and a manifest."""
    bound = await asyncio.to_thread(bind, StoryBook.model_validate(book), out_dir)
    return json.loads(bound.model_dump_json())


def _image_tool(backend: str) -> Any:
    from raygent.toolhub.builtin.imaging_tools import ImageGenerateTool

    return ImageGenerateTool(backend=backend)


def _speech_tool() -> Any:
    from raygent.toolhub.builtin.speech import TextToSpeechTool

    return TextToSpeechTool()


def _bind_tool() -> Any:
    from raygent.toolhub.base import FunctionTool

    return FunctionTool(bind_story)


# -- the app -----------------------------------------------------------------------------------------
Progress = Callable[[str], None]


class StoryStudio:
    """Builds and runs the storybook team.

    `llm`: the writers' and planner's model (a ChatModel, an actor proxy or a Serve pool handle;
    default: the embedded model, one instance shared by every writer so its KV cache and batch
    slots are shared). `writers`: writer replicas on one mailbox. `remote=True` places every
    member as a Ray actor (`writer_resources` etc. are their Ray options)."""

    def __init__(self, *, llm: Any = None, writers: int = 2, remote: bool = False, image_backend: str = "offline",
                 attempts: int = 2, hub: Any = None, log: Any = None, progress: Progress | None = None,
                 writer_resources: dict[str, Any] | None = None, timeout_s: float = 900.0,
                 writer_max_tokens: int = 160, planner_max_tokens: int = 700, temperature: float = 0.7):
        self.llm = llm
        self.writers = writers
        self.remote = remote
        self.image_backend = image_backend
        self.attempts = attempts
        self.hub = hub
        self.log = log
        self.progress = progress or (lambda line: None)
        self.writer_resources = writer_resources or {}
        self.timeout_s = timeout_s
        self.writer_max_tokens = writer_max_tokens
        self.planner_max_tokens = planner_max_tokens
        self.temperature = temperature
        self.team: Team | None = None
        self.last_hub_stats: dict[str, Any] = {}
        self.last_member_stats: dict[str, Any] = {}

    def _shared_llm(self) -> Any:
        if self.llm is None:
            from raygent import runtime
            from raygent.llm_pool.llama_cpp import LlamaCppChatModel

            # one model for every writer: parallel slots decode the pages together. Without the
            # multistep adapter: the story's roles write prose and one grammar-bound plan, no tool
            # chains, and the run-time adapter costs free text about a third of its speed
            kwargs = {"parallel": self.writers, "lora": None}
            self.llm = runtime.deploy(LlamaCppChatModel, remote=self.remote, init_kwargs=kwargs,
                                      name=f"story-embedded-llm-x{self.writers}" if self.remote else None)
        return self.llm

    async def build_team(self, request: StoryRequest, room: str) -> Team:
        lang = _language(request)
        llm = self._shared_llm()
        team = Team(room=room, hub=self.hub, remote=self.remote, log=self.log, timeout_s=self.timeout_s)
        sampling = {"temperature": self.temperature, "seed": request.seed}
        await team.add("planner", StructuredHandler(
            llm, plan_schema(request.pages, lang), name="story_plan", system=PLANNER_SYSTEM[lang],
            description="Submit the picture book's plan: title, cast (name, description, look), one scene and "
                        "summary per page.", params={"max_tokens": self.planner_max_tokens, **sampling}))
        await team.add(AgentRole(name="writer", system=WRITER_SYSTEM[lang], llm=llm, max_steps=1,
                                 params={"max_tokens": self.writer_max_tokens, **sampling}, replicas=self.writers,
                                 resources=self.writer_resources))
        await team.add("illustrator", ToolHandler(partial(_image_tool, self.image_backend), attempts=self.attempts))
        await team.add("narrator", ToolHandler(_speech_tool, attempts=self.attempts))
        await team.add("binder", ToolHandler(_bind_tool, attempts=1, needs_artifacts=False))
        return team

    async def make(self, request: StoryRequest | str, out_dir: str | Path, *, room: str | None = None,
                   cancel_after_s: float | None = None) -> StoryResult:
        """Run the team on one request and bind the book into `out_dir`. `cancel_after_s` cancels
        the room after that many seconds (the partial book is bound and says what is missing)."""
        if isinstance(request, str):
            request = StoryRequest(topic=request)
        room = room or f"story-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        team = self.team = await self.build_team(request, room)
        timings: dict[str, float] = {}
        watcher = asyncio.ensure_future(self._watch(team))
        canceller = asyncio.ensure_future(self._cancel_later(team, cancel_after_s)) if cancel_after_s else None
        book: StoryBook | None = None
        try:
            book = await self._run(team, request, timings)
        finally:
            if canceller is not None:
                canceller.cancel()
        bound = await self._bind(team, book, out_dir, timings, started)
        watcher.cancel()
        await self._settle(team)
        await team.close()
        return StoryResult(book=book, bound=bound, room=room, seconds=time.perf_counter() - started)

    async def _run(self, team: Team, request: StoryRequest, timings: dict[str, float]) -> StoryBook:
        lang = _language(request)
        t0 = time.perf_counter()
        self.progress(f"planner: planning {request.pages} pages about {request.topic!r}")
        try:
            plan = await self._plan(team, request, lang)
        except TeamCancelledError as exc:
            book = StoryBook.from_plan(_topic_plan(request, lang, "the story was cancelled before its plan"))
            book.cancelled, book.cancel_reason = True, str(exc)
            return book
        timings["plan_s"] = round(time.perf_counter() - t0, 2)
        self.progress(f"planner: {plan.title!r}, cast: {', '.join(c.name for c in plan.cast)}")
        for note in plan.notes:
            self.progress(f"planner: note: {note}")
        book = StoryBook.from_plan(plan, model=await _model_name(self.llm),
                                   agents={"planner": "llm", "writer": f"llm x{self.writers}",
                                           "illustrator": self.image_backend, "narrator": "espeak-ng",
                                           "binder": "html+epub"})
        pages = {p.index: p for p in book.pages}

        async def page_text(index: int) -> None:
            page_plan = plan.pages[index - 1]
            text = await self._asset(team, "writer", _write_prompt(plan, page_plan, lang), index, "text", book)
            if text is None:
                return
            pages[index].text = (text.content.content or "").strip()
            timings["texts_s"] = round(time.perf_counter() - t1, 2)  # when the last page text came
            self.progress(f"writer: page {index} written ({text.sender}, {len(pages[index].text)} chars)")
            await page_audio(index)

        async def page_audio(index: int) -> None:
            args = {"text": pages[index].text, "language": lang}
            reply = await self._asset(team, "narrator", json.dumps(args, ensure_ascii=False), index, "audio", book)
            if reply is not None and reply.content.artifacts:
                pages[index].audio = reply.content.artifacts[0]
                self.progress(f"narrator: page {index} recorded "
                              f"({pages[index].audio.metadata.get('duration_s', '?')} s)")

        async def page_image(index: int) -> None:
            args = {"prompt": plan.picture_prompt(index), "seed": request.seed + index}
            if request.style:
                args["style"] = request.style
            reply = await self._asset(team, "illustrator", json.dumps(args, ensure_ascii=False), index, "image", book)
            if reply is not None and reply.content.artifacts:
                pages[index].image = reply.content.artifacts[0]
                self.progress(f"illustrator: page {index} drawn")

        t1 = time.perf_counter()
        await asyncio.gather(*(page_text(i) for i in pages), *(page_image(i) for i in pages))
        timings["pages_s"] = round(time.perf_counter() - t1, 2)
        return book

    async def _plan(self, team: Team, request: StoryRequest, lang: str) -> StoryPlan:
        """The planner's plan; a reply with no plan in it is asked for again, and after `attempts`
        the plan is derived from the topic (the plan's notes, shown in the manifest, say so)."""
        reply_text, error = "", ""
        for attempt in range(1, self.attempts + 1):
            reply = await team.ask("planner", _plan_prompt(request, lang))
            reply_text = reply.content.content or ""
            try:
                return StoryPlan.parse(reply_text, request.topic, request.pages, lang)
            except StoryPlanError as exc:
                error = str(exc)
                self.progress(f"planner: attempt {attempt}: {error}")
        return _topic_plan(request, lang, f"the planner gave no usable plan in {self.attempts} attempts ({error})")

    async def _asset(self, team: Team, agent: str, content: str, index: int, asset: str,
                     book: StoryBook) -> Envelope | None:
        """Ask `agent` for one page's asset, `attempts` times in all (tool members retry inside their
        handler, the writer is asked again), then record an AssetProblem. None when there is no
        asset; a cancelled room marks the book cancelled (the first reason is kept)."""
        asks = self.attempts if agent == "writer" else 1
        error = ""
        for attempt in range(1, asks + 1):
            try:
                return await team.ask(agent, content, headers={"page": index, "asset": asset})
            except TeamCancelledError as exc:
                if not book.cancelled:
                    book.cancelled, book.cancel_reason = True, str(exc)
                return None
            except TeamError as exc:
                error = str(exc)
                self.progress(f"{agent}: page {index} {asset} failed (attempt {attempt}): {error}")
        book.problems.append(AssetProblem(page=index, asset=asset, attempts=self.attempts,  # type: ignore[arg-type]
                                          error=error))
        return None

    async def _bind(self, team: Team, book: StoryBook, out_dir: str | Path, timings: dict[str, float],
                    started: float) -> BoundBook:
        book.timings = {**timings, "total_s": round(time.perf_counter() - started, 2)}
        payload = json.dumps({"book": json.loads(book.model_dump_json()), "out_dir": str(Path(out_dir).resolve())},
                             ensure_ascii=False)
        if book.cancelled:  # the room is closed: the driver binds what there is itself
            return await asyncio.to_thread(bind, book, out_dir)
        reply = await team.ask("binder", payload)
        self.progress(f"binder: {Path(out_dir) / 'book.html'}")
        return BoundBook.model_validate_json(reply.content.content or "{}")

    async def _settle(self, team: Team, wait_s: float = 5.0) -> None:
        """Wait (briefly) for the last acknowledgements, then keep the hub's and members' figures
        (`last_hub_stats`, `last_member_stats`) for reports and tests."""
        deadline = time.monotonic() + wait_s
        while True:
            stats = await team.stats()
            if stats["hub"]["cancelled_rooms"]:  # a cancelled room: done once every member has stopped
                done = not any(s["running"] or s["in_flight"] for ss in stats["members"].values() for s in ss)
            else:
                done = stats["hub"]["log"]["unacked"] == 0
            if done or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        self.last_hub_stats, self.last_member_stats = stats["hub"], stats["members"]

    async def _watch(self, team: Team) -> None:
        """Step events of the agents, as progress lines (tool calls, failures)."""
        try:
            async for env in team.events():
                meta = env.content.metadata
                if env.kind == "event" and meta.get("type") == "error":
                    self.progress(f"{env.sender}: {meta.get('text')}")
        except Exception:
            return

    async def _cancel_later(self, team: Team, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.progress(f"cancelling the story after {seconds:.0f} s")
        await team.cancel(f"cancelled after {seconds:.0f} s")


def _language(request: StoryRequest) -> str:
    from raygent.apps.story.book import detect_language, normalize_language

    return normalize_language(request.language) if request.language else detect_language(request.topic)


def _topic_plan(request: StoryRequest, lang: str, why: str) -> StoryPlan:
    """A plan derived from the topic alone (StoryPlan.parse fills the cast and pages), with `why` as
    its first note."""
    plan = StoryPlan.parse(f"Title: {request.topic}", request.topic, request.pages, lang)
    plan.notes.insert(0, f"{why}; pages derived from the topic")
    return plan


def _plan_prompt(request: StoryRequest, lang: str) -> str:
    if lang == "zh":
        return f"为这个主题写一本{request.pages}页的绘本规划：{request.topic}"
    return f"Plan a {request.pages}-page picture book about: {request.topic}"


def _write_prompt(plan: StoryPlan, page: Any, lang: str) -> str:
    cast = "; ".join(f"{c.name} ({c.description or c.look})" for c in plan.cast)
    if lang == "zh":
        return (f"绘本《{plan.title}》，角色：{cast}。请写第{page.index}页（共{len(plan.pages)}页）。"
                f"情节：{page.summary or page.scene}")
    return (f"Book: {plan.title}. Cast: {cast}. Write page {page.index} of {len(plan.pages)}. "
            f"What happens: {page.summary or page.scene}")


async def _model_name(llm: Any) -> str:
    try:
        return str(await llm.get_model_name())
    except Exception:
        return ""


async def make_story(topic: str, out_dir: str | Path, *, pages: int = 4, language: str | None = None,
                     **studio_options: Any) -> StoryResult:
    """One call: a `pages`-page storybook about `topic` in `out_dir` (see StoryStudio)."""
    studio = StoryStudio(**studio_options)
    return await studio.make(StoryRequest(topic=topic, pages=pages, language=language), out_dir)
