"""The storybook's data model: the planner's outline (`StoryPlan`) and the finished book (`StoryBook`).

A planner model writes an outline with a fixed cast; writers, an illustrator and a narrator fill
each page with text, a picture and a recording; the binder turns the `StoryBook` into HTML, EPUB
and a manifest. Everything here is plain data and deterministic code: no model is called.

`StoryPlan.parse` reads whatever a (small) planner model replied -- JSON, JSON in a code fence
followed by chatter, Python-style single quotes, a truncated JSON object, or a plain numbered
outline in English or Chinese -- and fills what is missing from the topic, recording every filled
gap in `StoryPlan.notes`. It raises `StoryPlanError` only when the reply holds nothing usable.
"""

from __future__ import annotations

import ast
import json
import re
import time
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from raygent.schema import Artifact

Language = Literal["en", "zh"]
AssetName = Literal["text", "image", "audio"]
ASSETS: tuple[AssetName, ...] = ("text", "image", "audio")
#: pages planned when neither the caller nor the reply says how many
DEFAULT_PAGES = 4

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class StoryPlanError(ValueError):
    """The planner's reply holds no usable plan (no title, no cast, no pages)."""


def normalize_language(value: Any) -> Any:
    """'zh-CN', 'Chinese', '中文' -> 'zh'; 'en-US', 'English' -> 'en'; anything else unchanged."""
    if not isinstance(value, str):
        return value
    v = value.strip().lower().replace("_", "-")
    if v.startswith("zh") or v in ("chinese", "cmn", "mandarin", "中文", "汉语", "简体中文"):
        return "zh"
    if v.startswith("en") or v == "english":
        return "en"
    return value


def detect_language(*texts: str) -> Language:
    """'zh' when any of the texts has Chinese characters, else 'en'."""
    return "zh" if any(_CJK.search(t or "") for t in texts) else "en"


class Character(BaseModel):
    """One member of the fixed cast; `look` is repeated in every picture prompt so they stay recognizable."""

    name: str = Field(min_length=1)
    description: str = ""
    look: str = ""


class PagePlan(BaseModel):
    """One planned page: `scene` is what its picture shows, `summary` what happens on it."""

    index: int = Field(ge=1)
    scene: str
    summary: str


class StoryPlan(BaseModel):
    """The planner's outline: a title, a fixed cast and pages numbered 1..N without gaps."""

    title: str
    topic: str
    language: Language = "en"
    cast: list[Character] = Field(default_factory=list)
    pages: list[PagePlan] = Field(min_length=1)
    #: every gap `parse` filled in (or anything it changed), in words; empty for a complete reply
    notes: list[str] = Field(default_factory=list)

    @field_validator("language", mode="before")
    @classmethod
    def coerce_language(cls, value: Any) -> Any:
        return normalize_language(value)

    @model_validator(mode="after")
    def check_page_indexes(self) -> StoryPlan:
        got = [p.index for p in self.pages]
        if got != list(range(1, len(got) + 1)):
            raise ValueError(f"page indexes must run 1..{len(got)} in order without gaps; got {got}")
        return self

    def character(self, name: str) -> Character | None:
        """The cast member of that name (case-insensitive), else None."""
        key = name.strip().lower()
        return next((c for c in self.cast if c.name.strip().lower() == key), None)

    def picture_prompt(self, index: int) -> str:
        """Page `index`'s scene followed by the looks of the cast members it names (all of them when
        it names none), so every picture draws the characters the same way."""
        page = self.pages[index - 1]
        where = f"{page.scene} {page.summary}".lower()
        present = [c for c in self.cast if c.name.lower() in where] or list(self.cast)
        colon = "：" if self.language == "zh" else ": "
        looks = [f"{c.name}{colon}{c.look or c.description}" for c in present if c.look or c.description]
        if not looks:
            return page.scene
        if self.language == "zh":
            return f"{page.scene.rstrip('。')}。角色：" + "；".join(looks)
        return f"{page.scene.rstrip('.')}. Characters: " + "; ".join(looks)

    @classmethod
    def parse(cls, text: str, topic: str, pages: int | None = None,
              language: str | None = None) -> StoryPlan:
        """A plan from a planner model's reply (see the module docstring); `pages` is how many pages
        the book must have (more are dropped, fewer are derived from the topic), None to keep what
        the reply has. `language` None detects Chinese in the topic and the reply."""
        if pages is not None and pages < 1:
            raise ValueError(f"pages must be at least 1, got {pages}")
        text = _strip_reasoning(text or "")
        lang: Language = normalize_language(language) if language else detect_language(topic, text)
        if lang not in ("en", "zh"):
            raise ValueError(f"unsupported language {language!r}: use 'en' or 'zh'")
        from_json = _Draft.from_data(_find_json(text))
        from_outline = _Draft.from_outline(text)
        draft = from_json.merged_with(from_outline)
        if draft.empty:
            snippet = " ".join(text.split())[:160]
            raise StoryPlanError("no story plan in the planner's reply (no title, cast or numbered pages found); "
                                 f"the reply began: {snippet!r}" if snippet else
                                 "no story plan: the planner's reply is empty")
        return draft.to_plan(topic.strip(), pages, lang)


class AssetProblem(BaseModel):
    """Why a page's text, image or audio is missing (or needed retries): the last error seen."""

    page: int = Field(ge=1)
    asset: AssetName
    attempts: int = 0
    error: str


class StoryPage(BaseModel):
    """One page of the finished book; any of text, image and audio may be absent (see StoryBook.problems)."""

    index: int = Field(ge=1)
    text: str | None = None
    scene: str = ""
    summary: str = ""
    image: Artifact | None = None
    audio: Artifact | None = None

    def missing(self) -> list[AssetName]:
        """The assets this page lacks, in the order text, image, audio."""
        out: list[AssetName] = []
        if not (self.text or "").strip():
            out.append("text")
        if self.image is None:
            out.append("image")
        if self.audio is None:
            out.append("audio")
        return out


class StoryBook(BaseModel):
    """Everything the binder needs: the plan's title and cast, the pages, what went wrong, who made it."""

    title: str
    topic: str
    language: Language = "en"
    cast: list[Character] = Field(default_factory=list)
    pages: list[StoryPage] = Field(default_factory=list)
    problems: list[AssetProblem] = Field(default_factory=list)
    cancelled: bool = False
    cancel_reason: str | None = None
    model: str = ""
    #: role -> model / placement, e.g. {"illustrator": "sd-turbo on GPU node-2"}
    agents: dict[str, str] = Field(default_factory=dict)
    #: phase -> seconds, e.g. {"plan": 3.2, "write": 12.0, "total": 40.1}
    timings: dict[str, float] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)

    @field_validator("language", mode="before")
    @classmethod
    def coerce_language(cls, value: Any) -> Any:
        return normalize_language(value)

    @model_validator(mode="after")
    def check_unique_pages(self) -> StoryBook:
        got = [p.index for p in self.pages]
        if len(set(got)) != len(got):
            raise ValueError(f"page indexes must be unique; got {got}")
        return self

    @classmethod
    def from_plan(cls, plan: StoryPlan, **fields: Any) -> StoryBook:
        """An empty book for a plan: one page per planned page, no text, image or audio yet."""
        pages = [StoryPage(index=p.index, scene=p.scene, summary=p.summary) for p in plan.pages]
        return cls(title=plan.title, topic=plan.topic, language=plan.language, cast=list(plan.cast),
                   pages=pages, **fields)

    @property
    def missing(self) -> list[str]:
        """Everything absent, as 'page N: text' / 'page N: image' / 'page N: audio', in page order."""
        return [f"page {p.index}: {asset}" for p in self.pages for asset in p.missing()]

    @property
    def complete(self) -> bool:
        """True when every page has its text, image and audio (and there is at least one page)."""
        return bool(self.pages) and not self.missing

    def page(self, index: int) -> StoryPage | None:
        return next((p for p in self.pages if p.index == index), None)

    def problems_for(self, index: int, asset: str) -> list[AssetProblem]:
        return [p for p in self.problems if p.page == index and p.asset == asset]


# ---------------------------------------------------------------------------------------------
# Parsing a planner's reply


def _strip_reasoning(text: str) -> str:
    """Drop <think>...</think> blocks that reasoning models put before their answer."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S | re.I)
    return re.sub(r"^.*</think>", "", text, flags=re.S | re.I)  # an unopened close: keep what follows


_OPENERS = {"{": "}", "[": "]"}


def _scan(chunk: str) -> tuple[int | None, list[str], bool]:
    """Scan brackets outside strings: (end index of the balanced value or None, open stack, in_string)."""
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(chunk):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in _OPENERS:
            stack.append(_OPENERS[ch])
        elif ch in "}]":
            if not stack or stack[-1] != ch:
                return None, stack, False
            stack.pop()
            if not stack:
                return i, stack, False
    return None, stack, quote is not None


def _loads(chunk: str) -> Any:
    """json.loads, then without trailing commas, then as a Python literal (single quotes, True/None)."""
    try:
        return json.loads(chunk)
    except ValueError:
        pass
    fixed = re.sub(r",\s*([}\]])", r"\1", re.sub(r",(\s*,)+", ",", chunk))
    try:
        return json.loads(fixed)
    except ValueError:
        pass
    pythonic = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", fixed)))
    try:
        value = ast.literal_eval(pythonic)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, (dict, list)) else None


def _repair_truncated(chunk: str) -> Any:
    """A JSON value cut off mid-way (the model ran out of tokens): cut back to the last complete
    element and close the open brackets."""
    cuts = [len(chunk.rstrip()) - 1] + [m.start() for m in re.finditer(r"[}\]]", chunk)] + \
        [m.start() - 1 for m in re.finditer(",", chunk)]
    for cut in sorted(set(cuts), reverse=True)[:60]:
        prefix = chunk[: cut + 1]
        end, stack, in_string = _scan(prefix)
        if end is not None or in_string or not stack:
            continue
        value = _loads(prefix.rstrip().rstrip(",") + "".join(reversed(stack)))
        if value is not None:
            return value
    return None


def _find_json(text: str) -> Any:
    """The first JSON object/array in the text (fenced blocks first); None when there is none."""
    sources = [m.group(1) for m in re.finditer(r"```[\w-]*[ \t]*\n?(.*?)(?:```|$)", text, re.S)] + [text]
    for source in sources:
        resume, tries = 0, 0
        for m in re.finditer(r"[{\[]", source):
            if m.start() < resume:  # inside a value that did not parse: its fragments are not the plan
                continue
            tries += 1
            if tries > 20:
                break
            chunk = source[m.start():]
            end, _, _ = _scan(chunk)
            value = _loads(chunk[: end + 1]) if end is not None else _repair_truncated(chunk)
            if isinstance(value, (dict, list)) and value:
                return value
            resume = m.start() + (end + 1 if end is not None else len(chunk))
    return None


def _key(k: Any) -> str:
    return re.sub(r"[\s_\-]+", "", str(k)).lower()


def _pick(d: dict[str, Any], names: tuple[str, ...]) -> Any:
    keys = {_key(k): v for k, v in d.items()}
    for name in names:
        value = keys.get(_key(name))
        if value not in (None, "", [], {}):
            return value
    return None


_TITLE_KEYS = ("title", "book_title", "story_title", "标题", "书名", "题目", "故事名", "故事标题")
_CAST_KEYS = ("cast", "characters", "character", "roles", "main_characters", "角色", "人物", "主要角色", "角色表")
_PAGES_KEYS = ("pages", "outline", "story", "scenes", "chapters", "plot", "页面", "页", "大纲", "故事大纲", "情节")
_NAME_KEYS = ("name", "character", "名字", "姓名", "名称", "角色")
_DESC_KEYS = ("description", "desc", "role", "personality", "who", "about", "描述", "介绍", "身份", "性格", "简介")
_LOOK_KEYS = ("look", "looks", "appearance", "visual", "outfit", "visual_description", "外貌", "外观", "长相",
              "形象", "样子")
_INDEX_KEYS = ("index", "page", "page_number", "pagenumber", "number", "no", "页码", "页")
_SCENE_KEYS = ("scene", "picture", "image", "illustration", "visual", "image_prompt", "illustration_prompt",
               "画面", "场景", "插图", "图片")
_SUMMARY_KEYS = ("summary", "text", "content", "event", "events", "what_happens", "plot", "story", "description",
                 "情节", "内容", "摘要", "故事", "描述")


def _clean(value: Any) -> str:
    """A model's string, tidied: markdown emphasis and wrapping quotes removed, whitespace collapsed."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(_clean(v) for v in value)
    text = str(value).replace("**", "").replace("__", "")
    text = " ".join(text.split()).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    if len(text) >= 2 and text[0] in "“「《" and text[-1] in "”」》":
        text = text[1:-1].strip()
    return text.strip(" -–—|;；,，:：*_")


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9}


def _number(s: str) -> int | None:
    """'3', '３', '三', '十二', '二十一' -> int; None when not a number."""
    s = s.strip()
    if not s:
        return None
    if s.isdigit():
        return int(s)
    if not all(ch in _CN_DIGITS or ch in "十百" for ch in s):
        return None
    total, current = 0, 0
    for ch in s:
        if ch in _CN_DIGITS:
            current = _CN_DIGITS[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
    return total + current


_NAME_SPLIT = re.compile(r"\s+[-–—]+\s+|\s*[:：]\s*|\s*[（(]\s*|\s*,\s+|\s*，\s*|\s+is\s+|\s*是")


def _character_from_text(text: str, strict: bool = False) -> tuple[str, str, str] | None:
    """'Lily - a girl with a red scarf' / '小兔：白色的小兔子' / 'Tom (a boy; look: blue cap)' -> (name, desc, look).

    A name is short and no sentence; `strict` (a numbered line that may as well be a page) also
    wants it separated by a dash or a colon and at most three words."""
    text = _clean(text)
    m = _NAME_SPLIT.search(text)
    if not m or m.start() == 0:
        return None
    name, rest = _clean(text[: m.start()]), text[m.end():].rstrip(")）").strip()
    if not name or len(name) > 40 or not rest or re.search(r"[。！？!?]|[.]$", name):
        return None
    if strict and (len(name.split()) > 3 or len(name) > 24 or not re.fullmatch(r"\s*(?:[-–—]+|[:：])\s*", m.group(0))):
        return None
    look = ""
    lm = re.search(r"(?:look|looks|appearance|外貌|外观|长相)\s*[:：]\s*(.+)$", rest, re.I)
    if lm:
        look = _clean(lm.group(1))
        rest = rest[: lm.start()]
    return name, _clean(rest), look


def _character_from_data(item: Any, fallback_name: str = "") -> tuple[str, str, str] | None:
    if isinstance(item, str):
        return _character_from_text(item) or ((_clean(item), "", "") if 0 < len(_clean(item)) <= 40 else None)
    if isinstance(item, dict):
        name = _clean(_pick(item, _NAME_KEYS)) or fallback_name
        if not name:
            return None
        return name, _clean(_pick(item, _DESC_KEYS)), _clean(_pick(item, _LOOK_KEYS))
    return None


_SCENE_MARK = r"scene|picture|image|illustration|visual|画面|场景|插图|图片"
_SUMMARY_MARK = r"summary|text|what happens|plot|events?|情节|内容|故事|摘要"
_MARKS = re.compile(rf"[(\[（【]?\s*(?<![A-Za-z])({_SCENE_MARK}|{_SUMMARY_MARK})\s*[:：]", re.I)


def _split_page_text(text: str) -> tuple[str, str]:
    """'Lily finds a seed. (Picture: Lily kneeling)' -> (scene, summary); either may be ''."""
    marks = list(_MARKS.finditer(text))
    scene, summary = [], []
    lead = text[: marks[0].start()] if marks else text
    for i, m in enumerate(marks):
        part = text[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)]
        part = _clean(part.strip().rstrip(")]）】").strip())
        is_scene = re.fullmatch(_SCENE_MARK, m.group(1).lower(), re.I) is not None
        (scene if is_scene else summary).append(part)
    if _clean(lead):
        summary.insert(0, _clean(lead))
    return _clean(" ".join(s for s in scene if s)), _clean(" ".join(s for s in summary if s))


def _page_from_data(item: Any) -> tuple[int | None, str, str] | None:
    """(index or None, scene, summary) from a JSON page (an object or a string)."""
    if isinstance(item, str):
        scene, summary = _split_page_text(item)
        return (None, scene, summary) if scene or summary else None
    if isinstance(item, dict):
        raw_index = _pick(item, _INDEX_KEYS)
        index = _number(str(raw_index)) if isinstance(raw_index, (int, str)) and not isinstance(raw_index, bool) \
            else None
        scene, summary = _clean(_pick(item, _SCENE_KEYS)), _clean(_pick(item, _SUMMARY_KEYS))
        return (index, scene, summary) if scene or summary else None
    return None


_TITLE_LINE = re.compile(r"^[#>*_\s]*(?:book\s+|story\s+)?(?:title|标题|题目|书名|故事名|故事标题)[*_\s]*[:：]\s*(.+)$",
                         re.I)
_CAST_LINE = re.compile(r"^[#>*_\s]*(?:the\s+|main\s+)?(?:cast|characters?|角色|人物|主要角色|主角|角色表)[*_\s]*"
                        r"(?:[:：]\s*(.*))?$", re.I)
_PAGE_LINE = re.compile(r"^[#>*_\-•\s]*(?:(?:page|p\.)\s*(\d+)|第\s*([0-9０-９一二三四五六七八九十百两]+)\s*[页頁幕]"
                        r"|(\d+)\s*(?=[.)、:：]))[*_\s]*[.)、:：\-–—]*\s*(.*)$", re.I)
_SECTION_LINE = re.compile(r"^[#>*_\s]*(?:pages?|outline|story|plot|story outline|故事大纲|大纲|页面|故事|情节)"
                           r"[*_\s]*[:：]?\s*$", re.I)
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d+[.)])\s+(.+)$")


class _Draft:
    """What a reply yielded before gaps are filled: a title, cast tuples and page tuples."""

    def __init__(self) -> None:
        self.title = ""
        self.cast: list[tuple[str, str, str]] = []
        self.pages: list[tuple[int | None, str, str]] = []

    @property
    def empty(self) -> bool:
        return not (self.title or self.cast or self.pages)

    def merged_with(self, other: _Draft) -> _Draft:
        out = _Draft()
        out.title = self.title or other.title
        out.cast = self.cast or other.cast
        out.pages = self.pages or other.pages
        return out

    @classmethod
    def from_data(cls, data: Any) -> _Draft:
        draft = cls()
        if isinstance(data, list):
            data = {"pages": data}
        if not isinstance(data, dict):
            return draft
        if _pick(data, _TITLE_KEYS + _CAST_KEYS + _PAGES_KEYS) is None:  # {"story": {...}} or {"plan": {...}}
            inner = [v for v in data.values() if isinstance(v, dict)]
            if len(inner) == 1:
                data = inner[0]
        title = _pick(data, _TITLE_KEYS)
        draft.title = _clean(title) if isinstance(title, (str, int, float)) else ""
        cast = _pick(data, _CAST_KEYS)
        if isinstance(cast, dict):  # {"Lily": "a girl ...", "Tom": {...}}
            cast = [({"name": k, **v} if isinstance(v, dict) else f"{k}: {v}") for k, v in cast.items()]
        elif isinstance(cast, str):
            cast = [c for c in re.split(r"[;；\n]", cast) if c.strip()]
        for item in cast if isinstance(cast, list) else []:
            character = _character_from_data(item)
            if character:
                draft.cast.append(character)
        pages = _pick(data, _PAGES_KEYS)
        if isinstance(pages, dict):  # {"1": "...", "2": {...}}
            pages = [({"index": k, **v} if isinstance(v, dict) else f"{v}") for k, v in pages.items()]
        elif isinstance(pages, str):
            pages = _Draft.from_outline(pages).pages or [pages]
        for item in pages if isinstance(pages, list) else []:
            page = item if isinstance(item, tuple) else _page_from_data(item)
            if page:
                draft.pages.append(page)
        return draft

    @classmethod
    def from_outline(cls, text: str) -> _Draft:
        draft = cls()
        section: str | None = None
        page_lines: list[list[str]] = []
        indexes: list[int | None] = []
        lines = [line.strip() for line in text.splitlines()]
        for n, line in enumerate(lines):
            if not line or set(line) <= set("-=*_`#"):
                continue
            m = _TITLE_LINE.match(line)
            if m:
                draft.title = draft.title or _clean(m.group(1))
                section = None
                continue
            m = _PAGE_LINE.match(line)
            if m and not (section == "cast" and m.group(3) and _character_from_text(m.group(4) or "", strict=True)):
                # (a numbered line under a "Characters:" header that reads "Name - ..." is a cast member)
                number = m.group(1) or m.group(2) or m.group(3)
                indexes.append(_number(number))
                page_lines.append([m.group(4) or ""])
                section = "page"
                continue
            m = _CAST_LINE.match(line)
            if m:
                section = None if _clean(m.group(1)) else "cast"  # an inline list ends on its line
                for item in re.split(r"[;；]", m.group(1) or ""):
                    character = _character_from_text(item)
                    if character:
                        draft.cast.append(character)
                continue
            if _SECTION_LINE.match(line):
                section = None
                continue
            if section == "cast":
                bullet = _BULLET.match(line)
                character = _character_from_text(_PAGE_LINE.sub(r"\4", bullet.group(1) if bullet else line))
                if character:
                    draft.cast.append(character)
            elif section == "page":
                page_lines[-1].append(line)
            elif n == next(i for i, s in enumerate(lines) if s) and line.startswith("#") and not draft.title:
                draft.title = _clean(line.lstrip("#"))  # a markdown heading first: the title
        for index, parts in zip(indexes, page_lines, strict=True):
            scene, summary = _split_page_text(" ".join(p for p in parts if p))
            if scene or summary:
                draft.pages.append((index, scene, summary))
        return draft

    def to_plan(self, topic: str, pages: int | None, language: Language) -> StoryPlan:
        notes: list[str] = []
        about = topic or ("一次小小的冒险" if language == "zh" else "a small adventure")
        title = self.title
        if not title:
            title = _derived_title(about, language)
            notes.append(f"title: none in the reply; derived from the topic ({title!r})")
        cast: list[Character] = []
        seen: set[str] = set()
        for name, description, look in self.cast:
            if name.lower() in seen:
                notes.append(f"cast: {name!r} listed twice; the first entry is kept")
                continue
            seen.add(name.lower())
            if not look:
                look = description or name
                notes.append(f"cast: {name!r} has no separate look; " +
                             ("its description is used" if description else "its name is used"))
            cast.append(Character(name=name, description=description, look=look))
        if not cast:
            cast = [_derived_protagonist(about, language)]
            notes.append(f"cast: none in the reply; one protagonist derived from the topic ({cast[0].name!r})")
        total = pages if pages is not None else (len(self.pages) or DEFAULT_PAGES)
        given = self.pages
        indexes = [i for i, _, _ in given]
        slots: list[tuple[str, str] | None] = [None] * total
        extra: list[int] = []
        if given and None not in indexes and len(set(indexes)) == len(indexes) and \
                all(1 <= i <= total for i in indexes if i is not None):  # type: ignore[operator]
            for i, scene, summary in given:
                slots[i - 1] = (scene, summary)  # type: ignore[operator]
            if indexes != sorted(indexes):  # type: ignore[type-var]
                notes.append(f"pages: given in the order {indexes}; placed by their numbers")
        else:
            numbered = [i for i in indexes if i is not None]
            if numbered and numbered != list(range(1, len(given) + 1)):
                notes.append(f"pages: numbered {indexes} in the reply; renumbered 1..{len(given)} in the order given")
            for n, (_, scene, summary) in enumerate(given):
                if n < total:
                    slots[n] = (scene, summary)
                else:
                    extra.append(n + 1)
        if extra:
            notes.append(f"pages: the reply had {len(given)}; {len(extra)} beyond the {total} asked for dropped")
        hero = cast[0].name
        derived: list[int] = []
        plan_pages: list[PagePlan] = []
        for n, slot in enumerate(slots, start=1):
            d_scene, d_summary = _derived_page(n, total, hero, about, language)
            if slot is None:
                derived.append(n)
                plan_pages.append(PagePlan(index=n, scene=d_scene, summary=d_summary))
                continue
            scene, summary = slot
            if not summary:
                summary = scene
                notes.append(f"page {n}: no summary given; the scene is used")
            if not scene:
                scene = summary
                notes.append(f"page {n}: no scene given; the summary is used")
            plan_pages.append(PagePlan(index=n, scene=scene, summary=summary))
        if derived:
            notes.append(f"pages {_ranges(derived)}: not in the reply; derived from the topic")
        return StoryPlan(title=title, topic=topic, language=language, cast=cast, pages=plan_pages, notes=notes)


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'."""
    out: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:] + [None]:  # type: ignore[list-item]
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(out)


def _derived_title(topic: str, language: Language) -> str:
    topic = topic.strip().rstrip(".!?。！？")
    if language == "zh":
        return topic if topic.endswith("故事") else f"{topic}的故事"
    topic = re.sub(r"^(?:a|an|the)\s+(?:story|tale|book)\s+(?:about|of)\s+", "", topic, flags=re.I)
    return (topic[:1].upper() + topic[1:])[:80] or "A Little Story"


#: protagonists by the animal a topic names: English word(s), Chinese word, name (en, zh), look (en, zh)
_ANIMALS = [
    (("fox",), "狐狸", ("Little Fox", "小狐狸"),
     ("a small orange fox with a white-tipped tail and a green scarf",
      "一只橙色的小狐狸，尾巴尖是白色的，围着绿色围巾")),
    (("rabbit", "bunny"), "兔", ("Little Rabbit", "小兔"),
     ("a small white rabbit with long ears and a red bow tie", "一只长耳朵的小白兔，戴着红色领结")),
    (("panda",), "熊猫", ("Little Panda", "小熊猫"),
     ("a round black-and-white panda cub with a blue backpack", "一只圆滚滚的黑白小熊猫，背着蓝色小书包")),
    (("bear",), "熊", ("Little Bear", "小熊"),
     ("a small brown bear with a yellow sweater", "一只穿黄色毛衣的棕色小熊")),
    (("owl",), "猫头鹰", ("Little Owl", "小猫头鹰"),
     ("a small brown owl with big round glasses", "一只戴着圆眼镜的棕色小猫头鹰")),
    (("kitten", "cat"), "猫", ("Little Cat", "小猫"),
     ("a grey striped kitten with green eyes and a bell collar", "一只绿眼睛的灰色条纹小猫，戴着铃铛项圈")),
    (("puppy", "dog"), "狗", ("Little Dog", "小狗"),
     ("a fluffy beige puppy with floppy ears and a red collar", "一只耳朵耷拉的米色小狗，戴着红色项圈")),
    (("mouse",), "老鼠", ("Little Mouse", "小老鼠"),
     ("a tiny grey mouse with pink ears and a striped scarf", "一只粉耳朵的小灰鼠，围着条纹围巾")),
    (("dragon",), "龙", ("Little Dragon", "小龙"),
     ("a small green dragon with tiny wings and a golden belly", "一条长着小翅膀、金色肚皮的绿色小龙")),
    (("duck",), "鸭", ("Little Duck", "小鸭"),
     ("a yellow duckling with an orange beak and a blue cap", "一只橙色嘴巴、戴蓝帽子的黄色小鸭")),
    (("elephant",), "大象", ("Little Elephant", "小象"),
     ("a small grey elephant with big ears and a purple hat", "一头大耳朵、戴紫色帽子的灰色小象")),
    (("turtle", "tortoise"), "乌龟", ("Little Turtle", "小乌龟"),
     ("a small green turtle with a patterned shell", "一只背着花纹壳的绿色小乌龟")),
    (("lion",), "狮子", ("Little Lion", "小狮子"),
     ("a lion cub with a fluffy golden mane", "一只有蓬松金色鬃毛的小狮子")),
    (("penguin",), "企鹅", ("Little Penguin", "小企鹅"),
     ("a small penguin with a red knitted hat", "一只戴红色毛线帽的小企鹅")),
    (("robot",), "机器人", ("Little Robot", "小机器人"),
     ("a small round silver robot with blue glowing eyes", "一个圆圆的银色小机器人，眼睛发着蓝光")),
]
_DEFAULT_HERO = (("Mia", "小美"),
                 ("a cheerful girl with short curly brown hair, a yellow raincoat and red boots",
                  "一个短卷发的快乐小女孩，穿着黄色雨衣和红色雨靴"))


def _derived_protagonist(topic: str, language: Language) -> Character:
    """The protagonist of a plan whose reply named none: the animal the topic names first, else a child."""
    zh = language == "zh"
    lowered = topic.lower()
    best: tuple[int, tuple[str, str], tuple[str, str]] | None = None
    for words, zh_word, names, looks in _ANIMALS:
        positions = [m.start() for w in words for m in re.finditer(rf"\b{w}s?\b", lowered)]
        if zh_word in topic:
            positions.append(topic.index(zh_word))
        if positions and (best is None or min(positions) < best[0]):
            best = (min(positions), names, looks)
    names, looks = (best[1], best[2]) if best else _DEFAULT_HERO
    name, look = (names[1], looks[1]) if zh else (names[0], looks[0])
    description = f"{topic}这个故事的主角" if zh else f"the hero of a story about {topic}"
    return Character(name=name, description=description, look=look)


_ARC_EN = {
    "begin": ("{hero} wakes up on a bright morning, ready for an adventure about {topic}.",
              "{hero} at home in the morning sun, smiling and excited"),
    "middle": [("{hero} sets out and discovers something new about {topic}.",
                "{hero} exploring outside, looking at something surprising"),
               ("{hero} meets a problem and has to think hard.",
                "{hero} looking puzzled in front of an obstacle"),
               ("{hero} gets help from a friend and tries again.",
                "{hero} and a friend working together")],
    "end": ("{hero} succeeds, and learns something about {topic}.",
            "{hero} smiling proudly in the warm evening light"),
}
_ARC_ZH = {
    "begin": ("一个晴朗的早晨，{hero}醒来，准备开始一段关于{topic}的冒险。", "清晨的阳光里，{hero}在家中开心地微笑"),
    "middle": [("{hero}出发了，发现了关于{topic}的新鲜事。", "{hero}在户外探索，看着一样令人惊奇的东西"),
               ("{hero}遇到了一个难题，需要好好想一想。", "{hero}站在障碍前，露出困惑的表情"),
               ("{hero}得到朋友的帮助，又试了一次。", "{hero}和朋友一起努力")],
    "end": ("{hero}成功了，也明白了关于{topic}的道理。", "傍晚温暖的光里，{hero}骄傲地笑着"),
}


def _derived_page(n: int, total: int, hero: str, topic: str, language: Language) -> tuple[str, str]:
    """(scene, summary) of page n of total when the reply has none: a simple story arc by position."""
    arc = _ARC_ZH if language == "zh" else _ARC_EN
    if n == total:
        summary, scene = arc["end"]
    elif n == 1:
        summary, scene = arc["begin"]
    else:
        summary, scene = arc["middle"][(n - 2) % len(arc["middle"])]
    return scene.format(hero=hero, topic=topic), summary.format(hero=hero, topic=topic)

