"""Stable Diffusion (text-to-image and img2img) with Hugging Face diffusers, meant for a GPU.

`DiffusersConfig` says which model (a local directory, or a hub id with `local_files_only=False`
where the machine may download), on which device, in which dtype, and how many GPUs the backend
needs, so that a tool hub can be placed with Ray resources:
`deploy_hub("image", [ImageGenerateTool(backend=cfg)], remote=True, **cfg.ray_options())`.
The pipeline loads on the first picture (AutoPipelineForText2Image; img2img reuses its weights via
AutoPipelineForImage2Image.from_pipe). Missing diffusers / torch / CUDA / model raise
ImageBackendUnavailable saying what to install or configure.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from raygent.imaging.base import ImageBackend, ImageBackendError, ImageBackendUnavailable, ImageRequest, has_module
from raygent.schema import Artifact
from raygent.toolhub.artifacts import ArtifactStore


class DiffusersConfig(BaseModel):
    model_path: str | None = Field(None, description="a local diffusers model directory (model_index.json), or a "
                                                     "hub id when local_files_only=False")
    device: str = Field("cuda", description="'cuda', 'cuda:1', 'cpu' (slow), 'mps'")
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    num_gpus: float = Field(1.0, ge=0.0, description="GPUs the backend's actor needs (Ray resource)")
    num_cpus: float = Field(1.0, ge=0.0)
    num_inference_steps: int = Field(30, ge=1, le=500)
    guidance_scale: float = Field(7.5, ge=0.0, le=50.0)
    variant: str | None = None  # e.g. "fp16" weights
    local_files_only: bool = True
    enable_attention_slicing: bool = False
    style_suffix: bool = True  # append ", <style> style" to the prompt when the request names a style

    def ray_options(self) -> dict[str, Any]:
        """Ray resources for the actor that hosts this backend (e.g. a tool hub)."""
        options: dict[str, Any] = {"num_gpus": self.num_gpus}
        if self.num_cpus:
            options["num_cpus"] = self.num_cpus
        return options

    def check(self) -> None:
        """Raise ImageBackendUnavailable naming what is missing (packages, CUDA, the model)."""
        missing = [pkg for module, pkg in (("diffusers", "diffusers"), ("torch", "torch"),
                                           ("transformers", "transformers")) if not has_module(module)]
        if missing:
            raise ImageBackendUnavailable(f"the diffusers image backend needs {', '.join(missing)}: pip install "
                                          f"{' '.join(missing)} (with a CUDA build of torch for a GPU)")
        if not self.model_path:
            raise ImageBackendUnavailable(
                "the diffusers image backend needs model_path: a local Stable Diffusion directory (with "
                "model_index.json), e.g. one saved with "
                "`huggingface-cli download stabilityai/sd-turbo --local-dir ./models/sd-turbo`")
        if self.local_files_only:
            path = Path(self.model_path).expanduser()
            if not path.is_dir():
                raise ImageBackendUnavailable(f"the diffusers model directory {path} does not exist (set "
                                              f"local_files_only=False to let diffusers download a hub id)")
            if not (path / "model_index.json").is_file():
                raise ImageBackendUnavailable(f"{path} is not a diffusers pipeline directory (no model_index.json)")
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ImageBackendUnavailable(f"the diffusers image backend is set to run on {self.device!r} but "
                                              f"CUDA is not available here (torch {torch.__version__}); run it on a "
                                              f"GPU node (ray_options() asks Ray for {self.num_gpus:g} GPU) or set "
                                              f"device='cpu'")


class DiffusersBackend(ImageBackend):
    name = "diffusers"

    def __init__(self, config: DiffusersConfig | None = None, *, artifact_store: ArtifactStore | None = None):
        super().__init__(artifact_store)
        self.config = config or DiffusersConfig()
        self.config.check()
        self._text2image: Any = None
        self._image2image: Any = None
        self._lock = threading.Lock()

    def ray_options(self) -> dict[str, Any]:
        return self.config.ray_options()

    def _load(self, img2img: bool) -> Any:
        import torch
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

        cfg = self.config
        if self._text2image is None:
            try:
                pipe = AutoPipelineForText2Image.from_pretrained(
                    cfg.model_path, torch_dtype=getattr(torch, cfg.dtype), variant=cfg.variant,
                    local_files_only=cfg.local_files_only)
            except Exception as exc:
                raise ImageBackendError(f"cannot load the diffusers pipeline {cfg.model_path}: "
                                        f"{type(exc).__name__}: {exc}") from exc
            pipe = pipe.to(cfg.device)
            if cfg.enable_attention_slicing:
                pipe.enable_attention_slicing()
            pipe.set_progress_bar_config(disable=True)
            self._text2image = pipe
        if img2img and self._image2image is None:
            self._image2image = AutoPipelineForImage2Image.from_pipe(self._text2image)
            self._image2image.set_progress_bar_config(disable=True)
        return self._image2image if img2img else self._text2image

    def _generate_sync(self, request: ImageRequest) -> Artifact:
        import torch

        cfg = self.config
        prompt = request.prompt
        if request.style and cfg.style_suffix:
            prompt = f"{prompt}, {request.style.replace('_', ' ')} style"
        with self._lock:
            pipe = self._load(img2img=bool(request.init_image))
            generator = torch.Generator(device="cpu" if cfg.device == "mps" else cfg.device).manual_seed(request.seed)
            kwargs: dict[str, Any] = {"prompt": prompt, "negative_prompt": request.negative_prompt,
                                      "num_inference_steps": cfg.num_inference_steps,
                                      "guidance_scale": cfg.guidance_scale, "generator": generator}
            if request.init_image:
                from raygent.imaging.stylize import load_image

                init = load_image(request.init_image, self.artifact_store).resize((request.width, request.height))
                kwargs.update(image=init, strength=max(0.05, request.strength))
            else:
                kwargs.update(width=request.width, height=request.height)
            try:
                result = pipe(**kwargs)
            except Exception as exc:
                raise ImageBackendError(f"diffusers generation failed: {type(exc).__name__}: {exc}") from exc
        return self.save_png(result.images[0], request, model=cfg.model_path, device=cfg.device, dtype=cfg.dtype,
                             steps=cfg.num_inference_steps, mode="img2img" if request.init_image else "txt2img")
