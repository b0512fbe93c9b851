"""Text embeddings for long-term memory: any `embed(texts) -> np.ndarray` callable.

The offline default is WordLlama (256-d, weights and tokenizer ship inside the `wordllama` wheel;
loaded from the package folder, never downloaded). It is kept behind `default_embedder()` so a
richer embedder (e.g. raygent.retrieval's) can be passed instead: anything mapping a list of
strings to an (n, d) float array works; vectors are L2-normalised by the caller.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Embed = Callable[[Sequence[str]], np.ndarray]

_WEIGHTS = "weights/l2_supercat_256.safetensors"
_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


def wordllama_files() -> tuple[Path, Path]:
    """(weights, tokenizer) inside the installed wordllama package, with a clear error if absent."""
    try:
        import wordllama
    except ImportError as exc:
        raise RuntimeError("long-term memory's default embedder needs wordllama: pip install 'raygent[memory]' "
                           "(or pass embed=... with your own embedder)") from exc
    root = Path(wordllama.__file__).parent
    weights, tokenizer = root / _WEIGHTS, root / _TOKENIZER
    for f in (weights, tokenizer):
        if not f.exists():
            raise RuntimeError(f"the installed wordllama lacks its bundled file {f}; reinstall wordllama>=0.4 "
                               f"(pip install --force-reinstall wordllama)")
    return weights, tokenizer


@functools.lru_cache(maxsize=1)
def _wordllama() -> Any:
    # Built from the package's own files: WordLlama.load() looks for the tokenizer in a folder name
    # that differs from the one the wheel ships, then falls back to a download.
    from safetensors import safe_open
    from tokenizers import Tokenizer
    from wordllama.inference import WordLlamaInference

    weights, tokenizer = wordllama_files()
    with safe_open(str(weights), framework="np", device="cpu") as f:
        embedding = f.get_tensor("embedding.weight")
    return WordLlamaInference(embedding, Tokenizer.from_file(str(tokenizer)))


def default_embedder() -> Embed:
    """WordLlama l2_supercat 256-d from the wheel: (n, 256) float32, unit length."""
    model = _wordllama()

    def embed(texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 256), dtype=np.float32)
        return np.asarray(model.embed(list(texts), norm=True), dtype=np.float32)

    return embed


def normalise(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"an embedder must return a 2-d array (texts x dimensions), got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms == 0, 1.0, norms)
