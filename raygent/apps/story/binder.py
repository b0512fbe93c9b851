"""The binder: a `StoryBook` -> one self-contained HTML file, an EPUB 3 and a manifest.

    out_dir/book.html        pictures and recordings embedded as data: URIs; no external reference
    out_dir/book.epub        EPUB 3: title page, cast page, one chapter per page, nav; images and audio inside
    out_dir/manifest.json    what is in the book: per page text, scene, asset files with size and sha256
    out_dir/assets/page-NN.png / page-NN.wav   copies of the page artifacts

Deterministic, no model involved. Everything the models wrote (title, cast, page texts, error
messages) is untrusted and escaped: a page text `<script>` appears as text. Anything missing -- a
page's text, picture or recording, or an artifact whose file is gone -- gets a visible notice with
the recorded error, and a cancelled or incomplete book a banner listing what is missing.
"""

from __future__ import annotations

import base64
import html
import json
import mimetypes
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from raygent.apps.story.book import AssetProblem, StoryBook, StoryPage
from raygent.llm_pool.embedded import file_sha256
from raygent.schema import Artifact
from raygent.toolhub.artifacts import probe_metadata

MANIFEST_FORMAT = "raygent.storybook/1"
_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
             "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/mpeg": ".mp3",
             "audio/ogg": ".ogg", "audio/mp4": ".m4a"}
_PAGE_ASSET = re.compile(r"^page-\d+\.[A-Za-z0-9]+$")


class BoundBook(BaseModel):
    """Where the binder wrote the book, and what it found missing."""

    html: Path
    epub: Path
    manifest: Path
    assets: list[Path] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Collecting the assets


@dataclass
class _Asset:
    file: str  # relative to out_dir, e.g. "assets/page-01.png"
    path: Path
    mime_type: str
    size_bytes: int
    sha256: str
    metadata: dict[str, Any]

    def data(self) -> bytes:
        return self.path.read_bytes()

    def data_uri(self) -> str:
        return f"data:{self.mime_type};base64," + base64.b64encode(self.data()).decode("ascii")


@dataclass
class _Page:
    page: StoryPage
    image: _Asset | None
    audio: _Asset | None
    #: asset -> problems (the book's, plus "file not found" for an artifact whose file is gone)
    problems: dict[str, list[AssetProblem]] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return (self.page.text or "").strip()

    @property
    def missing(self) -> list[str]:
        out = [] if self.text else ["text"]
        return out + [name for name in ("image", "audio") if getattr(self, name) is None]


def _local_path(artifact: Artifact) -> Path:
    uri = artifact.uri
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()


def _mime(artifact: Artifact, path: Path) -> str:
    return (artifact.mime_type or mimetypes.guess_type(path.name)[0] or
            ("image/png" if artifact.kind == "image" else "audio/wav" if artifact.kind == "audio"
             else "application/octet-stream"))


def _copy_asset(artifact: Artifact, name: str, assets_dir: Path, number: str) -> _Asset:
    source = _local_path(artifact)
    if not source.is_file():
        raise FileNotFoundError(f"the {name} file {source.name!r} was not found when the book was bound")
    mime = _mime(artifact, source)
    suffix = _SUFFIXES.get(mime) or source.suffix or mimetypes.guess_extension(mime) or ""
    target = assets_dir / f"page-{number}{suffix}"
    if not (target.exists() and os.path.samefile(source, target)):
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
    metadata = dict(probe_metadata(target, mime))
    metadata.update(artifact.metadata)
    return _Asset(file=f"assets/{target.name}", path=target, mime_type=mime, size_bytes=target.stat().st_size,
                  sha256=file_sha256(target), metadata=metadata)


def _collect(book: StoryBook, assets_dir: Path) -> list[_Page]:
    digits = max(2, len(str(max((p.index for p in book.pages), default=1))))
    out: list[_Page] = []
    for page in book.pages:
        number = str(page.index).zfill(digits)
        bound = _Page(page=page, image=None, audio=None,
                      problems={a: book.problems_for(page.index, a) for a in ("text", "image", "audio")})
        for name in ("image", "audio"):
            artifact: Artifact | None = getattr(page, name)
            if artifact is None:
                continue
            try:
                setattr(bound, name, _copy_asset(artifact, name, assets_dir, number))
            except OSError as e:
                error = str(e) if isinstance(e, FileNotFoundError) else f"could not copy the {name}: {e}"
                bound.problems[name] = bound.problems[name] + [
                    AssetProblem(page=page.index, asset=name, attempts=0, error=error)]  # type: ignore[arg-type]
        out.append(bound)
    return out


# ---------------------------------------------------------------------------------------------
# Words


_WORDS = {
    "en": {
        "about": "A story about {topic}", "cast": "Cast", "page": "Page {n}", "contents": "Contents",
        "title_page": "Title page", "looks": "Looks like",
        "missing_text": "The text of this page is missing", "missing_image": "The picture for this page is missing",
        "missing_audio": "The narration for this page is missing",
        "attempts": "after {n} attempts", "attempt": "after 1 attempt", "no_error": "no error was recorded",
        "cancelled_no_error": "the book was cancelled before it was made",
        "cancelled": "This book was cancelled before it was finished",
        "incomplete": "Some parts of this book are missing",
        "reason": "Reason", "missing": "Missing", "made_by": "Made by the raygent storybook team",
        "model": "Model", "agents": "Agents", "timings": "Timings", "audio_fallback": "(narration: {file})",
        "colon": ": ",
    },
    "zh": {
        "about": "关于{topic}的故事", "cast": "角色", "page": "第{n}页", "contents": "目录",
        "title_page": "扉页", "looks": "外貌",
        "missing_text": "本页缺少文字", "missing_image": "本页缺少插图", "missing_audio": "本页缺少朗读音频",
        "attempts": "尝试了{n}次", "attempt": "尝试了1次", "no_error": "没有记录错误",
        "cancelled_no_error": "制作完成前已取消",
        "cancelled": "这本书在完成前被取消了", "incomplete": "这本书缺少部分内容",
        "reason": "原因", "missing": "缺少", "made_by": "由 raygent 故事书团队制作",
        "model": "模型", "agents": "智能体", "timings": "用时", "audio_fallback": "（朗读音频：{file}）",
        "colon": "：",
    },
}


def _missing_label(item: str, words: dict[str, str], language: str) -> str:
    """'page 3: image' in the book's language."""
    m = re.fullmatch(r"page (\d+): (\w+)", item)
    if not m or language != "zh":
        return item
    asset = {"text": "文字", "image": "插图", "audio": "音频"}.get(m.group(2), m.group(2))
    return f"第{m.group(1)}页：{asset}"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _paragraphs(text: str) -> str:
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]
    return "".join("<p>" + "<br/>".join(_e(line) for line in b.splitlines()) + "</p>" for b in blocks)


def _notice(page: _Page, asset: str, words: dict[str, str], cancelled: bool) -> str:
    problems = page.problems.get(asset) or []
    if problems:
        last = problems[-1]
        when = words["attempt"] if last.attempts == 1 else words["attempts"].format(n=last.attempts) \
            if last.attempts > 1 else ""
        detail = f"{when}{words['colon']}{last.error}" if when else last.error
    else:
        detail = words["cancelled_no_error"] if cancelled else words["no_error"]
    return (f'<div class="notice" role="note"><strong>{_e(words["missing_" + asset])}</strong>'
            f'<span class="error">{_e(detail)}</span></div>')


# ---------------------------------------------------------------------------------------------
# HTML

_FONTS = ('"Iowan Old Style", "Palatino Linotype", Georgia, "Noto Serif CJK SC", "Noto Serif SC", '
          '"Source Han Serif SC", "Songti SC", "Noto Sans CJK SC", "PingFang SC", "Hiragino Sans GB", '
          '"Microsoft YaHei", "WenQuanYi Micro Hei", serif')
_FONTS_ZH = ('"Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "PingFang SC", "Hiragino Sans GB", '
             '"Microsoft YaHei", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", sans-serif')

_CSS = """
:root { --ink: #2b2a33; --soft: #6b6878; --paper: #fbf7f0; --card: #ffffff; --accent: #c8553d; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--paper); color: var(--ink); font-family: FONTS; line-height: 1.6; }
:lang(zh) body, body:lang(zh) { font-family: FONTS_ZH; line-height: 1.8; }
main { max-width: 760px; margin: 0 auto; padding: 2.5rem 1.25rem 3rem; }
header.cover { text-align: center; margin-bottom: 2rem; }
header.cover h1 { font-size: 2.4rem; line-height: 1.2; margin: .2rem 0 .6rem; }
header.cover .about { color: var(--soft); font-style: italic; margin: 0; }
:lang(zh) header.cover .about { font-style: normal; }
.banner { border: 2px solid #c0392b; background: #fdecea; color: #7b1f16; border-radius: 12px;
          padding: .9rem 1.2rem; margin: 0 0 2rem; }
.banner.incomplete { border-color: #d68910; background: #fef5e7; color: #7e5109; }
.banner h2 { font-size: 1.1rem; margin: 0 0 .3rem; }
.banner p { margin: .3rem 0; }
.banner ul { margin: .3rem 0 0; padding-left: 1.3rem; }
section.cast { background: var(--card); border-radius: 14px; padding: 1rem 1.4rem;
               box-shadow: 0 2px 10px rgba(60, 40, 20, .08); margin-bottom: 2rem; }
section.cast h2 { margin: .2rem 0 .6rem; font-size: 1.3rem; }
section.cast ul { list-style: none; margin: 0; padding: 0; }
section.cast li { padding: .45rem 0; border-top: 1px solid #f0e9dd; }
section.cast li:first-child { border-top: 0; }
section.cast .look { display: block; color: var(--soft); font-size: .92rem; }
article.page { background: var(--card); border-radius: 16px; padding: 1.4rem 1.6rem 1.2rem;
               box-shadow: 0 3px 14px rgba(60, 40, 20, .10); margin: 0 0 2rem; }
article.page h2 { font-size: .95rem; letter-spacing: .08em; text-transform: uppercase; color: var(--accent);
                  margin: 0 0 .8rem; }
figure { margin: 0 0 1rem; }
figure img { display: block; width: 100%; height: auto; border-radius: 10px; background: #eee; }
figcaption { color: var(--soft); font-size: .85rem; margin-top: .4rem; }
audio { width: 100%; margin: .2rem 0 .8rem; }
.text { font-size: 1.2rem; }
.text p { margin: 0 0 .8rem; }
.notice { border-left: 5px solid #d68910; background: #fef5e7; color: #6e4a08; border-radius: 8px;
          padding: .6rem .9rem; margin: 0 0 1rem; font-size: .95rem; }
.notice strong { display: block; }
.notice .error { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .85rem;
                 white-space: pre-wrap; word-break: break-word; }
footer { color: var(--soft); font-size: .8rem; border-top: 1px solid #e8e0d2; padding-top: 1rem; }
footer dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: .5rem 0 0; }
footer dt { font-weight: bold; }
footer dd { margin: 0; }
""".replace("FONTS_ZH", _FONTS_ZH).replace("FONTS", _FONTS)

# nothing may load from outside the file: no scripts at all, images and audio only from data: URIs
_CSP = "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'"


def _banner(book: StoryBook, missing: list[str], words: dict[str, str]) -> str:
    if not book.cancelled and not missing:
        return ""
    kind = "cancelled" if book.cancelled else "incomplete"
    parts = [f'<div class="banner {kind}" role="alert"><h2>{_e(words[kind])}</h2>']
    if book.cancelled and book.cancel_reason:
        parts.append(f"<p>{_e(words['reason'])}{words['colon']}{_e(book.cancel_reason)}</p>")
    if missing:
        items = "".join(f"<li>{_e(_missing_label(m, words, book.language))}</li>" for m in missing)
        parts.append(f"<p>{_e(words['missing'])}{words['colon'].rstrip()}</p><ul>{items}</ul>")
    parts.append("</div>")
    return "".join(parts)


def _cast_list(book: StoryBook, words: dict[str, str]) -> str:
    if not book.cast:
        return ""
    items = []
    for c in book.cast:
        desc = f" — {_e(c.description)}" if c.description else ""
        look = (f'<span class="look">{_e(words["looks"])}{words["colon"]}{_e(c.look)}</span>'
                if c.look and c.look != c.description else "")
        items.append(f"<li><strong>{_e(c.name)}</strong>{desc}{look}</li>")
    return f'<section class="cast"><h2>{_e(words["cast"])}</h2><ul>{"".join(items)}</ul></section>'


def _colophon(book: StoryBook, words: dict[str, str]) -> str:
    rows = []
    if book.model:
        rows.append((words["model"], book.model))
    if book.agents:
        rows.append((words["agents"], "; ".join(f"{k}: {v}" for k, v in book.agents.items())))
    if book.timings:
        rows.append((words["timings"], ", ".join(f"{k} {v:.1f} s" for k, v in book.timings.items())))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f"<footer><p>{_e(words['made_by'])}</p>" + (f"<dl>{dl}</dl>" if dl else "") + "</footer>"


def _image_html(asset: _Asset, alt: str, src: str) -> str:
    w, h = asset.metadata.get("width"), asset.metadata.get("height")
    size = f' width="{int(w)}" height="{int(h)}"' if isinstance(w, int) and isinstance(h, int) else ""
    return f'<img src="{_e(src)}" alt="{_e(alt)}"{size}/>'


def _page_parts(p: Any, words: dict[str, str], cancelled: bool, tag: str, *, image_src: str,
                audio: str) -> list[str]:
    """One page's markup, in pieces: heading, picture (or its notice), recording (or its notice),
    text (or its notice). The HTML book and the EPUB chapters differ only in how they reference the
    media (`image_src`, the `audio` element) and in the page's element (`tag`)."""
    n = p.page.index
    parts = [f'<{tag} class="page" id="page-{n}"><h2>{_e(words["page"].format(n=n))}</h2>']
    if p.image is not None:
        caption = f"<figcaption>{_e(p.page.scene)}</figcaption>" if p.page.scene else ""
        parts.append(f"<figure>{_image_html(p.image, p.page.scene, image_src)}{caption}</figure>")
    else:
        parts.append(_notice(p, "image", words, cancelled))
    parts.append(audio if p.audio is not None else _notice(p, "audio", words, cancelled))
    parts.append(f'<div class="text">{_paragraphs(p.text)}</div>' if p.text else _notice(p, "text", words, cancelled))
    parts.append(f"</{tag}>")
    return parts


def render_html(book: StoryBook, pages: list[_Page], missing: list[str]) -> str:
    words = _WORDS[book.language]
    lang = "zh-Hans" if book.language == "zh" else "en"
    body: list[str] = [
        '<header class="cover">',
        f'<p class="about">{_e(words["about"].format(topic=book.topic))}</p>' if book.topic else "",
        f"<h1>{_e(book.title)}</h1></header>",
        _banner(book, missing, words),
        _cast_list(book, words),
    ]
    for p in pages:  # the pictures and recordings inline, as data: URIs
        body.extend(_page_parts(p, words, book.cancelled, "article",
                                image_src=p.image.data_uri() if p.image is not None else "",
                                audio=f'<audio controls="controls" preload="metadata" src="{p.audio.data_uri()}"></audio>'
                                if p.audio is not None else ""))
    body.append(_colophon(book, words))
    return (f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8"/>\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"/>\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"/>\n'
            f'<meta name="generator" content="raygent storybook binder"/>\n'
            f"<title>{_e(book.title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body>\n<main>\n" + "\n".join(b for b in body if b) + "\n</main>\n</body>\n</html>\n")


# ---------------------------------------------------------------------------------------------
# EPUB


def _write_epub(book: StoryBook, pages: list[_Page], missing: list[str], path: Path) -> None:
    try:
        from ebooklib import epub
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the storybook binder needs ebooklib for EPUB: pip install 'raygent[story]' "
                          "(or pip install 'ebooklib>=0.18')") from e
    words = _WORDS[book.language]
    lang = book.language
    ebook = epub.EpubBook()
    seed = f"raygent-story\n{book.title}\n{book.topic}\n{book.created_at!r}"
    ebook.set_identifier(f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, seed)}")
    ebook.set_title(book.title)
    ebook.set_language(lang)
    ebook.add_author(words["made_by"])
    if book.topic:
        ebook.add_metadata("DC", "description", words["about"].format(topic=book.topic))
    css = epub.EpubItem(uid="style", file_name="style/book.css", media_type="text/css",
                        content=(_CSS + _EPUB_CSS).encode("utf-8"))
    ebook.add_item(css)

    def chapter(uid: str, file_name: str, title: str, content: str) -> Any:
        item = epub.EpubHtml(uid=uid, title=title, file_name=file_name, lang=lang)
        item.content = f"<html><head><title>{_e(title)}</title></head><body>{content}</body></html>"
        item.add_item(css)
        ebook.add_item(item)
        return item

    cover = next((p.image for p in pages if p.image is not None), None)
    for p in pages:  # asset items first, so chapters can point at them
        for name, asset in (("image", p.image), ("audio", p.audio)):
            if asset is None:
                continue
            uid = f"{name}-{p.page.index}"
            if name == "image":
                item = epub.EpubImage(uid=uid, file_name=asset.file, media_type=asset.mime_type, content=asset.data())
                if asset is cover:  # the first picture doubles as the cover (EPUB 3 and EPUB 2 readers)
                    item.properties = ["cover-image"]
                    ebook.add_metadata(None, "meta", "", {"name": "cover", "content": uid})
            else:
                item = epub.EpubItem(uid=uid, file_name=asset.file, media_type=asset.mime_type, content=asset.data())
            ebook.add_item(item)

    title_html = ['<div class="title-page">',
                  f'<p class="about">{_e(words["about"].format(topic=book.topic))}</p>' if book.topic else "",
                  f"<h1>{_e(book.title)}</h1>",
                  f'<p class="cover-image">{_image_html(cover, book.title, cover.file)}</p>' if cover else "",
                  "</div>", _banner(book, missing, words), _colophon(book, words)]
    title_page = chapter("title", "title.xhtml", words["title_page"], "".join(title_html))
    cast_page = chapter("cast", "cast.xhtml", words["cast"], _cast_list(book, words) or f"<h2>{_e(words['cast'])}</h2>")
    chapters = []
    for p in pages:  # the pictures and recordings as files of the EPUB
        n = p.page.index
        audio = ""
        if p.audio is not None:
            fallback = _e(words["audio_fallback"].format(file=p.audio.file))
            audio = f'<audio controls="controls" src="{_e(p.audio.file)}">{fallback}</audio>'
        parts = _page_parts(p, words, book.cancelled, "section",
                            image_src=p.image.file if p.image is not None else "", audio=audio)
        chapters.append(chapter(f"page-{n}", f"page-{str(n).zfill(2)}.xhtml", words["page"].format(n=n),
                                "".join(parts)))

    ebook.toc = [epub.Link(title_page.file_name, book.title, "title"),
                 epub.Link(cast_page.file_name, words["cast"], "cast")] + \
                [epub.Link(c.file_name, c.title, c.id) for c in chapters]
    ebook.add_item(epub.EpubNcx())
    nav = epub.EpubNav(title=words["contents"])
    nav.add_item(css)
    ebook.add_item(nav)
    ebook.spine = [title_page, cast_page, "nav"] + chapters
    tmp = path.with_name(path.name + ".part")
    modified = datetime.fromtimestamp(book.created_at, tz=timezone.utc)  # not the binding time: reproducible
    epub.write_epub(str(tmp), ebook, {"epub3_pages": False, "mtime": modified})
    tmp.replace(path)


_EPUB_CSS = """
body { background: #ffffff; margin: 1em; }
.title-page { text-align: center; margin-top: 2em; }
.title-page h1 { font-size: 2em; }
.title-page .about { color: #6b6878; font-style: italic; }
.cover-image img { max-width: 100%; border-radius: 10px; }
section.page h2 { font-size: 1em; color: #c8553d; }
"""


# ---------------------------------------------------------------------------------------------
# Manifest and bind()


def _asset_entry(asset: _Asset | None) -> dict[str, Any] | None:
    if asset is None:
        return None
    entry: dict[str, Any] = {"file": asset.file, "mime_type": asset.mime_type, "size_bytes": asset.size_bytes,
                             "sha256": asset.sha256}
    for key in ("width", "height", "duration_s", "sample_rate", "channels"):
        if key in asset.metadata:
            entry[key] = asset.metadata[key]
    extra = {k: v for k, v in asset.metadata.items() if k not in entry}
    if extra:
        entry["metadata"] = extra
    return entry


def build_manifest(book: StoryBook, pages: list[_Page], missing: list[str]) -> dict[str, Any]:
    created = datetime.fromtimestamp(book.created_at, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    return {
        "format": MANIFEST_FORMAT,
        "title": book.title,
        "topic": book.topic,
        "language": book.language,
        "cast": [c.model_dump() for c in book.cast],
        "files": {"html": "book.html", "epub": "book.epub"},
        "pages": [{
            "index": p.page.index,
            "text": p.page.text,
            "scene": p.page.scene,
            "summary": p.page.summary,
            "image": _asset_entry(p.image),
            "audio": _asset_entry(p.audio),
            "missing": p.missing,
            "problems": [pr.model_dump() for a in ("text", "image", "audio") for pr in p.problems.get(a, [])],
        } for p in pages],
        "problems": [pr.model_dump() for p in pages for a in ("text", "image", "audio")
                     for pr in p.problems.get(a, [])] +
                    [pr.model_dump() for pr in book.problems if book.page(pr.page) is None],
        "missing": missing,
        "complete": bool(pages) and not missing,
        "cancelled": book.cancelled,
        "cancel_reason": book.cancel_reason,
        "model": book.model,
        "agents": book.agents,
        "timings": book.timings,
        "created_at": book.created_at,
        "created_at_iso": created,
    }


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def bind(book: StoryBook, out_dir: str | os.PathLike[str]) -> BoundBook:
    """Write book.html, book.epub, manifest.json and assets/ into out_dir (created; files replaced)."""
    out = Path(out_dir)
    assets_dir = out / "assets"
    assets_dir.mkdir(parents=True, exist_ok=True)
    pages = _collect(book, assets_dir)
    kept = {p.path.name for bp in pages for p in (bp.image, bp.audio) if p is not None}
    for stale in assets_dir.iterdir():  # a page asset of an earlier binding that this book lacks
        if stale.is_file() and _PAGE_ASSET.match(stale.name) and stale.name not in kept:
            stale.unlink()
    missing = [f"page {p.page.index}: {a}" for p in pages for a in p.missing]
    html_path, epub_path, manifest_path = out / "book.html", out / "book.epub", out / "manifest.json"
    _write_text(html_path, render_html(book, pages, missing))
    _write_epub(book, pages, missing, epub_path)
    manifest = build_manifest(book, pages, missing)
    _write_text(manifest_path, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    assets = sorted((p.path for bp in pages for p in (bp.image, bp.audio) if p is not None), key=lambda x: x.name)
    return BoundBook(html=html_path, epub=epub_path, manifest=manifest_path, assets=assets, missing=missing)
