"""Web fetch with httpx: off by default, on for the hosts of an allow-list.

An agent that can fetch any URL can reach internal services (cloud metadata, admin panels) on the
model's say-so, so nothing is fetched unless the host is allowed: `WebFetchTool(allow=[...])` or
RAYGENT_WEB_ALLOW="example.com,*.python.org,127.0.0.1:8000". Every redirect hop is checked too.
HTML comes back as readable text; other binary content is saved as an artifact.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

from raygent.schema import ToolExample
from raygent.toolhub.artifacts import ArtifactStore, default_store
from raygent.toolhub.base import Tool, ToolOutput

ALLOW_ENV = "RAYGENT_WEB_ALLOW"
_MAX_REDIRECTS = 5


class WebAccessDenied(PermissionError):
    """The URL's host is not on the allow-list (or web access is off)."""


def allow_list_from_env() -> list[str]:
    return [h.strip().lower() for h in os.environ.get(ALLOW_ENV, "").split(",") if h.strip()]


def host_allowed(url: str, allow: Sequence[str]) -> bool:
    """`host`, `host:port` and `*.domain` entries; `*` alone allows every host."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for entry in allow:
        entry = entry.lower()
        if entry == "*":
            return True
        name, _, entry_port = entry.partition(":") if not entry.startswith("[") else (entry, "", "")
        if entry_port and str(port) != entry_port:
            continue
        if name.startswith("*."):
            if host.endswith(name[1:]) or host == name[2:]:
                return True
        elif host == name:
            return True
    return False


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page (scripts, styles and markup dropped), plus its title."""

    _SKIP = {"script", "style", "noscript", "template", "svg"}
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header",
              "footer", "pre", "table", "ul", "ol", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skip:
            self._skip -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title += data.strip()
        self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r"\s*\n\s*", "\n", text).strip()
    return parser.title, text


class WebFetchTool(Tool):
    name = "web_fetch"
    description = "Fetch a web page (only allowed hosts) and return its readable text. 获取网页内容。"
    parameters = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "description": "http(s) URL"},
            "max_chars": {"type": "integer", "minimum": 100, "maximum": 200000, "default": 20000},
        },
        "required": ["url"],
    }
    domain = "web"
    timeout_s = 30.0
    idempotent = True  # GET only
    examples = [ToolExample(query="What does https://example.com say?", arguments={"url": "https://example.com"})]

    def __init__(self, allow: Sequence[str] | None = None, *, max_bytes: int = 5_000_000,
                 store: ArtifactStore | None = None, user_agent: str = "raygent-web-fetch/0.1"):
        self.allow = [a.lower() for a in allow] if allow is not None else None
        self.max_bytes = max_bytes
        self.store = store
        self.user_agent = user_agent

    def _allowed(self) -> list[str]:
        return self.allow if self.allow is not None else allow_list_from_env()

    def _check(self, url: str) -> None:
        allow = self._allowed()
        if not allow:
            raise WebAccessDenied(f"web access is off: allow hosts with {ALLOW_ENV}=host1,host2 (or "
                                  f"WebFetchTool(allow=[...])) to fetch {url}")
        if urlsplit(url).scheme not in ("http", "https"):
            raise WebAccessDenied(f"only http and https URLs can be fetched, not {url}")
        if not host_allowed(url, allow):
            raise WebAccessDenied(f"host of {url} is not on the web allow-list ({', '.join(allow)})")

    async def call(self, url: str, max_chars: int = 20000) -> Any:
        import httpx

        self._check(url)
        async with httpx.AsyncClient(follow_redirects=False, timeout=self.timeout_s,
                                     headers={"User-Agent": self.user_agent}) as client:
            for _ in range(_MAX_REDIRECTS + 1):
                async with client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        self._check(url)  # a redirect may not leave the allow-list
                        continue
                    body = bytearray()
                    truncated = False
                    async for chunk in response.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > self.max_bytes:
                            del body[self.max_bytes:]
                            truncated = True
                            break
                    return self._result(url, response, bytes(body), truncated, max_chars)
        raise RuntimeError(f"more than {_MAX_REDIRECTS} redirects fetching {url}")

    def _result(self, url: str, response: Any, body: bytes, truncated: bool, max_chars: int) -> Any:
        content_type = response.headers.get("content-type", "")
        mime = content_type.split(";", 1)[0].strip().lower()
        out: dict[str, Any] = {"url": url, "status": response.status_code, "content_type": mime}
        textual = mime.startswith("text/") or mime in ("application/json", "application/xml", "") or mime.endswith(
            "+xml") or mime.endswith("+json")
        if not textual:
            artifact = (self.store or default_store()).save_bytes(body, mime_type=mime or None,
                                                                    metadata={"source_url": url})
            out.update(file=artifact.uri, size_bytes=len(body), truncated=truncated)
            return ToolOutput(out, [artifact])
        text = body.decode(response.encoding or "utf-8", errors="replace")
        if mime in ("text/html", "application/xhtml+xml"):
            out["title"], text = html_to_text(text)
        if len(text) > max_chars:
            text, truncated = text[:max_chars], True
        out.update(text=text, truncated=truncated)
        return out
