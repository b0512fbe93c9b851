"""The seed's output wrappers (`AudioWrapper`, `ImageWrapper`, `VideoWrapper`), kept by name.

Seed tools returned these objects for media; here each one stores its data in the artifact store
and *is* a `ToolOutput`, so a tool may simply `return AudioWrapper(wav_bytes)` and the hub reports
a typed Artifact. `str()` gives the seed's markup (`<audio ...>` / `![IMAGEGEN](path)`), which is
also the text the model sees. Remote URLs are not downloaded (tools run offline): pass bytes or a
local path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from raygent.schema import Artifact
from raygent.toolhub.artifacts import ArtifactStore, default_store
from raygent.toolhub.base import ToolOutput


class OutputWrapper(ToolOutput):
    """A media output: `artifact` (typed reference), `path`, `raw_data`; `str()` is the seed's markup."""

    def __init__(self, artifact: Artifact, raw_data: Any, markup: str):
        super().__init__(markup, [artifact])
        self.artifact = artifact
        self._raw_data = raw_data
        self._repr = markup

    @property
    def path(self) -> str:
        return self.artifact.uri

    @property
    def raw_data(self) -> Any:
        return self._raw_data

    def __repr__(self) -> str:
        return self._repr

    __str__ = __repr__


def _local_file(value: str | os.PathLike[str], what: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        hint = " (URLs are not downloaded: tools run offline; fetch it first)" if "://" in str(value) else ""
        raise FileNotFoundError(f"{what}: no such file {value}{hint}")
    return path


class AudioWrapper(OutputWrapper):
    """Audio from WAV bytes or a local file; stored in the artifact store."""

    def __init__(self, audio: bytes | str | os.PathLike[str], *, store: ArtifactStore | None = None,
                 mime_type: str = "audio/wav"):
        store = store or default_store()
        if isinstance(audio, (bytes, bytearray)):
            data = bytes(audio)
            artifact = store.save_bytes(data, mime_type=mime_type)
        else:
            path = _local_file(audio, "AudioWrapper")
            data = path.read_bytes()
            artifact = store.save_file(path)
        super().__init__(artifact, data,
                         f"<audio id=audio controls= preload=none> <source id=wav src={artifact.uri}> </audio>")


class ImageWrapper(OutputWrapper):
    """An image from a PIL image, a numpy array, encoded bytes or a local file; stored as PNG or as is."""

    def __init__(self, image: Any, *, store: ArtifactStore | None = None):
        from PIL import Image

        store = store or default_store()
        if isinstance(image, (str, os.PathLike)):
            artifact = store.save_file(_local_file(image, "ImageWrapper"))
        else:
            if isinstance(image, (bytes, bytearray)):
                import io

                image = Image.open(io.BytesIO(image))
                image.load()
            elif not isinstance(image, Image.Image):
                import numpy as np

                image = Image.fromarray(np.asarray(image).astype("uint8"))
            path = store.new_path(".png")
            image.save(path, format="PNG")
            artifact = store.register(path, mime_type="image/png")
        with Image.open(artifact.uri) as im:
            im.load()
            raw = im.copy()
        super().__init__(artifact, raw, f"![IMAGEGEN]({artifact.uri})")


class VideoWrapper(OutputWrapper):
    """A video from a local file or encoded bytes (kept in its format, no transcoding; `raw_data` is None)."""

    def __init__(self, video: bytes | str | os.PathLike[str], *, store: ArtifactStore | None = None,
                 mime_type: str = "video/mp4"):
        store = store or default_store()
        if isinstance(video, (bytes, bytearray)):
            artifact = store.save_bytes(bytes(video), mime_type=mime_type)
        else:
            artifact = store.save_file(_local_file(video, "VideoWrapper"))
        super().__init__(artifact, None, f"![IMAGEGEN]({artifact.uri})")
