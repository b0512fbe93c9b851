"""Fold a llama.cpp LoRA adapter into its base GGUF model, once, and cache the merged file.

Why: llama.cpp applies a run-time adapter as two extra small matmuls per adapted weight on every
token; on the embedded 0.5B that costs about a third more time per generated token. A merged model
runs at the base model's speed and gives the adapter's answers.

How: every adapted weight W (stored quantized) becomes dequant(W) + scale * alpha / rank * B @ A and
is quantized again; every other tensor and all metadata are copied byte for byte. `quant="q8_0"`
(default) writes every merged tensor as Q8_0; `quant="same"` keeps each one's own type where gguf-py
can write it (Q5_0, ...; Q8_0 for the k-quants it can only read), a smaller file, but rounding the
0.5B's Q5_0 weights twice changed its calls (docs/training.md, "Folded into the weights").
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from raygent.llm_pool.embedded import file_sha256, raygent_home

MERGE_VERSION = "1"  # part of the cache key: bump when the merge arithmetic changes
QuantChoice = Literal["same", "q8_0"]


class AdapterMergeError(RuntimeError):
    """The adapter does not fit the model, or a file is not what it should be."""


def _gguf() -> Any:
    try:
        import gguf
    except ImportError as exc:  # a dependency of the llama extra
        raise AdapterMergeError("merging a LoRA adapter needs the gguf package: pip install 'raygent[llama]' "
                                "(or: pip install gguf)") from exc
    return gguf


def _adapter_pairs(adapter: Any) -> tuple[dict[str, tuple[Any, Any]], float]:
    """{base tensor name: (A, B)} as float32 arrays (A: rank x in, B: out x rank), and alpha."""
    fields = adapter.fields
    kind = fields.get("general.type")
    if kind is None or kind.contents() != "adapter" or fields["adapter.type"].contents() != "lora":
        raise AdapterMergeError("not a llama.cpp LoRA adapter (general.type must be 'adapter', adapter.type 'lora')")
    alpha = float(fields["adapter.lora.alpha"].contents()) if "adapter.lora.alpha" in fields else 0.0
    parts: dict[str, dict[str, Any]] = {}
    for tensor in adapter.tensors:
        base, _, which = tensor.name.rpartition(".lora_")
        if which not in ("a", "b"):
            raise AdapterMergeError(f"unexpected adapter tensor {tensor.name!r}")
        parts.setdefault(base, {})[which] = _to_float(tensor)
    pairs = {}
    for name, ab in parts.items():
        if set(ab) != {"a", "b"}:
            raise AdapterMergeError(f"adapter tensor {name!r} lacks its lora_a or lora_b half")
        pairs[name] = (ab["a"], ab["b"])
    return pairs, alpha


def _to_float(tensor: Any) -> Any:
    import numpy as np

    gguf = _gguf()
    data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))  # GGUF lists ne0 first
    return np.asarray(data, dtype=np.float32).reshape(shape)


def merge_lora_gguf(base: str | os.PathLike, adapter: str | os.PathLike, out: str | os.PathLike, *,
                    scale: float = 1.0, quant: QuantChoice = "q8_0") -> Path:
    """Write `base` with `adapter` folded in (at `scale`, as llama.cpp's lora_scale) to `out`."""
    import numpy as np

    gguf = _gguf()
    if quant not in ("same", "q8_0"):
        raise ValueError(f"quant must be 'same' or 'q8_0', not {quant!r}")
    model = gguf.GGUFReader(str(base))
    lora = gguf.GGUFReader(str(adapter))
    arch = model.fields["general.architecture"].contents()
    if "general.architecture" in lora.fields and lora.fields["general.architecture"].contents() != arch:
        raise AdapterMergeError(f"the adapter is for {lora.fields['general.architecture'].contents()!r} models, "
                                f"the model is {arch!r}")
    pairs, alpha = _adapter_pairs(lora)
    names = {t.name for t in model.tensors}
    missing = sorted(set(pairs) - names)
    if missing:
        raise AdapterMergeError(f"the adapter changes tensors the model does not have ({', '.join(missing[:3])}); "
                                f"it was trained for another model")
    T = gguf.GGMLQuantizationType
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.part-{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), arch)
    try:
        for field in model.fields.values():
            if field.name.startswith("GGUF.") or field.name == "general.architecture":
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
        for tensor in model.tensors:
            if tensor.name not in pairs:
                writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
                continue
            a, b = pairs[tensor.name]
            rank = a.shape[0]
            weight = _to_float(tensor)
            if b.shape != (weight.shape[0], rank) or a.shape[1] != weight.shape[1]:
                raise AdapterMergeError(f"{tensor.name}: adapter shapes {b.shape} x {a.shape} do not fit "
                                        f"the weight {weight.shape}")
            factor = scale * (alpha / rank if alpha else 1.0)
            merged = weight + np.float32(factor) * (b @ a)
            target = tensor.tensor_type if quant == "same" else T.Q8_0
            try:
                data = gguf.quants.quantize(merged, target)
            except NotImplementedError:  # gguf-py reads k-quants but cannot write them
                target = T.Q8_0
                data = gguf.quants.quantize(merged, target)
            writer.add_tensor(tensor.name, data, raw_dtype=target)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def merged_model_path(base: Path, adapter: Path, *, scale: float, quant: QuantChoice, cache_dir: Path) -> Path:
    """Where the merged file for this (model, adapter, scale, quant) lives: the key hashes the adapter's
    bytes and the base's name and size, so a retrained adapter gets a new file."""
    key = hashlib.sha256("|".join([MERGE_VERSION, base.name, str(base.stat().st_size), file_sha256(adapter),
                                   repr(float(scale)), quant]).encode()).hexdigest()[:12]
    return cache_dir / f"{base.stem}+{adapter.stem}-{key}.gguf"


def ensure_merged_model(base: str | os.PathLike, adapter: str | os.PathLike, *, scale: float = 1.0,
                        quant: QuantChoice = "q8_0", cache_dir: str | os.PathLike | None = None) -> Path:
    """The merged model for `base` + `adapter`, merging it on first use (about 20 s for the 0.5B)."""
    base_path, adapter_path = Path(base), Path(adapter)
    folder = Path(cache_dir) if cache_dir is not None else raygent_home() / "models"
    target = merged_model_path(base_path, adapter_path, scale=scale, quant=quant, cache_dir=folder)
    if not target.is_file():
        merge_lora_gguf(base_path, adapter_path, target, scale=scale, quant=quant)
    return target
