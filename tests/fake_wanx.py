"""The local DashScope stand-in (fake_dashscope.FakeDashScope: wanx's asynchronous task protocol,
the OSS upload flow, result files served from the same 127.0.0.1 server) with every wanx
submission recorded, so tests can check what the official SDK really sent (style, seed, size,
negative prompt, the uploaded reference image)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fake_dashscope import FakeDashScope


@dataclass
class FakeWanx(FakeDashScope):
    submissions: list[dict[str, Any]] = field(default_factory=list)

    async def image_synthesis(self, request: Request) -> Response:
        body = await request.json()  # Starlette caches the parsed body for the parent's handler
        self.submissions.append({"body": body, "headers": dict(request.headers)})
        return await super().image_synthesis(request)
