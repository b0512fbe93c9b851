"""Where tool outputs that are files (audio, images, video, documents) live.

Tools never hand bytes to the model: they write them to an ArtifactStore and return an
`Artifact` reference (URI, mime type, size, and duration / dimensions where known), which travels
through Ray and HTTP cheaply. The default store is a local folder; a cluster points every node at
shared storage with RAYGENT_ARTIFACTS.

A file a tool is asked to read comes from the model, so it is untrusted: `open_input` takes only
files inside the store and the folders named in `ArtifactStore(readable=[...])` or
RAYGENT_TOOL_FILES (os.pathsep-separated), after resolving `..` and symlinks. "../../etc/passwd",
"/home/me/.ssh/id_rsa" or a symlink in the store pointing out are refused. `open_path` has no such
limit: it is for code that chose the file itself.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import uuid
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from raygent.schema import Artifact

ArtifactKind = Literal["audio", "image", "video", "file"]
FILES_ENV = "RAYGENT_TOOL_FILES"

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


class PathNotAllowed(PermissionError):
    """A tool argument names a local file outside the folders tools may read."""


def readable_folders_from_env() -> list[Path]:
    """The folders of $RAYGENT_TOOL_FILES (separated by os.pathsep) that tools may read besides the store."""
    return [Path(p.strip()).expanduser() for p in os.environ.get(FILES_ENV, "").split(os.pathsep) if p.strip()]


def _local_path(uri: str) -> Path:
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == folder or path.is_relative_to(folder) for folder in folders)


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

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 readable: Sequence[str | os.PathLike[str]] | None = None):
        self.root = Path(root).expanduser() if root else default_artifact_dir()
        # folders besides the store whose files tools may read; None: $RAYGENT_TOOL_FILES at each call
        self.readable = [Path(p).expanduser() for p in readable] if readable is not None else None

    def readable_folders(self) -> list[Path]:
        """Where a tool argument may point: the store, then `readable` (else $RAYGENT_TOOL_FILES)."""
        extra = self.readable if self.readable is not None else readable_folders_from_env()
        return [self.root, *extra]

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
        path = _local_path(uri)
        if not path.is_file():
            raise FileNotFoundError(f"artifact not found: {uri}")
        return path

    def open_input(self, artifact: Artifact | str) -> Path:
        """The real path of a file a tool argument names, which must lie in `readable_folders()`
        once `..` and symlinks are resolved; the check comes before the existence test, so that a
        refusal says nothing about what exists outside. The returned path is the resolved one, so
        the file opened is the file checked."""
        uri = artifact.uri if isinstance(artifact, Artifact) else artifact
        shown = uri if len(uri) <= 300 else uri[:300] + f"... ({len(uri)} characters)"
        folders = [folder.resolve() for folder in self.readable_folders()]
        try:
            real = _local_path(uri).resolve()
        except (OSError, ValueError) as exc:  # a NUL byte, a name too long, a symlink loop
            raise PathNotAllowed(f"{shown!r} is not a usable file path: {exc}") from None
        if not _inside(real, folders):
            raise PathNotAllowed(
                f"{shown!r} is outside the folders tools may read ({', '.join(map(str, folders))}): paths that "
                f"leave them ('..', another absolute path, a symlink pointing out) are refused. Pass an artifact "
                f"URI, or let tools read a folder with {FILES_ENV} or ArtifactStore(readable=[...])")
        if not real.is_file():
            raise FileNotFoundError(f"artifact not found: {shown}")
        return real


_default: ArtifactStore | None = None


def default_store() -> ArtifactStore:
    """The process-wide store (created on first use, from the environment)."""
    global _default
    if _default is None or _default.root != default_artifact_dir():
        _default = ArtifactStore()
    return _default
