"""Reading documents (txt, md, html, pdf) into text sections, and chunking them with overlap.

A section is the text of one file, or of one pdf page (so that citations can name the page).
Chunks are windows of about `size` characters that overlap by `overlap` characters and end at a
paragraph, sentence or word boundary when one lies in the last fifth of the window (Chinese
sentence ends count, so text without spaces chunks cleanly too).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

from pydantic import BaseModel

SUFFIXES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html",
            ".htm": "html", ".pdf": "pdf"}


class Section(BaseModel):
    text: str
    page: int | None = None  # 1-based, pdf only


class _HTMLText(HTMLParser):
    """Visible text of an HTML page: block elements become line breaks, script/style are dropped."""

    BLOCKS = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer",
              "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def read_document(path: str | Path) -> list[Section]:
    """The text sections of one file; raises ValueError for an unsupported type."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"unsupported document type {path.suffix!r} ({path}); supported: "
                         f"{', '.join(sorted(SUFFIXES))}")
    if kind == "pdf":
        try:
            from pypdf import PdfReader
        except ImportError as exc:
            raise RuntimeError("reading pdf needs pypdf: pip install 'raygent[retrieval]'") from exc
        reader = PdfReader(str(path))
        return [Section(text=t.strip(), page=i) for i, page in enumerate(reader.pages, 1)
                if (t := page.extract_text() or "").strip()]
    raw = path.read_text(encoding="utf-8", errors="replace")
    text = html_to_text(raw) if kind == "html" else raw.strip()
    return [Section(text=text)] if text else []


def iter_documents(path: str | Path) -> Iterator[Path]:
    """Supported files at `path` (the file itself, or a folder walked recursively, sorted)."""
    path = Path(path).expanduser()
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or folder: {path}")
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.suffix.lower() in SUFFIXES and not any(part.startswith(".") for part in p.parts):
            yield p


_BREAKS = ("\n\n", "\n", "。", "！", "？", "；", ". ", "! ", "? ", "; ", "，", ", ", " ")


def chunk_text(text: str, size: int = 800, overlap: int = 150) -> list[str]:
    """Overlapping windows of about `size` characters (see the module docstring)."""
    if size <= 0 or overlap < 0 or overlap >= size:
        raise ValueError(f"need size > overlap >= 0, got size={size}, overlap={overlap}")
    text = text.strip()
    if len(text) <= size:
        return [text] if text else []
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            window = text[start:end]
            floor = int(size * 0.8)
            for br in _BREAKS:
                cut = window.rfind(br, floor)
                if cut != -1:
                    end = start + cut + len(br)
                    break
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= len(text):
            break
        nxt = max(end - overlap, start + 1)
        # begin the next chunk at a word start where possible
        space = text.find(" ", nxt, end)
        start = space + 1 if space != -1 and space - nxt < overlap // 2 else nxt
    return chunks
