"""How well the offered tools fit a request: the call bias of a small model follows it.

The embedded 0.5B model, left alone, rarely opens a tool call: its first-token logit for a call sits
1.6-4 below the best text token where a call is right (BFCL simple_python, multiple, live_simple:
median gap -2.1 to -3.1) and 3-10 below where no offered tool fits (irrelevance: median -4.3). A
fixed bias of 8 made it call in 97-100 % of the first group and in 90 % of the second, so it called
the calculator for a joke. The gap alone separates the groups only partly; the cosine similarity
of the request to the best tool's name and description (wordllama, 256-d, in its wheel) adds what
the model misses: a bias of `base + weight * similarity` (clipped to [floor, ceiling]) called in
85-100 % of the first group and 14-20 % of the second on 200 BFCL cases (seed 1), see
docs/evaluation.md. The fit is a plain linear rule, not a trained classifier, so it carries to tools
the fit never saw (raygent's own built-in ones are checked in the tests).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from raygent.schema import ToolSpec

log = logging.getLogger(__name__)


def tool_texts(spec: ToolSpec) -> list[str]:
    """What a tool is matched on: its name in words with its description, and its example requests
    (`ToolSpec.examples`: "What is 365*24?" is far from a calculator's description in word vectors,
    and close to its example "How much is (12+8)/5?")."""
    texts = [f"{spec.name.replace('_', ' ').replace('.', ' ')}: {spec.description or ''}"]
    return texts + [e.query for e in spec.examples if e.query]


class ToolRelevance:
    """Cosine similarity of a request to its best-fitting tool; tool vectors cached by their text."""

    def __init__(self, embedder: Any = None):
        self._embedder = embedder
        self._vectors: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._unavailable: str | None = None

    def __getstate__(self) -> dict[str, Any]:  # the embedder loads again where the model runs
        return {"_embedder": None, "_vectors": {}, "_unavailable": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _get_embedder(self) -> Any:
        if self._embedder is None and self._unavailable is None:
            try:
                from raygent.retrieval.embedders import get_embedder

                self._embedder = get_embedder("wordllama")
            except Exception as exc:  # wordllama missing: the fixed call bias applies
                self._unavailable = f"{type(exc).__name__}: {exc}"
                log.warning("tool relevance unavailable (%s); using the fixed call bias. "
                            "pip install 'raygent[retrieval]' for it", self._unavailable)
        return self._embedder

    def score(self, request: str, tools: Sequence[ToolSpec]) -> float | None:
        """Best similarity in [-1, 1]; None where no embedder can be loaded or nothing to compare."""
        if not tools or not request.strip():
            return None
        with self._lock:
            embedder = self._get_embedder()
            if embedder is None:
                return None
            texts = [text for t in tools for text in tool_texts(t)]
            missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
            if missing:
                for text, vector in zip(missing, embedder.embed_sync(missing)):
                    self._vectors[text] = vector
            query = embedder.embed_sync([request])[0]
            return float(max(float(self._vectors[t] @ query) for t in texts))
