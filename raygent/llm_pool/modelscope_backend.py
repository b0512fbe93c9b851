"""ModelScope models: from the local ModelScope cache (transformers backend) or ModelScope's
OpenAI-compatible inference API (OpenAI backend).

The cache is resolved by reading the folder layouts the modelscope SDK writes, without importing
it and without network: `modelscope download --model org/name` (or `snapshot_download`) on a
machine with access fills the cache, and raygent loads from there. Layouts probed under each cache
root, for model id `org/name` (dots in `name` are stored as `___`):

    models/org/name                     modelscope >= 1.14 (the current SDK layout)
    models/org--name/snapshots/<rev>    modelscope_hub
    hub/org/name, org/name              older SDKs (the pre-`models/` and flat layouts)

Cache roots: `cache_dir`, else $MODELSCOPE_CACHE, else ~/.cache/modelscope/hub and ~/.cache/modelscope.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from raygent.llm_pool.errors import BackendConfigError
from raygent.llm_pool.openai_backend import OpenAICompatibleChatModel
from raygent.llm_pool.transformers_backend import TransformersChatModel

MODELSCOPE_API_URL = "https://api-inference.modelscope.cn/v1"
MODELSCOPE_TOKEN_ENV = "MODELSCOPE_API_TOKEN"
#: files that make a folder a loadable transformers model
_MODEL_MARKERS = ("config.json",)


class ModelNotInCacheError(BackendConfigError):
    """The model is not in any ModelScope cache folder raygent looked at."""


def cache_roots(cache_dir: str | os.PathLike | None = None) -> list[Path]:
    if cache_dir is not None:
        return [Path(cache_dir).expanduser()]
    env = os.environ.get("MODELSCOPE_CACHE")
    if env:
        return [Path(env).expanduser()]
    home = Path.home() / ".cache" / "modelscope"
    return [home / "hub", home]


def candidate_dirs(model_id: str, revision: str | None = None,
                   cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every folder the model could be in, in the order they are tried."""
    if model_id.count("/") != 1 or not all(model_id.split("/")):
        raise BackendConfigError(f"a ModelScope model id has the form 'org/name', got {model_id!r}",
                                 backend="modelscope")
    org, name = model_id.split("/")
    safe = name.replace(".", "___")
    out: list[Path] = []
    for root in cache_roots(cache_dir):
        snapshots = root / "models" / f"{org}--{name}" / "snapshots"
        if revision:
            out.append(snapshots / revision)
        elif snapshots.is_dir():  # the newest snapshot first
            out += sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime,
                          reverse=True)
        for base in (root / "models", root / "hub", root):
            out += [base / org / safe, base / org / name] if safe != name else [base / org / name]
    return list(dict.fromkeys(out))


def resolve_model_dir(model_id: str, revision: str | None = None,
                      cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached model folder for `model_id`, found without network; a clear error if absent."""
    tried = candidate_dirs(model_id, revision, cache_dir)
    for folder in tried:
        if folder.is_dir() and any((folder / m).is_file() for m in _MODEL_MARKERS):
            return folder
    probed = "\n  ".join(str(p) for p in tried)
    rev = f" --revision {revision}" if revision else ""
    raise ModelNotInCacheError(
        f"ModelScope model {model_id!r} is not in the local cache. Looked in:\n  {probed}\n"
        f"Download it where the network allows (pip install modelscope; modelscope download --model {model_id}{rev}), "
        f"set MODELSCOPE_CACHE to the cache folder, or pass `path` to the model folder directly.",
        backend="modelscope")


class ModelScopeChatModel(TransformersChatModel):
    """A model from the ModelScope cache, run by the transformers backend (CPU or GPU).

    model_id: "org/name" as on modelscope.cn; revision: a cached snapshot (modelscope_hub layout).
    download: fetch with the modelscope SDK when absent from the cache (needs network and
        `pip install modelscope`); off by default.
    Other keyword arguments go to TransformersChatModel (device, dtype, format, chat_template, ...).
    """

    backend_name = "modelscope"

    def __init__(self, model_id: str, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                 download: bool = False, **kwargs: Any):
        candidate_dirs(model_id)  # validates the id early
        self.model_id = model_id
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        self.download = download
        kwargs.setdefault("model_name", model_id)
        super().__init__(model_id, revision=None, **kwargs)
        self.model_revision = revision

    def resolve_path(self) -> str:
        """Resolved where the weights load (inside the Ray actor, on its node)."""
        try:
            return str(resolve_model_dir(self.model_id, self.model_revision, self.cache_dir))
        except ModelNotInCacheError:
            if not self.download:
                raise
        try:
            from modelscope import snapshot_download
        except ImportError as exc:
            raise BackendConfigError("download=True needs the modelscope SDK: pip install 'raygent[modelscope]'",
                                     backend=self.backend_name) from exc
        return snapshot_download(self.model_id, revision=self.model_revision, cache_dir=self.cache_dir)


class ModelScopeAPIChatModel(OpenAICompatibleChatModel):
    """A model on ModelScope's OpenAI-compatible inference API (token in MODELSCOPE_API_TOKEN)."""

    backend_name = "modelscope-api"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str = MODELSCOPE_TOKEN_ENV, **kwargs: Any):
        super().__init__(model, base_url=base_url or MODELSCOPE_API_URL, api_key=api_key, api_key_env=api_key_env,
                         **kwargs)
