"""Folding a LoRA adapter into its GGUF model (raygent/llm_pool/gguf_merge.py).

The arithmetic runs on tiny GGUF files this test writes itself; the last test merges the shipped
adapter into the embedded model and checks the merged model calls tools as the run-time adapter does.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
T = gguf.GGMLQuantizationType

from raygent.llm_pool.gguf_merge import AdapterMergeError, ensure_merged_model, merge_lora_gguf  # noqa: E402

RANK, ALPHA = 4, 8.0


def _q4k_bytes(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """A valid Q4_K tensor (gguf-py reads but cannot write k-quants): random blocks, sane scales."""
    blocks = rng.integers(0, 256, size=(rows, cols // 256, 144), dtype=np.uint8)
    blocks[:, :, 0:2] = np.frombuffer(np.float16(0.01).tobytes(), dtype=np.uint8)  # d
    blocks[:, :, 2:4] = np.frombuffer(np.float16(0.005).tobytes(), dtype=np.uint8)  # dmin
    return blocks.reshape(rows, -1)


def _write_base(path, rng) -> dict[str, np.ndarray]:
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_string("general.name", "tiny")
    writer.add_uint32("qwen2.block_count", 1)
    writer.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    floats = {"blk.0.attn_q.weight": rng.standard_normal((64, 256)).astype(np.float32),
              "blk.0.attn_norm.weight": rng.standard_normal(256).astype(np.float32)}
    writer.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(floats["blk.0.attn_q.weight"], T.Q8_0),
                      raw_dtype=T.Q8_0)
    writer.add_tensor("blk.0.attn_norm.weight", floats["blk.0.attn_norm.weight"])
    writer.add_tensor("blk.0.ffn_down.weight", _q4k_bytes(32, 256, rng), raw_dtype=T.Q4_K)
    writer.add_tensor("blk.0.attn_k.weight", gguf.quants.quantize(rng.standard_normal((16, 256)).astype(np.float32),
                                                                  T.Q5_0), raw_dtype=T.Q5_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return floats


def _write_adapter(path, rng, targets: dict[str, tuple[int, int]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", ALPHA)
    pairs = {}
    for name, (out, inp) in targets.items():
        a = (rng.standard_normal((RANK, inp)) * 0.3).astype(np.float32)
        b = (rng.standard_normal((out, RANK)) * 0.3).astype(np.float32)
        writer.add_tensor(f"{name}.lora_a", a.astype(np.float16))
        writer.add_tensor(f"{name}.lora_b", b.astype(np.float16))
        pairs[name] = (a.astype(np.float16).astype(np.float32), b.astype(np.float16).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return pairs


def _tensors(path) -> dict:
    return {t.name: t for t in gguf.GGUFReader(str(path)).tensors}


def _dequant(tensor) -> np.ndarray:
    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
    return np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32).reshape(shape)


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(7)
    base = tmp_path / "base.gguf"
    _write_base(base, rng)
    adapter = tmp_path / "adapter.gguf"
    pairs = _write_adapter(adapter, rng, {"blk.0.attn_q.weight": (64, 256), "blk.0.ffn_down.weight": (32, 256)})
    return base, adapter, pairs


@pytest.mark.parametrize("quant", ["same", "q8_0"])
def test_merged_weights_are_base_plus_scaled_adapter_product(files, tmp_path, quant):
    base, adapter, pairs = files
    out = merge_lora_gguf(base, adapter, tmp_path / "merged.gguf", scale=0.5, quant=quant)
    before, after = _tensors(base), _tensors(out)
    assert list(after) == list(before)  # same tensors, same order
    for name, (a, b) in pairs.items():
        expected = _dequant(before[name]) + 0.5 * (ALPHA / RANK) * (b @ a)
        got = _dequant(after[name])
        # exactly the merged weights quantized once more (Q8_0): nothing else is lost
        requantized = gguf.quants.dequantize(gguf.quants.quantize(expected, T.Q8_0), T.Q8_0).reshape(expected.shape)
        assert np.allclose(got, requantized, atol=1e-6)
        change, wanted = (got - _dequant(before[name])).ravel(), (expected - _dequant(before[name])).ravel()
        assert np.corrcoef(change, wanted)[0, 1] > 0.98  # the adapter's change survives the quantization
    # the Q8_0 weight keeps its type; gguf-py cannot write Q4_K, so that one becomes Q8_0 either way
    assert after["blk.0.attn_q.weight"].tensor_type == T.Q8_0
    assert after["blk.0.ffn_down.weight"].tensor_type == T.Q8_0
    # tensors the adapter leaves alone are copied byte for byte
    for name in ("blk.0.attn_norm.weight", "blk.0.attn_k.weight"):
        assert after[name].tensor_type == before[name].tensor_type
        assert np.array_equal(np.asarray(after[name].data), np.asarray(before[name].data))
    fields = gguf.GGUFReader(str(out)).fields
    assert fields["general.name"].contents() == "tiny"
    assert fields["qwen2.block_count"].contents() == 1
    assert fields["tokenizer.ggml.tokens"].contents() == ["a", "b", "c"]


def test_an_adapter_for_another_model_is_refused_with_the_reason(files, tmp_path):
    base, _, _ = files
    other = tmp_path / "other.gguf"
    _write_adapter(other, np.random.default_rng(1), {"blk.7.attn_q.weight": (64, 256)})
    with pytest.raises(AdapterMergeError, match="does not have .*blk.7.attn_q.weight.*another model"):
        merge_lora_gguf(base, other, tmp_path / "merged.gguf")
    assert not (tmp_path / "merged.gguf").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".merged")] == []  # no partial file left
    with pytest.raises(AdapterMergeError, match="not a llama.cpp LoRA adapter"):
        merge_lora_gguf(base, base, tmp_path / "merged.gguf")


def test_the_merged_file_is_made_once_per_adapter_and_scale(files, tmp_path):
    base, adapter, _ = files
    cache = tmp_path / "cache"
    first = ensure_merged_model(base, adapter, cache_dir=cache)
    stamp = first.stat().st_mtime_ns
    assert ensure_merged_model(base, adapter, cache_dir=cache) == first
    assert first.stat().st_mtime_ns == stamp  # reused, not merged again
    assert ensure_merged_model(base, adapter, scale=0.5, cache_dir=cache) != first
    _write_adapter(adapter, np.random.default_rng(99), {"blk.0.attn_q.weight": (64, 256)})  # retrained
    assert ensure_merged_model(base, adapter, cache_dir=cache) != first


@pytest.mark.model
def test_the_default_model_runs_the_merged_weights_and_calls_tools_as_the_runtime_adapter_does():
    pytest.importorskip("llama_cpp")
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.schema import Message
    from raygent.toolhub.builtin import BUILTIN_TOOLS

    tools = [BUILTIN_TOOLS["calculator"]().spec]
    question = [Message.user("What is 17 times 23?")]
    merged = LlamaCppChatModel(n_ctx=2048)
    runtime = LlamaCppChatModel(n_ctx=2048, merge_lora=False)
    assert merged.model_name == runtime.model_name == "qwen2.5-coder-0.5b-instruct+multistep"
    merged_reply = asyncio.run(merged.chat(question, tools=tools))
    runtime_reply = asyncio.run(runtime.chat(question, tools=tools))
    assert "+qwen2.5-coder-0.5b-multistep-lora-" in merged.load().model_path
    assert runtime.load().model_path.endswith("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    calls = [(c.name, c.arguments) for c in merged_reply.tool_calls]
    assert calls == [(c.name, c.arguments) for c in runtime_reply.tool_calls]
    assert calls and calls[0][0] == "calculator"


def test_without_gguf_the_adapter_runs_at_run_time_with_a_warning(monkeypatch):
    import importlib.util

    from raygent.llm_pool import llama_cpp

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.warns(UserWarning, match=r"run-time adapter.*pip install gguf"):
        assert llama_cpp._can_merge() is False
    monkeypatch.setattr(importlib.util, "find_spec", real)
    assert llama_cpp._can_merge() is True
