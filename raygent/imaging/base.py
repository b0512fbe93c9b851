"""Image generation behind one interface.

An `ImageBackend` turns an `ImageRequest` (prompt, size, style, strength, seed, optional init
image for img2img) into a PNG written to an ArtifactStore and returned as an `Artifact` whose
metadata names the backend, prompt, seed and style. `get_image_backend(name_or_config)` builds
one: "offline" (the default: a procedural scene painter finished with a style-transfer model,
no weights to download), "dashscope" (wanx through the official SDK), "modelscope" (a local
ModelScope text-to-image pipeline) and "diffusers" (Stable Diffusion on a GPU). Backends whose
packages, keys or models are missing raise `ImageBackendUnavailable` saying what to install or
configure.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from raygent.schema import Artifact
from raygent.toolhub.artifacts import ArtifactStore, default_store
from raygent.toolhub.errors import ToolError, ToolUnavailableError

#: environment variable naming the backend the `image_generate` tool uses when none is configured
BACKEND_ENV = "RAYGENT_IMAGE_BACKEND"
BACKEND_NAMES = ("offline", "dashscope", "modelscope", "diffusers")


class ImageBackendError(ToolError):
    """An image could not be made: a bad request, a failed remote task, an unreadable input.
    The message says what happened and what to do (a tool hub hands it to the model as is)."""


class ImageBackendUnavailable(ImageBackendError, ToolUnavailableError):
    """The backend cannot run here: a package, a model directory, a GPU or a key is missing (the
    message says which, and how to provide it)."""


class ImageRequest(BaseModel):
    """One picture to make.

    `style` is backend specific (an offline style name such as "watercolor", a wanx style such as
    "<watercolor>", a prompt suffix for the diffusion backends); None takes the backend's default.
    `strength` (0..1) is how strongly the style is applied by the offline backend, and how far an
    img2img backend may move away from `init_image` (its denoising strength).
    """

    prompt: str = Field(min_length=1)
    negative_prompt: str | None = None
    width: int = Field(512, ge=64, le=2048)
    height: int = Field(512, ge=64, le=2048)
    style: str | None = None
    strength: float = Field(0.6, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    init_image: str | None = None  # a local path / artifact URI for img2img

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty: describe the picture")
        return value


class ImageBackend:
    """Base class: `generate(request) -> Artifact` (a PNG in the store).

    Subclasses implement `_generate_sync` (run in a worker thread) or override `generate`.
    """

    name: ClassVar[str] = ""

    def __init__(self, artifact_store: ArtifactStore | None = None):
        self.artifact_store = artifact_store

    @property
    def store(self) -> ArtifactStore:
        return self.artifact_store or default_store()

    async def generate(self, request: ImageRequest | dict[str, Any]) -> Artifact:
        request = request if isinstance(request, ImageRequest) else ImageRequest(**request)
        return await asyncio.to_thread(self._generate_sync, request)

    def _generate_sync(self, request: ImageRequest) -> Artifact:
        raise NotImplementedError(f"image backend {self.name!r} does not implement generation")

    def styles(self) -> list[str]:
        """Style names this backend understands (empty when styles are free text)."""
        return []

    def save_png(self, image: Any, request: ImageRequest, **metadata: Any) -> Artifact:
        """Write a PIL image as PNG to the store with the standard metadata."""
        path = self.store.new_path(".png")
        im = image if image.mode in ("RGB", "RGBA", "L") else image.convert("RGB")
        im.save(path, format="PNG")
        meta = {"backend": self.name, "prompt": request.prompt, "seed": request.seed, "style": request.style,
                "strength": request.strength}
        meta.update(metadata)
        return self.store.register(path, mime_type="image/png", kind="image", metadata=meta)


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_modules(what: str, modules: dict[str, str]) -> None:
    """Raise ImageBackendUnavailable naming the pip install for each missing module."""
    missing = [fix for module, fix in modules.items() if not has_module(module)]
    if missing:
        raise ImageBackendUnavailable(f"the {what} needs {', '.join(missing)}")


def get_image_backend(name_or_config: Any = None, *, artifact_store: ArtifactStore | None = None,
                      **options: Any) -> ImageBackend:
    """An image backend from a name ("offline", "dashscope", "modelscope", "diffusers"), a dict
    (`{"backend": "dashscope", "model": "wanx-v1", ...}`), a backend config object, or a backend
    (returned as is). None reads $RAYGENT_IMAGE_BACKEND, default "offline"."""
    if isinstance(name_or_config, ImageBackend):
        return name_or_config
    from raygent.imaging.dashscope_wanx import WanxBackend, WanxConfig
    from raygent.imaging.diffusers_backend import DiffusersBackend, DiffusersConfig
    from raygent.imaging.modelscope_pipeline import ModelScopeImageBackend, ModelScopeImageConfig
    from raygent.imaging.offline import OfflineSceneBackend

    by_config = {WanxConfig: WanxBackend, DiffusersConfig: DiffusersBackend,
                 ModelScopeImageConfig: ModelScopeImageBackend}
    for config_type, backend_type in by_config.items():
        if isinstance(name_or_config, config_type):
            return backend_type(name_or_config, artifact_store=artifact_store)  # type: ignore[call-arg]
    if name_or_config is None:
        name_or_config = os.environ.get(BACKEND_ENV) or "offline"
    if isinstance(name_or_config, dict):
        options = {**name_or_config, **options}
        name = str(options.pop("backend", options.pop("name", "offline")))
    elif isinstance(name_or_config, str):
        name = name_or_config
    else:
        raise ImageBackendError(f"cannot make an image backend from {type(name_or_config).__name__}: give a name "
                                f"({', '.join(BACKEND_NAMES)}), a dict with 'backend', or a backend config")
    name = name.strip().lower()
    if name in ("offline", "scene", "default"):
        return OfflineSceneBackend(artifact_store=artifact_store, **options)
    if name in ("dashscope", "wanx"):
        return WanxBackend(WanxConfig(**options), artifact_store=artifact_store)
    if name == "modelscope":
        return ModelScopeImageBackend(ModelScopeImageConfig(**options), artifact_store=artifact_store)
    if name == "diffusers":
        return DiffusersBackend(DiffusersConfig(**options), artifact_store=artifact_store)
    raise ImageBackendError(f"unknown image backend {name!r}; choose one of {', '.join(BACKEND_NAMES)} "
                            f"(set {BACKEND_ENV} or pass the name)")
