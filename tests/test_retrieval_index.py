"""faiss indexes (flat / IVF / HNSW, chosen by size), add / remove / persist, and the hybrid SearchIndex."""

from __future__ import annotations

import numpy as np
import pytest

from raygent.retrieval.search import SearchIndex
from raygent.retrieval.vector_index import VectorIndex, gpu_count


def _unit(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_auto_kind_is_exact_when_small_and_ivf_when_large():
    vecs = _unit(3000)
    index = VectorIndex(32, "auto", approx_threshold=2000)
    index.add(np.arange(1500), vecs[:1500])
    assert index.built_kind == "flat"
    index.add(np.arange(1500, 3000), vecs[1500:])
    assert index.built_kind == "ivf" and len(index) == 3000
    _, ids = index.search(vecs[:50], 1)
    assert (ids[:, 0] == np.arange(50)).mean() >= 0.9  # each vector finds itself (approximate search)
    assert gpu_count() == 0 or index.use_gpu


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_add_remove_replace_save_load(kind, tmp_path):
    vecs = _unit(600, seed=1)
    index = VectorIndex(32, kind)
    ids = np.arange(100, 700)
    index.add(ids, vecs)
    assert index.built_kind == kind and len(index) == 600
    assert index.remove([100, 101, 5]) == 2 and len(index) == 598
    scores, found = index.search(vecs[:3], 5)
    assert 100 not in found and 101 not in found and found[2, 0] == 102 and scores[2, 0] == pytest.approx(1, abs=1e-4)
    index.add([102], vecs[3:4])  # replace: id 102 now holds vector 3
    assert len(index) == 598
    index.save(tmp_path / "idx")
    again = VectorIndex.load(tmp_path / "idx")
    assert len(again) == 598 and again.built_kind == kind
    _, found = again.search(vecs[3:4], 2)
    assert set(found[0]) == {102, 103}
    assert again.memory_bytes() > 598 * 32 * 4


def test_search_on_empty_and_small_index_pads():
    index = VectorIndex(8)
    scores, ids = index.search(np.ones((1, 8), dtype=np.float32), 3)
    assert ids.tolist() == [[-1, -1, -1]] and np.isneginf(scores).all()
    index.add([7], _unit(1, 8))
    _, ids = index.search(np.ones((1, 8), dtype=np.float32), 3)
    assert ids.tolist() == [[7, -1, -1]]
    with pytest.raises(ValueError, match="duplicate ids"):
        index.add([1, 1], _unit(2, 8))


DOCS = {
    "weather": "get the weather forecast for a city: temperature, rain and wind",
    "flight": "book a flight ticket between two airports on a date",
    "triangle": "compute the area of a triangle from its base and height",
    "address": "地址解析：从地址中识别省、市、区等元素",
    "translate": "translate text from one language into another language",
    "stock": "look up the latest stock price of a listed company by ticker symbol",
}


@pytest.mark.parametrize("method", ["bm25", "tfidf", "dense", "hybrid"])
async def test_search_index_methods_find_the_right_document(method):
    index = SearchIndex()
    await index.add(DOCS)
    queries = {"will it rain in Paris tomorrow? weather please": "weather",
               "what's the area of a triangle with base 3 and height 4": "triangle",
               "帮我解析这个地址，找出省市区": "address",
               "how much is a share of AAPL stock": "stock"}
    for query, gold in queries.items():
        hits = await index.search(query, 3, method)
        assert hits and hits[0].key == gold, (method, query, hits)
        assert [h.rank for h in hits] == list(range(len(hits)))


async def test_search_index_incremental_and_persistent(tmp_path):
    index = SearchIndex(fusion="weighted")
    await index.add(DOCS)
    assert (await index.search("stock price of a company", 1))[0].key == "stock"
    assert index.remove(["stock", "nope"]) == 1
    assert all(h.key != "stock" for h in await index.search("stock price of a company", 6))
    await index.add({"weather": "convert currencies at the current exchange rate"})  # replaced text
    assert (await index.search("exchange rate from euro to dollar", 1))[0].key == "weather"
    index.save(tmp_path / "kb")
    again = SearchIndex.load(tmp_path / "kb")
    assert len(again) == 5 and again.text("weather").startswith("convert currencies")
    assert (await again.search("exchange rate from euro to dollar", 1))[0].key == "weather"
    with pytest.raises(ValueError, match="unknown method"):
        await again.search("x", 1, "magic")


async def test_load_refuses_a_different_embedder(tmp_path):
    from raygent.retrieval.embedders import WordLlamaEmbedder

    index = SearchIndex()
    await index.add({"a": "alpha"})
    index.save(tmp_path / "kb")
    with pytest.raises(ValueError, match="built with embedder 'wordllama-l2_supercat-256'"):
        SearchIndex.load(tmp_path / "kb", WordLlamaEmbedder(trunc_dim=64))


async def test_lexical_gate_scales_the_lexical_weight_by_matched_query_tokens():
    from raygent.retrieval.text import tokenize

    gated, plain = SearchIndex(lexical_gate=3), SearchIndex()
    for index in (gated, plain):
        await index.add(DOCS)
    named = tokenize("book a flight ticket between two airports")  # 6 tokens in the flight doc
    sparse = tokenize("any planes to Denver on a date next Friday")  # 1 ("date") in it
    for tokens, weight in ((named, 0.4), (sparse, 0.4 / 3)):
        lexical = gated._lexical_ranking("bm25", tokens, 10)
        assert lexical[0][0] == "flight"
        assert gated._lexical_weight(tokens, lexical) == pytest.approx(weight)
        assert plain._lexical_weight(tokens, lexical) == pytest.approx(0.4)  # gate off: always 1 - alpha
    assert gated._lexical_weight(sparse, []) == pytest.approx(0.4)
    # with no lexical weight left, the fused ranking is the dense one
    dense = [("weather", 0.9), ("stock", 0.5), ("flight", 0.2)]
    fused = gated._fuse(dense, [("stock", 7.0), ("flight", 3.0)], lexical_weight=0.0)
    assert [k for k, _ in fused] == ["weather", "stock", "flight"]
    with pytest.raises(ValueError, match="lexical_gate"):
        SearchIndex(lexical_gate=-1)
