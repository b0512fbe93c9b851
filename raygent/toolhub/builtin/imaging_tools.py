"""Picture tools: generate an image from a description, inspect a photo for a portrait, paint a
portrait. Outputs are PNG artifacts (references); inputs are artifact URIs or local paths inside
the folders tools may read (the store, RAYGENT_TOOL_FILES: see ArtifactStore.open_input).

- `image_generate`: through the configured image backend (`ImageGenerateTool(backend=...)`, else
  $RAYGENT_IMAGE_BACKEND, else "offline": the scene painter of raygent.imaging.offline).
- `face_inspect`: faces, size and sharpness of a photo; a photo that cannot make a portrait comes
  back with ok=false and a `refusal` sentence saying why and what to send instead.
- `portrait_paint`: crop the face, paint it in a style (from the user's words and/or explicit
  StyleParams fields); a refused photo is an error naming the reason.
"""

from __future__ import annotations

import asyncio
from typing import Any

from raygent.schema import ToolExample
from raygent.toolhub.artifacts import ArtifactStore
from raygent.toolhub.base import Tool, ToolOutput

_IMAGE_ARG = {"type": "string", "description": "a photo: artifact URI or local file path"}
_STYLE_HINT = ("watercolor, oil_painting, pencil_sketch, cartoon, ink, pastel, impressionist, starry_night, "
               "pop_art, mosaic, stained_glass, charcoal, sepia, stylization, none, ...")


class ImageGenerateTool(Tool):
    name = "image_generate"
    description = ("Draw a picture from a description of a scene (setting, time of day, weather, characters, "
                   "objects), painted in a style. 根据文字描述画一幅图。")
    parameters = {
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "description": "what the picture shows, e.g. 'a little fox "
                       "and an owl in a moonlit forest by a river' (English or Chinese)"},
            "style": {"type": "string", "description": f"painting style: {_STYLE_HINT}"},
            "seed": {"type": "integer", "minimum": 0, "default": 0,
                     "description": "same seed, same picture; change it for a variation"},
            "width": {"type": "integer", "minimum": 64, "maximum": 2048, "default": 512},
            "height": {"type": "integer", "minimum": 64, "maximum": 2048, "default": 512},
            "strength": {"type": "number", "minimum": 0, "maximum": 1,
                         "description": "how strongly the style is applied (0..1)"},
            "negative_prompt": {"type": "string", "description": "what the picture should not show"},
        },
        "required": ["prompt"],
    }
    domain = "vision"
    timeout_s = 180.0
    idempotent = True
    examples = [ToolExample(query="画一只在月光下森林里的小狐狸", arguments={"prompt": "小狐狸在月光下的森林里"}),
                ToolExample(query="Draw a robot in a city at night, oil painting",
                            arguments={"prompt": "a robot in a city at night", "style": "oil_painting"})]

    def __init__(self, backend: Any = None, store: ArtifactStore | None = None):
        self.backend_spec = backend  # a name, a dict, a backend config or a backend; None: $RAYGENT_IMAGE_BACKEND
        self.store = store
        self._backend: Any = None

    def backend(self) -> Any:
        if self._backend is None:
            from raygent.imaging.base import get_image_backend

            self._backend = get_image_backend(self.backend_spec, artifact_store=self.store)
        return self._backend

    def __getstate__(self) -> dict[str, Any]:  # a loaded backend (pipelines, sessions) stays in its process
        return {**self.__dict__, "_backend": None}

    async def call(self, prompt: str, style: str | None = None, seed: int = 0, width: int = 512, height: int = 512,
                   strength: float | None = None, negative_prompt: str | None = None) -> ToolOutput:
        from raygent.imaging.base import ImageRequest

        backend = await asyncio.to_thread(self.backend)
        fields: dict[str, Any] = {"prompt": prompt, "style": style, "seed": seed, "width": width, "height": height,
                                  "negative_prompt": negative_prompt}
        if strength is not None:
            fields["strength"] = strength
        artifact = await backend.generate(ImageRequest(**fields))
        output: dict[str, Any] = {"image": artifact.uri, "width": artifact.metadata.get("width"),
                                  "height": artifact.metadata.get("height"), "backend": backend.name,
                                  "style": artifact.metadata.get("style"), "seed": seed}
        if "scene_summary" in artifact.metadata:
            output["scene"] = artifact.metadata["scene_summary"]
        return ToolOutput(output, [artifact])


class FaceInspectTool(Tool):
    name = "face_inspect"
    description = ("Check whether a photo can be made into a portrait: finds the faces and measures the size and "
                   "sharpness; says why a photo is refused (no face, too small, too blurry, unreadable). "
                   "检查照片能否用来画肖像。")
    parameters = {
        "type": "object",
        "properties": {
            "image": _IMAGE_ARG,
            "max_faces": {"type": "integer", "minimum": 1, "description": "refuse photos with more faces than this"},
        },
        "required": ["image"],
    }
    domain = "vision"
    timeout_s = 30.0
    idempotent = True

    def __init__(self, store: ArtifactStore | None = None, thresholds: Any = None):
        self.store = store
        self.thresholds = thresholds

    async def call(self, image: str, max_faces: int | None = None) -> dict[str, Any]:
        from raygent.imaging.faces import InspectionThresholds, inspect_photo
        from raygent.toolhub.artifacts import default_store

        thresholds = self.thresholds if isinstance(self.thresholds, InspectionThresholds) else \
            InspectionThresholds(**(self.thresholds or {}))
        if max_faces is not None:
            thresholds = thresholds.model_copy(update={"max_faces": max_faces})
        try:
            path = str((self.store or default_store()).open_input(image))
        except FileNotFoundError:  # missing, in a folder tools may read (a path outside raised PathNotAllowed)
            path = image  # inspect_photo reports the missing file as a refusal
        report = await asyncio.to_thread(inspect_photo, path, thresholds)
        out = report.model_dump(exclude={"path"})
        out["image"] = image
        if not report.ok:
            out["refusal"] = report.refusal()
        return out


class PortraitPaintTool(Tool):
    name = "portrait_paint"
    description = ("Paint a portrait from a photo of a person: the face is cropped into a square and painted in a "
                   "style (watercolor, sketch, oil painting, cartoon, ...). Give the user's words in `style_words` "
                   "and/or exact settings. 把人像照片画成水彩、素描、油画、卡通等风格的肖像。")
    parameters = {
        "type": "object",
        "properties": {
            "photo": _IMAGE_ARG,
            "style_words": {"type": "string", "description": "the user's wish in their words, e.g. 'a light "
                            "watercolor with a blue background' / '浓烈的油画，暖色调'"},
            "style": {"type": "string", "description": f"exact style name: {_STYLE_HINT}"},
            "strength": {"type": "number", "minimum": 0, "maximum": 1, "description": "0 = photo, 1 = full style"},
            "tint": {"type": "string", "description": "background tint: a colour name, warm, cool or #rrggbb"},
            "crop_margin": {"type": "number", "minimum": 0, "maximum": 2,
                            "description": "space around the face as a fraction of its size (0.25 close-up, 0.9 "
                                           "half body)"},
            "size": {"type": "integer", "minimum": 64, "maximum": 2048, "default": 512},
        },
        "required": ["photo"],
    }
    domain = "vision"
    timeout_s = 60.0
    idempotent = True
    examples = [ToolExample(query="把这张照片画成素描 /tmp/me.jpg",
                            arguments={"photo": "/tmp/me.jpg", "style_words": "素描"})]

    def __init__(self, store: ArtifactStore | None = None, thresholds: Any = None):
        self.store = store
        self.thresholds = thresholds

    async def call(self, photo: str, style_words: str | None = None, style: str | None = None,
                   strength: float | None = None, tint: str | None = None, crop_margin: float | None = None,
                   size: int | None = None) -> ToolOutput:
        from raygent.imaging.base import ImageBackendError
        from raygent.imaging.stylize import StyleParams, paint_portrait, style_params_from_text
        from raygent.toolhub.artifacts import default_store

        try:  # the model's path: confined to the folders tools may read
            path = (self.store or default_store()).open_input(photo)
        except FileNotFoundError:
            raise ImageBackendError(f"photo not found: {photo}") from None
        params = style_params_from_text(style_words) if style_words else StyleParams()
        explicit = {k: v for k, v in {"style": style, "strength": strength, "tint": tint, "crop_margin": crop_margin,
                                      "size": size}.items() if v is not None}
        if explicit:
            params = StyleParams(**{**params.model_dump(), **explicit})
        artifact = await asyncio.to_thread(paint_portrait, path, params, store=self.store, thresholds=self.thresholds)
        return ToolOutput({"image": artifact.uri, "width": artifact.metadata.get("width"),
                           "height": artifact.metadata.get("height"), "style_params": params.model_dump()}, [artifact])


IMAGING_TOOLS: dict[str, type[Tool]] = {t.name: t for t in (ImageGenerateTool, FaceInspectTool,  # type: ignore[misc]
                                                            PortraitPaintTool)}

__all__ = ["ImageGenerateTool", "FaceInspectTool", "PortraitPaintTool", "IMAGING_TOOLS"]
