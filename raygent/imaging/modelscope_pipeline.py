"""A ModelScope text-to-image pipeline on a model directory the user downloaded.

`ModelScopeImageConfig(model_dir=...)`: the directory must hold ModelScope's configuration.json
(e.g. `modelscope download --model AI-ModelScope/stable-diffusion-xl-base-1.0 --local_dir DIR`);
nothing is downloaded at run time. The pipeline (`modelscope.pipeline("text-to-image-synthesis",
model=DIR, device=...)`) loads on the first picture, in a worker thread, once; calls run one at a
time. Its output (`output_imgs`: BGR arrays as ModelScope's vision pipelines return them, or PIL
images) becomes a PNG artifact.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from raygent.imaging.base import ImageBackend, ImageBackendError, ImageBackendUnavailable, ImageRequest, has_module
from raygent.schema import Artifact
from raygent.toolhub.artifacts import ArtifactStore

TASK = "text-to-image-synthesis"
HOW_TO_GET = ("download one first, e.g. `modelscope download --model AI-ModelScope/stable-diffusion-xl-base-1.0 "
              "--local_dir ./models/sdxl`, and pass ModelScopeImageConfig(model_dir='./models/sdxl')")


class ModelScopeImageConfig(BaseModel):
    model_dir: str | None = Field(None, description="local ModelScope model directory (with configuration.json)")
    device: str = Field("gpu", description="'cpu', 'gpu' or 'gpu:0' (handed to modelscope.pipeline)")
    task: str = TASK
    num_inference_steps: int | None = Field(None, ge=1, le=500)
    guidance_scale: float | None = Field(None, ge=0.0, le=50.0)
    pipeline_params: dict[str, Any] = {}  # extra keyword arguments for modelscope.pipeline(...)

    def check(self) -> Path:
        """The model directory, or ImageBackendUnavailable saying what is missing and how to get it."""
        if not has_module("modelscope"):
            raise ImageBackendUnavailable("the modelscope image backend needs ModelScope: pip install "
                                          "'raygent[modelscope]' (modelscope[framework] and torch)")
        if not self.model_dir:
            raise ImageBackendUnavailable(f"the modelscope image backend needs a local model directory: {HOW_TO_GET}")
        path = Path(self.model_dir).expanduser()
        if not path.is_dir():
            raise ImageBackendUnavailable(f"the ModelScope model directory {path} does not exist: {HOW_TO_GET}")
        config = path / "configuration.json"
        if not config.is_file():
            raise ImageBackendUnavailable(f"{path} is not a ModelScope model directory (no configuration.json): "
                                          f"{HOW_TO_GET}")
        try:
            task = json.loads(config.read_text(encoding="utf-8")).get("task")
        except (OSError, ValueError) as exc:
            raise ImageBackendUnavailable(f"{config} is not readable JSON: {exc}") from exc
        if task and task.replace("_", "-") not in (self.task, "text-to-image", "text-to-image-synthesis"):
            raise ImageBackendUnavailable(f"the model in {path} is for the task {task!r}, not text-to-image: "
                                          f"{HOW_TO_GET}")
        return path


def picture_from_output(output: Any) -> Any:
    """A PIL image from a ModelScope text-to-image output (`output_imgs` / `output_img`, BGR array,
    PIL image or encoded bytes)."""
    import io

    import numpy as np
    from PIL import Image

    item = output
    if isinstance(output, dict):
        for key in ("output_imgs", "output_img", "images", "image"):
            if key in output:
                item = output[key]
                break
        else:
            raise ImageBackendError(f"the ModelScope pipeline returned no image (keys: {sorted(output)})")
    if isinstance(item, (list, tuple)):
        if not item:
            raise ImageBackendError("the ModelScope pipeline returned an empty image list")
        item = item[0]
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, (bytes, bytearray)):
        return Image.open(io.BytesIO(item)).convert("RGB")
    if isinstance(item, np.ndarray):
        arr = item
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 3:
            arr = arr[..., ::-1]  # ModelScope's vision outputs are BGR (OpenCV order)
        return Image.fromarray(np.ascontiguousarray(arr))
    raise ImageBackendError(f"cannot read a picture from the ModelScope output {type(item).__name__}")


class ModelScopeImageBackend(ImageBackend):
    name = "modelscope"

    def __init__(self, config: ModelScopeImageConfig | None = None, *, artifact_store: ArtifactStore | None = None):
        super().__init__(artifact_store)
        self.config = config or ModelScopeImageConfig()
        self.model_dir = self.config.check()
        self._pipeline: Any = None
        self._lock = threading.Lock()

    def pipeline(self) -> Any:
        with self._lock:
            if self._pipeline is None:
                from modelscope.pipelines import pipeline

                try:
                    self._pipeline = pipeline(self.config.task, model=str(self.model_dir), device=self.config.device,
                                              **self.config.pipeline_params)
                except Exception as exc:
                    raise ImageBackendError(f"cannot load the ModelScope pipeline from {self.model_dir}: "
                                            f"{type(exc).__name__}: {exc}") from exc
            return self._pipeline

    def _generate_sync(self, request: ImageRequest) -> Artifact:
        pipe = self.pipeline()
        inputs: dict[str, Any] = {"text": request.prompt}
        if request.negative_prompt:
            inputs["negative_prompt"] = request.negative_prompt
        kwargs: dict[str, Any] = {"height": request.height, "width": request.width, "seed": request.seed}
        if self.config.num_inference_steps:
            kwargs["num_inference_steps"] = self.config.num_inference_steps
        if self.config.guidance_scale is not None:
            kwargs["guidance_scale"] = self.config.guidance_scale
        with self._lock:
            try:
                output = pipe(inputs, **kwargs)
            except Exception as exc:
                raise ImageBackendError(f"the ModelScope pipeline failed: {type(exc).__name__}: {exc}") from exc
        return self.save_png(picture_from_output(output), request, model_dir=str(self.model_dir))
