"""Where tool outputs that are files (audio, images, video, documents) live.

Tools never hand bytes to the model: they write them to an ArtifactStore and return an
`Artifact` reference (URI, mime type, size, and duration / dimensions where known), which travels
through Ray and HTTP cheaply. The default store is a local folder; a cluster points every node at
shared storage with RAYGENT_ARTIFACTS.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import uuid
import wave
from pathlib import Path
from typing import Any, Literal

from raygent.schema import Artifact

ArtifactKind = Literal["audio", "image", "video", "file"]

# mimetypes' tables differ by platform (some lack audio/wav); these are the types tools produce
_SUFFIXES = {"audio/wav": ".wav", "audio/x-wav": ".wav", "audio/mpeg": ".mp3", "image/png": ".png",
             "image/jpeg": ".jpg", "image/webp": ".webp", "video/mp4": ".mp4", "application/pdf": ".pdf",
             "text/plain": ".txt", "application/json": ".json"}


def default_artifact_dir() -> Path:
    """$RAYGENT_ARTIFACTS, else $RAYGENT_HOME/artifacts, else $XDG_CACHE_HOME/raygent/artifacts."""
    explicit = os.environ.get("RAYGENT_ARTIFACTS")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("RAYGENT_HOME")
    if home:
        return Path(home).expanduser() / "artifacts"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "raygent" / "artifacts"


def kind_of(mime_type: str | None) -> ArtifactKind:
    major = (mime_type or "").split("/", 1)[0]
    return major if major in ("audio", "image", "video") else "file"  # type: ignore[return-value]


def probe_metadata(path: Path, mime_type: str | None) -> dict[str, Any]:
    """Duration of WAV audio, pixel size of images; empty when unknown (never raises)."""
    try:
        if mime_type in ("audio/wav", "audio/x-wav", "audio/wave"):
            with wave.open(str(path), "rb") as w:
                return {"duration_s": round(w.getnframes() / float(w.getframerate()), 3),
                        "sample_rate": w.getframerate(), "channels": w.getnchannels()}
        if kind_of(mime_type) == "image":
            from PIL import Image

            with Image.open(path) as im:
                return {"width": im.width, "height": im.height}
    except Exception:  # metadata is a courtesy; a file we cannot probe is still a valid artifact
        return {}
    return {}


class ArtifactStore:
    """A folder of artifacts. `save_bytes` / `save_file` return typed Artifact references."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(root).expanduser() if root else default_artifact_dir()

    def _target(self, suffix: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        suffix = suffix if not suffix or suffix.startswith(".") else "." + suffix
        return self.root / f"{uuid.uuid4().hex}{suffix}"

    def _reference(self, path: Path, mime_type: str | None, kind: ArtifactKind | None,
                   metadata: dict[str, Any] | None) -> Artifact:
        mime_type = mime_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        meta = probe_metadata(path, mime_type)
        meta.update(metadata or {})
        return Artifact(kind=kind or kind_of(mime_type), uri=str(path), mime_type=mime_type,
                        size_bytes=path.stat().st_size, metadata=meta)

    def new_path(self, suffix: str) -> Path:
        """A fresh path in the store, for tools whose engine writes the file itself."""
        return self._target(suffix)

    def register(self, path: str | os.PathLike[str], *, mime_type: str | None = None,
                 kind: ArtifactKind | None = None, metadata: dict[str, Any] | None = None) -> Artifact:
        """Reference a file already written inside the store (e.g. to `new_path`)."""
        return self._reference(Path(path), mime_type, kind, metadata)

    def save_bytes(self, data: bytes, *, suffix: str = "", mime_type: str | None = None,
                   kind: ArtifactKind | None = None, metadata: dict[str, Any] | None = None) -> Artifact:
        if not suffix and mime_type:
            suffix = _SUFFIXES.get(mime_type) or mimetypes.guess_extension(mime_type) or ""
        path = self._target(suffix)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return self._reference(path, mime_type, kind, metadata)

    def save_file(self, source: str | os.PathLike[str], *, mime_type: str | None = None,
                  kind: ArtifactKind | None = None, metadata: dict[str, Any] | None = None) -> Artifact:
        """Copy a file into the store (the source is left untouched)."""
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"cannot store artifact: {source} is not a file")
        path = self._target(source.suffix)
        shutil.copyfile(source, path)
        return self._reference(path, mime_type or mimetypes.guess_type(source.name)[0], kind, metadata)

    def open_path(self, artifact: Artifact | str) -> Path:
        """The local path of an artifact reference (or a path/URI string), checked to exist."""
        uri = artifact.uri if isinstance(artifact, Artifact) else artifact
        path = Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"artifact not found: {uri}")
        return path


_default: ArtifactStore | None = None


def default_store() -> ArtifactStore:
    """The process-wide store (created on first use, from the environment)."""
    global _default
    if _default is None or _default.root != default_artifact_dir():
        _default = ArtifactStore()
    return _default
