"""Pictures: image backends behind one interface, and the portrait pieces.

- `get_image_backend("offline" | "dashscope" | "modelscope" | "diffusers" | config)` -> an
  ImageBackend with `await backend.generate(ImageRequest(prompt=..., style=..., seed=...))` -> Artifact.
  "offline" (the default) draws the described scene with Pillow and paints it with a style network.
- `inspect_photo(path)` -> PhotoInspection (faces, size, sharpness; ok or a reason).
- `apply_style(image, style, strength)`, `available_styles()`; `raygent.imaging.stylize.stylize(path,
  style, strength, out)` (the function shares its module's name, so it is imported from the module).
- `paint_portrait(photo, StyleParams | words)` -> Artifact; `style_params_from_text(text)`.
- `raygent.imaging.contact_sheet.contact_sheet(images, labels, out)` -> Artifact.

Names are imported lazily, so `import raygent.imaging` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ImageRequest": "base", "ImageBackend": "base", "ImageBackendError": "base", "ImageBackendUnavailable": "base",
    "get_image_backend": "base", "BACKEND_ENV": "base",
    "OfflineSceneBackend": "offline",
    "Scene": "scene", "SceneCharacter": "scene", "parse_scene": "scene",
    "paint_scene": "painter",
    "WanxBackend": "dashscope_wanx", "WanxConfig": "dashscope_wanx",
    "ModelScopeImageBackend": "modelscope_pipeline", "ModelScopeImageConfig": "modelscope_pipeline",
    "DiffusersBackend": "diffusers_backend", "DiffusersConfig": "diffusers_backend",
    "inspect_photo": "faces", "PhotoInspection": "faces", "InspectionThresholds": "faces", "FaceBox": "faces",
    "apply_style": "stylize", "available_styles": "stylize", "resolve_style": "stylize",
    "StyleParams": "stylize", "style_params_from_text": "stylize", "paint_portrait": "stylize",
    "STYLE_DESCRIPTIONS": "stylize",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'raygent.imaging' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"raygent.imaging.{module}"), name)
    globals()[name] = value
    return value
