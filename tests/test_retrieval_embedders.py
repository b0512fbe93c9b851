"""Embedders: wordllama offline, a local transformers / sentence-transformers folder, DashScope's SDK
against a local server speaking its HTTP protocol; lexical tokenisation of Chinese and identifiers."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from raygent.retrieval.embedders import (
    DashScopeEmbedder,
    EmbedderError,
    TransformersEmbedder,
    WordLlamaEmbedder,
    get_embedder,
)
from raygent.retrieval.lexical import BM25Scorer, TfidfScorer
from raygent.retrieval.text import tokenize


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a non-loopback connection fails the test."""
    real_connect = socket.socket.connect
    attempts = []

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "localhost", "::1") and not str(host).startswith("/"):
            attempts.append(address)
            raise AssertionError(f"network access attempted: {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: attempts.append(a) or (_ for _ in ()).throw(
        AssertionError(f"DNS lookup attempted: {a}")))
    yield attempts
    assert attempts == []


async def test_wordllama_loads_bundled_weights_without_network(no_network):
    emb = WordLlamaEmbedder()
    vecs = await emb.embed(["weather forecast for a city", "current weather in a town", "compute a triangle area"])
    assert vecs.shape == (3, 256) and vecs.dtype == np.float32 and emb.dim == 256
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2]  # related texts are closer than unrelated ones
    assert (await emb.embed([])).shape == (0, 256)
    assert get_embedder().name == emb.name == "wordllama-l2_supercat-256"


def test_unknown_embedder_spec_says_what_to_use():
    with pytest.raises(EmbedderError, match="unknown embedder 'nope'.*wordllama"):
        get_embedder("nope")
    with pytest.raises(EmbedderError, match="folder not found"):
        get_embedder("hf:/no/such/folder")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A random 2-layer BERT with a WordPiece tokenizer trained here, saved with save_pretrained."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    corpus = ["the weather forecast for tomorrow", "compute the area of a triangle", "book a flight to paris",
              "translate english text into chinese", "parse the address into province and city"] * 20
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    folder = tmp_path_factory.mktemp("tiny-bert")
    fast = transformers.BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                          cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(folder)
    cfg = transformers.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(folder)
    return folder


async def test_local_transformers_folder_mean_pools(tiny_bert):
    emb = get_embedder(f"hf:{tiny_bert}")
    assert isinstance(emb, TransformersEmbedder) and emb.dim == 32
    vecs = await emb.embed(["the weather forecast", "area of a triangle", "the weather forecast"])
    assert vecs.shape == (3, 32) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vecs[0], vecs[2], atol=1e-5) and not np.allclose(vecs[0], vecs[1], atol=1e-3)


async def test_sentence_transformers_folder(tiny_bert, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer import modules as st_models
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import models as st_models
    word = st_models.Transformer(str(tiny_bert), max_seq_length=32)
    model = st.SentenceTransformer(modules=[word, st_models.Pooling(32, "mean")])
    model.save(str(tmp_path / "st"))
    emb = get_embedder(f"st:{tmp_path / 'st'}")
    assert emb.name == "st:st" and emb.dim == 32
    plain = await TransformersEmbedder(tiny_bert).embed(["book a flight to paris"])
    vecs = await emb.embed(["book a flight to paris"])
    assert np.allclose(vecs, plain, atol=1e-4)  # same weights, same mean pooling


class _DashScopeHandler(BaseHTTPRequestHandler):
    """DashScope's text-embedding endpoint: POST {base}/services/embeddings/text-embedding/text-embedding
    with {"model", "input": {"texts"}, "parameters"}; answers {"output": {"embeddings": [...]}, "usage",
    "request_id"}, or {"code", "message"} with 401 for a wrong key."""

    requests: list[dict] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.path != "/api/v1/services/embeddings/text-embedding/text-embedding":
            return self._send(404, {"code": "NotFound", "message": self.path, "request_id": "r0"})
        if self.headers.get("Authorization") != "Bearer sk-test":
            return self._send(401, {"code": "InvalidApiKey", "message": "Invalid API-key provided.",
                                    "request_id": "r1"})
        texts = body["input"]["texts"]
        if len(texts) > 10:
            return self._send(400, {"code": "InvalidParameter", "message": "batch size is invalid, it should "
                                    "not be larger than 10.", "request_id": "r2"})
        dim = body.get("parameters", {}).get("dimension", 64)
        rows = []
        for i, t in enumerate(texts):
            seed = int(hashlib.sha1(t.encode()).hexdigest()[:8], 16)
            rows.append({"text_index": i, "embedding": np.random.default_rng(seed).standard_normal(dim).tolist()})
        self._send(200, {"output": {"embeddings": rows}, "usage": {"total_tokens": sum(len(t) for t in texts)},
                         "request_id": "r3"})

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def dashscope_server():
    pytest.importorskip("dashscope")
    _DashScopeHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DashScopeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    server.shutdown()
    server.server_close()


async def test_dashscope_sdk_against_local_server(dashscope_server, monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
    emb = get_embedder("dashscope:text-embedding-v3", dim=64, base_url=dashscope_server)
    assert isinstance(emb, DashScopeEmbedder) and emb.dim == 64
    texts = [f"text number {i}" for i in range(23)] + ["text number 0"]
    vecs = await emb.embed(texts)
    assert vecs.shape == (24, 64) and np.allclose(vecs[0], vecs[23])
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    reqs = _DashScopeHandler.requests
    assert [len(r["body"]["input"]["texts"]) for r in reqs] == [10, 10, 4]  # the service's batch limit
    assert reqs[0]["body"]["model"] == "text-embedding-v3"
    assert reqs[0]["body"]["parameters"] == {"text_type": "document", "dimension": 64}

    bad = DashScopeEmbedder("text-embedding-v3", api_key="sk-wrong", base_url=dashscope_server)
    with pytest.raises(EmbedderError, match="HTTP 401 InvalidApiKey"):
        await bad.embed(["x"])


def test_dashscope_without_key_says_how_to_configure(monkeypatch):
    pytest.importorskip("dashscope")
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(EmbedderError, match="DASHSCOPE_API_KEY"):
        DashScopeEmbedder()


def test_tokenize_chinese_and_identifiers():
    assert tokenize("getWeatherForecast triangle_properties.get") == ["get", "weather", "forecast", "triangl",
                                                                       "properti", "get"]
    toks = tokenize("从下面的地址中找到省市区等元素")
    assert {"地址", "找到", "省市区", "元素"} <= set(toks) and "的" not in toks


@pytest.mark.parametrize("scorer", [BM25Scorer, TfidfScorer])
def test_lexical_scorers_rank_chinese_and_english(scorer):
    docs = ["地址解析：识别省市区", "天气预报查询城市天气", "compute the area of a triangle", ""]
    s = scorer()
    s.fit([tokenize(d) for d in docs])
    assert int(np.argmax(s.scores(tokenize("帮我查一下北京的天气")))) == 1
    assert int(np.argmax(s.scores(tokenize("triangle area")))) == 2
    assert int(np.argmax(s.scores(tokenize("识别这个地址")))) == 0
    assert not s.scores(tokenize("zebra")).any()
