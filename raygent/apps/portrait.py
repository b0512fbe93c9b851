"""The portrait studio (Facechain-style): an inspector, a stylist and a painter in one room.

  driver -> inspector: each photo -> is there a usable face (found, large enough, sharp)? A photo
            that is refused is reported with the inspector's reason and goes no further.
  driver -> stylist: the user's words -> StyleParams (style, strength, tint, crop). With a language
            model the stylist fills the parameters under a grammar (a required call whose schema
            lists the styles there are); without one, or when the model's choice is unusable, the
            rules of `style_params_from_text` decide, and the result says which.
  driver -> painter: each accepted photo + the parameters -> a square styled portrait (the face is
            detected, cropped, styled by the image backend's style models)
  then a contact sheet of the portraits, labelled, is written beside them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from raygent.actors.coordinator import StructuredHandler, ToolHandler
from raygent.actors.team import Team, TeamError
from raygent.schema import Envelope

STYLIST_SYSTEM = ("You are a portrait stylist. Turn the customer's wish into painting settings: pick the style "
                  "that fits their words best, how strongly to apply it (0.3 subtle .. 0.9 bold), and a background "
                  "tint only if they ask for a colour or mood.")


class PortraitItem(BaseModel):
    photo: str
    accepted: bool
    reason: str | None = None  # why the inspector refused it
    faces: int = 0
    blur: float | None = None
    portrait: str | None = None  # the painted portrait's path in the output folder
    error: str | None = None  # the painter's failure, if any
    staged: str | None = Field(default=None, exclude=True)  # the copy the tools read (see _stage)


class PortraitResult(BaseModel):
    style_words: str
    style: dict[str, Any]
    style_source: str  # "model" | "rules" (and why)
    photos: list[PortraitItem]
    contact_sheet: str | None = None
    seconds: float = 0.0
    room: str = ""


def style_schema() -> dict[str, Any]:
    from raygent.imaging.stylize import available_styles

    return {"type": "object", "properties": {
        "style": {"type": "string", "enum": [s for s in available_styles() if s != "none"]},
        "strength": {"type": "number", "minimum": 0.2, "maximum": 1.0},
        "tint": {"type": "string", "maxLength": 12, "description": "a colour name, warm, cool, or empty for none"}},
        "required": ["style", "strength"]}


async def _rules_stylist(env: Envelope, ctx: Any) -> str:
    """The stylist without a model: the documented word rules (watercolor, sketch, 水彩, 素描, ...)."""
    from raygent.imaging.stylize import style_params_from_text

    return style_params_from_text(env.content.content or "").model_dump_json()


def _stage(photo: str) -> str | None:
    """The photo as the team's tools can read it, or None when there is no such file.

    The tools read only files in the artifact store and the folders of RAYGENT_TOOL_FILES (their
    arguments may come from a model: ArtifactStore.open_input). The customer chose this photo, so
    one from elsewhere is copied into the store (also the way it reaches tools on other nodes,
    where the store is shared storage)."""
    from raygent.toolhub.artifacts import PathNotAllowed, default_store

    store = default_store()
    try:
        return str(store.open_input(photo))
    except FileNotFoundError:
        return None
    except PathNotAllowed:
        try:
            return store.save_file(store.open_path(photo)).uri
        except FileNotFoundError:
            return None


def _face_tool() -> Any:
    from raygent.toolhub.builtin.imaging_tools import FaceInspectTool

    return FaceInspectTool()


def _paint_tool() -> Any:
    from raygent.toolhub.builtin.imaging_tools import PortraitPaintTool

    return PortraitPaintTool()


class PortraitStudio:
    """Builds and runs the portrait team. `llm`: the stylist's model (default: the embedded model;
    `use_llm=False` for the rules alone). `remote=True` places each member as a Ray actor."""

    def __init__(self, *, llm: Any = None, use_llm: bool = True, remote: bool = False, hub: Any = None,
                 log: Any = ":memory:", progress: Callable[[str], None] | None = None, timeout_s: float = 300.0):
        self.llm = llm
        self.use_llm = use_llm
        self.remote = remote
        self.hub = hub
        self.log = log
        self.progress = progress or (lambda line: None)
        self.timeout_s = timeout_s

    async def build_team(self, room: str) -> Team:
        team = Team(room=room, hub=self.hub, remote=self.remote, log=self.log, timeout_s=self.timeout_s)
        await team.add("inspector", ToolHandler(_face_tool, attempts=1, needs_artifacts=False))
        if self.use_llm:
            llm = self.llm
            if llm is None:
                from raygent import runtime
                from raygent.llm_pool.llama_cpp import LlamaCppChatModel

                llm = self.llm = runtime.deploy(LlamaCppChatModel, remote=self.remote, init_kwargs={"lora": None},
                                                name="portrait-embedded-llm" if self.remote else None)
            await team.add("stylist", StructuredHandler(llm, style_schema(), name="portrait_style", system=STYLIST_SYSTEM,
                                                        description="Submit the portrait's painting settings.",
                                                        params={"max_tokens": 60}))
        else:
            await team.add("stylist", _rules_stylist)
        await team.add("painter", ToolHandler(_paint_tool, attempts=2))
        return team

    async def make(self, photos: list[str | Path], style_words: str, out_dir: str | Path, *,
                   room: str | None = None) -> PortraitResult:
        if not photos:
            raise ValueError("no photos given")
        if not style_words.strip():
            raise ValueError("describe the style in words, e.g. 'soft watercolour' or '素描'")
        started = time.perf_counter()
        room = room or f"portrait-{uuid.uuid4().hex[:8]}"
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        team = await self.build_team(room)
        try:
            inspections, (style, source) = await asyncio.gather(
                asyncio.gather(*(self._inspect(team, str(p)) for p in photos)), self._style(team, style_words))
            items = await asyncio.gather(*(self._paint(team, item, style, out, n)
                                           for n, item in enumerate(inspections, 1)))
        finally:
            await team.close()
        painted = [i for i in items if i.portrait]
        sheet = None
        if painted:
            from raygent.imaging.contact_sheet import contact_sheet

            artifact = await asyncio.to_thread(contact_sheet, [i.portrait for i in painted],
                                               [Path(i.photo).name for i in painted], out / "contact_sheet.png")
            sheet = artifact.uri
            self.progress(f"contact sheet: {sheet}")
        result = PortraitResult(style_words=style_words, style=style, style_source=source, photos=list(items),
                                contact_sheet=sheet, seconds=time.perf_counter() - started, room=room)
        (out / "portraits.json").write_text(result.model_dump_json(indent=2), encoding="utf-8")
        return result

    async def _inspect(self, team: Team, photo: str) -> PortraitItem:
        staged = await asyncio.to_thread(_stage, photo)
        if staged is None:
            item = PortraitItem(photo=photo, accepted=False, reason=f"The photo was refused: the file {photo} "
                                                                    f"does not exist")
            self.progress(f"inspector: {Path(photo).name}: refused: {item.reason}")
            return item
        reply = await team.ask("inspector", json.dumps({"image": staged}))
        report = json.loads(reply.content.content or "{}")
        item = PortraitItem(photo=photo, accepted=bool(report.get("ok")), reason=report.get("refusal"),
                            faces=len(report.get("faces") or []), blur=report.get("blur"), staged=staged)
        self.progress(f"inspector: {Path(photo).name}: " + ("accepted" if item.accepted else f"refused: {item.reason}"))
        return item

    async def _style(self, team: Team, words: str) -> tuple[dict[str, Any], str]:
        from raygent.imaging.stylize import StyleParams, named_style, style_params_from_text

        source = "rules"
        try:
            reply = await team.ask("stylist", words)
            chosen = json.loads(reply.content.content or "{}")
            if self.use_llm:  # the model's choices over the rules' reading of the same words
                base = style_params_from_text(words).model_dump()
                try:
                    params = StyleParams(**{**base, **chosen})
                except ValueError:  # most often a tint that names no colour: keep the rest
                    params = StyleParams(**{**base, **{k: v for k, v in chosen.items() if k != "tint"}})
                source = "model"
                named = named_style(words)
                if named is not None and named != params.style:  # the customer's own word wins
                    params = params.model_copy(update={"style": named})
                    source = f"model, with the style the words name ({named})"
            else:
                params = StyleParams(**chosen)
        except (TeamError, ValueError) as exc:  # an unusable choice: the rules decide, and we say so
            params = style_params_from_text(words)
            source = f"rules (the stylist's choice was unusable: {exc})"
        self.progress(f"stylist: {params.style}, strength {params.strength:.2f}"
                      + (f", tint {params.tint}" if params.tint else "") + f" ({source})")
        return params.model_dump(), source

    async def _paint(self, team: Team, item: PortraitItem, style: dict[str, Any], out: Path, n: int) -> PortraitItem:
        if not item.accepted:
            return item
        args = {"photo": item.staged or item.photo, **{k: v for k, v in style.items() if k in (
            "style", "strength", "tint", "crop_margin", "size") and v is not None}}
        try:
            reply = await team.ask("painter", json.dumps(args, ensure_ascii=False))
        except TeamError as exc:
            item.error = str(exc)
            self.progress(f"painter: {Path(item.photo).name}: failed: {exc}")
            return item
        source = Path(reply.content.artifacts[0].uri)
        target = out / f"portrait-{n:02d}-{Path(item.photo).stem}.png"
        shutil.copyfile(source, target)
        item.portrait = str(target)
        self.progress(f"painter: {target.name}")
        return item


__all__ = ["PortraitItem", "PortraitResult", "PortraitStudio", "style_schema"]
