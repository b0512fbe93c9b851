"""DashScope wanx text-to-image through the official `dashscope` SDK.

The asynchronous task flow: `ImageSynthesis.async_call` submits (-> task id), `ImageSynthesis.fetch`
polls until SUCCEEDED / FAILED (with `asyncio.sleep` between polls, in worker threads since the SDK
blocks), then the result URL is downloaded with httpx and stored as PNG. An `init_image` is passed as
wanx's reference image (`ref_img`; the SDK uploads a local file through DashScope's OSS flow first).
Key and endpoint: the config, else $DASHSCOPE_API_KEY / $DASHSCOPE_HTTP_BASE_URL, else `.env`.
"""

from __future__ import annotations

import asyncio
import io
import time
from http import HTTPStatus
from typing import Any

from raygent.imaging.base import ImageBackend, ImageBackendError, ImageBackendUnavailable, ImageRequest
from raygent.schema import Artifact
from raygent.toolhub.artifacts import ArtifactStore
from raygent.toolhub.dashscope_tools import DashScopeConfig
from raygent.toolhub.errors import ToolUnavailableError

#: sizes wanx-v1 accepts (width*height)
WANX_SIZES = ("1024*1024", "720*1280", "1280*720", "768*1152")
#: raygent style names -> wanx's style tags
WANX_STYLES = {
    "watercolor": "<watercolor>", "oil_painting": "<oil painting>", "pencil_sketch": "<sketch>",
    "sketch": "<sketch>", "cartoon": "<3d cartoon>", "anime": "<anime>", "ink": "<chinese painting>",
    "chinese_painting": "<chinese painting>", "flat": "<flat illustration>", "stylization": "<flat illustration>",
    "photo": "<photography>", "photography": "<photography>", "portrait": "<portrait>", "auto": "<auto>",
}


class WanxConfig(DashScopeConfig):
    """Key and endpoints (DashScopeConfig's), plus the model and how to poll."""

    model: str = "wanx-v1"
    size: str | None = None  # width*height; None: the supported size closest to the request's shape
    poll_interval_s: float = 1.0
    timeout_s: float = 300.0
    download_timeout_s: float = 60.0


def wanx_size(width: int, height: int) -> str:
    """The wanx size whose shape is closest to width x height."""
    ratio = width / height
    return min(WANX_SIZES, key=lambda s: abs(int(s.split("*")[0]) / int(s.split("*")[1]) - ratio))


def wanx_style(style: str | None) -> str | None:
    if style is None:
        return None
    if style.startswith("<") and style.endswith(">"):
        return style
    return WANX_STYLES.get(style.strip().lower().replace(" ", "_"))


class WanxBackend(ImageBackend):
    """Text-to-image (and reference-image guided) generation with DashScope wanx."""

    name = "dashscope"

    def __init__(self, config: WanxConfig | None = None, *, artifact_store: ArtifactStore | None = None):
        super().__init__(artifact_store)
        self.config = config or WanxConfig()

    def styles(self) -> list[str]:
        return sorted(WANX_STYLES)

    async def _sdk(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            response = await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as exc:  # the SDK raises requests' errors for transport failures
            raise ImageBackendError(f"DashScope {what} failed: {type(exc).__name__}: {exc}") from exc
        status = getattr(response, "status_code", None)
        if status != HTTPStatus.OK:
            code = getattr(response, "code", "") or ""
            message = getattr(response, "message", "") or ""
            hint = " (check DASHSCOPE_API_KEY)" if status in (401, 403) or code == "InvalidApiKey" else ""
            raise ImageBackendError(f"DashScope {what} failed: status {status} {code}: {message}{hint} "
                                    f"(request id {getattr(response, 'request_id', '') or '-'})")
        return response

    async def generate(self, request: ImageRequest | dict[str, Any]) -> Artifact:
        request = request if isinstance(request, ImageRequest) else ImageRequest(**request)
        cfg = self.config
        try:
            ds = cfg.sdk()
            key = cfg.key()
        except ToolUnavailableError as exc:
            raise ImageBackendUnavailable(str(exc)) from exc
        size = cfg.size or wanx_size(request.width, request.height)
        extra: dict[str, Any] = {"seed": request.seed}
        style = wanx_style(request.style)
        if style:
            extra["style"] = style
        if request.negative_prompt:
            extra["negative_prompt"] = request.negative_prompt
        if request.init_image:
            if request.init_image.startswith(("http://", "https://")):
                extra["ref_img"] = request.init_image
            else:  # a local file: the SDK uploads it (DashScope's OSS flow) and sends an oss:// reference
                extra["ref_img"] = f"file://{self.store.open_path(request.init_image).resolve()}"
            extra["ref_strength"] = request.strength
            extra["ref_mode"] = "repaint"
        started = time.monotonic()
        submitted = await self._sdk(f"{cfg.model} task submission", ds.ImageSynthesis.async_call, model=cfg.model,
                                    prompt=request.prompt, n=1, size=size, api_key=key, **extra)
        task_id = submitted.output.task_id
        while True:
            status = await self._sdk(f"{cfg.model} task {task_id} status", ds.ImageSynthesis.fetch, task_id,
                                     api_key=key)
            state = status.output.task_status
            if state == "SUCCEEDED":
                break
            if state in ("FAILED", "CANCELED", "UNKNOWN"):
                out = status.output
                why = f"{getattr(out, 'code', '') or ''} {getattr(out, 'message', '') or ''}".rstrip()
                raise ImageBackendError(f"DashScope {cfg.model} task {task_id} {state}: {why}")
            if time.monotonic() - started > cfg.timeout_s:
                raise ImageBackendError(f"DashScope {cfg.model} task {task_id} did not finish in {cfg.timeout_s:g} s "
                                        f"(last state {state})")
            await asyncio.sleep(cfg.poll_interval_s)
        urls = [r.url for r in (status.output.results or []) if getattr(r, "url", None)]
        if not urls:
            raise ImageBackendError(f"DashScope {cfg.model} task {task_id} succeeded without an image: {status.output}")
        picture = await self._download(urls[0], task_id)
        return await asyncio.to_thread(self.save_png, picture, request, model=cfg.model, task_id=task_id,
                                       source_url=urls[0], size=size, wanx_style=style)

    async def _download(self, url: str, task_id: str) -> Any:
        import httpx
        from PIL import Image, UnidentifiedImageError

        async with httpx.AsyncClient(timeout=self.config.download_timeout_s, follow_redirects=True) as client:
            try:
                response = await client.get(url)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise ImageBackendError(f"cannot download the image of task {task_id} from {url}: {exc}") from exc
        try:
            with Image.open(io.BytesIO(response.content)) as im:
                return im.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise ImageBackendError(f"the result of task {task_id} ({url}) is not an image") from exc
