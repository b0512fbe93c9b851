"""Web fetch with httpx: off by default, on for the hosts of an allow-list.

An agent that can fetch any URL can reach internal services (cloud metadata, admin panels) on the
model's say-so, so nothing is fetched unless the host is allowed: `WebFetchTool(allow=[...])` or
RAYGENT_WEB_ALLOW="example.com,*.python.org,127.0.0.1:8000". Every redirect hop is checked too.

Wildcard entries (`*`, `*.domain`) reach public internet addresses only: a host that resolves to a
loopback, private, link-local or otherwise non-public address (127.0.0.1, 10.x, 169.254.169.254,
::1, 0.0.0.0, also written as 2130706433 or 0x7f000001) is fetched only when an entry names that
host exactly ("127.0.0.1:8000", "wiki.intranet"). The name is resolved once per hop, the addresses
are checked, and the connection goes to the checked address (the Host header and TLS name stay the
URL's), so a DNS answer that changes between check and connect cannot redirect the request. For the
same reason the fetch connects directly: proxy variables (HTTP_PROXY, ...) are not used.
HTML comes back as readable text; other binary content is saved as an artifact.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

from raygent.schema import ToolExample
from raygent.toolhub.artifacts import ArtifactStore, default_store
from raygent.toolhub.base import Tool, ToolOutput

ALLOW_ENV = "RAYGENT_WEB_ALLOW"
_MAX_REDIRECTS = 5
MAX_URL_CHARS = 8192  # longer is no page address but a payload; servers refuse such URLs (414) anyway
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class WebAccessDenied(PermissionError):
    """The URL's host is not on the allow-list (or web access is off), or it resolves to an address
    that only an exact allow-list entry may reach."""


def allow_list_from_env() -> list[str]:
    return [h.strip().lower() for h in os.environ.get(ALLOW_ENV, "").split(",") if h.strip()]


def _split_entry(entry: str) -> tuple[str, str]:
    """An allow-list entry -> (host, port or ""); IPv6 entries are bracketed: "[::1]:8000"."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else ""
    name, _, port = entry.partition(":")
    return name, port


def _host_port(url: str) -> tuple[str, int]:
    """The URL's host (lower case, no trailing dot) and port (the scheme's default when absent)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # "http://host:99999/": urllib raises on the attribute access
        raise WebAccessDenied(f"{url} has an invalid port: {exc}") from None
    return (parts.hostname or "").lower().rstrip("."), port


def allow_entry(url: str, allow: Sequence[str]) -> str | None:
    """The allow-list entry that lets `url`'s host through, or None: `host`, `host:port`,
    `*.domain` and `*` (every host) entries. An entry naming the host exactly wins over a wildcard,
    wherever it stands in the list, since only an exact entry may reach a non-public address."""
    host, port = _host_port(url)
    wildcard = None
    for entry in allow:
        entry = entry.lower()
        name, entry_port = _split_entry(entry)
        if entry_port and str(port) != entry_port:
            continue
        if entry == "*" or (name.startswith("*.") and (host.endswith(name[1:]) or host == name[2:])):
            wildcard = wildcard or entry
        elif host == name:
            return entry
    return wildcard


def host_allowed(url: str, allow: Sequence[str]) -> bool:
    """Whether the allow-list lets `url`'s host through (before its addresses are checked)."""
    return allow_entry(url, allow) is not None


def non_public_kind(address: str) -> str | None:
    """What kind of non-public address `address` is ("loopback", "private", "link-local", ...), or
    None for a public internet address. IPv4 inside IPv6 (::ffff:127.0.0.1, 6to4, NAT64) counts as
    the IPv4 address it carries."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            ip = embedded
    for kind, flag in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                       ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                       ("private", ip.is_private), ("reserved", ip.is_reserved)):
        if flag:
            return kind
    return None if ip.is_global else "non-public"


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order (an IP literal, in any of the
    forms the C library accepts, resolves to itself). Tests replace this to simulate DNS."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class _Target:
    """Where one hop of a fetch connects: the checked addresses, and the name the server sees."""

    urls: tuple[Any, ...]  # httpx.URLs, the host replaced by each checked address in the resolver's order
    host_header: str
    sni_hostname: str | None  # https: the name TLS verifies the certificate against


def _refuse_non_public(url: str, addresses: Sequence[str], entry: str) -> None:
    """A wildcard entry reaches public addresses only: refuse the host if any address is not one
    (a name that resolves to both could otherwise be steered to the internal one)."""
    for address in addresses:
        kind = non_public_kind(address)
        if kind is not None:
            article = "an" if kind[0] in "aeiou" else "a"
            raise WebAccessDenied(f"{url} resolves to {address}, {article} {kind} address: the wildcard "
                                  f"allow-list entry {entry!r} covers public addresses only (name this host "
                                  f"exactly in the allow-list to reach it)")


def _parse(url: str, host: str) -> tuple[str, Any]:
    """(the host as DNS and the Host header want it, IDNA-encoded; the URL as httpx reads it)."""
    import httpx

    try:
        return host.encode("idna").decode("ascii"), httpx.URL(url)
    except (UnicodeError, httpx.InvalidURL) as exc:
        raise WebAccessDenied(f"{url} is not a valid URL: {exc}") from None


async def _send(client: Any, target: _Target) -> Any:
    """GET the target's first address that accepts a connection; the response is streamed (the
    caller reads and closes it)."""
    import httpx

    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
    for n, url in enumerate(target.urls, 1):
        request = client.build_request("GET", url, headers={"Host": target.host_header}, extensions=extensions)
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError:
            if n == len(target.urls):
                raise
    raise AssertionError("a target has at least one address")


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
            "url": {"type": "string", "maxLength": MAX_URL_CHARS, "description": "http(s) URL"},
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

    def _check(self, url: str) -> str:
        """The allow-list entry that admits `url` (scheme and host checked; addresses not yet)."""
        allow = self._allowed()
        if not allow:
            raise WebAccessDenied(f"web access is off: allow hosts with {ALLOW_ENV}=host1,host2 (or "
                                  f"WebFetchTool(allow=[...])) to fetch {url}")
        if len(url) > MAX_URL_CHARS:
            raise WebAccessDenied(f"URL of {len(url)} characters refused: at most {MAX_URL_CHARS}")
        if urlsplit(url).scheme not in ("http", "https"):
            raise WebAccessDenied(f"only http and https URLs can be fetched, not {url}")
        entry = allow_entry(url, allow)
        if entry is None:
            raise WebAccessDenied(f"host of {url} is not on the web allow-list ({', '.join(allow)})")
        return entry

    async def _admit(self, url: str) -> _Target:
        """Check `url` against the allow-list, then its host's addresses against the entry that
        admitted it; the target pins the connection to the addresses that passed."""
        entry = self._check(url)
        host, port = _host_port(url)
        if not host:
            raise WebAccessDenied(f"{url} has no host")
        ascii_host, request_url = _parse(url, host)
        try:
            addresses = await resolve_host(ascii_host, port)
        except OSError as exc:
            raise ConnectionError(f"cannot resolve the host of {url}: {exc}") from None
        if not addresses:
            raise ConnectionError(f"cannot resolve the host of {url}: no address")
        if entry == "*" or entry.startswith("*."):
            _refuse_non_public(url, addresses, entry)
        has_port = urlsplit(url).port is not None
        return _Target(urls=tuple(request_url.copy_with(host=a.split("%", 1)[0], port=port) for a in addresses),
                       host_header=(f"[{ascii_host}]" if ":" in ascii_host else ascii_host)
                       + (f":{port}" if has_port else ""),
                       sni_hostname=ascii_host if request_url.scheme == "https" else None)

    async def call(self, url: str, max_chars: int = 20000) -> Any:
        import httpx

        target = await self._admit(url)
        # trust_env=False: a proxy would resolve the name itself, past the address check (the CA
        # settings of the environment, SSL_CERT_FILE / SSL_CERT_DIR, still apply)
        async with httpx.AsyncClient(follow_redirects=False, timeout=self.timeout_s, trust_env=False,
                                     verify=httpx.create_ssl_context(trust_env=True),
                                     headers={"User-Agent": self.user_agent}) as client:
            for _ in range(_MAX_REDIRECTS + 1):
                response = await _send(client, target)
                try:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        target = await self._admit(url)  # every hop: allow-list and addresses again
                        continue
                    body, truncated = await self._read_body(response)
                    return self._result(url, response, body, truncated, max_chars)
                finally:
                    await response.aclose()
        raise RuntimeError(f"more than {_MAX_REDIRECTS} redirects fetching {url}")

    async def _read_body(self, response: Any) -> tuple[bytes, bool]:
        """At most `max_bytes` of the (decoded) body, and whether there was more."""
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body.extend(chunk)
            if len(body) > self.max_bytes:
                del body[self.max_bytes:]
                return bytes(body), True
        return bytes(body), False

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
