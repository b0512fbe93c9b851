"""Write a peft LoRA adapter as a llama.cpp GGUF adapter, so the embedded llama.cpp backend can
load it beside the quantized base model (`LlamaCppChatModel(lora=...)`).

llama.cpp's layout: tensors `blk.N.<weight>.weight.lora_a` (rank x in) and `.lora_b` (out x rank),
metadata general.type "adapter", adapter.type "lora", adapter.lora.alpha; llama.cpp scales the
product by alpha / rank, as peft does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

# Hugging Face module names of Llama-family blocks -> llama.cpp tensor names
_GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down"}
_KEY = re.compile(r"layers\.(\d+)\.(\w+\.\w+)\.lora_([AB])\.weight$")


def export_lora_gguf(peft_model: Any, path: str | os.PathLike, *, architecture: str | None = None,
                     dtype: str = "f16") -> Path:
    """Write `peft_model`'s (single, default) adapter to `path`; returns the path."""
    import gguf
    import numpy as np
    from peft import get_peft_model_state_dict

    if dtype not in ("f16", "f32"):
        raise ValueError(f"dtype must be 'f16' or 'f32', not {dtype!r}")
    config = peft_model.peft_config["default"]
    arch = architecture or peft_model.base_model.model.config.model_type
    state = get_peft_model_state_dict(peft_model)
    tensors: dict[str, Any] = {}
    for key, value in state.items():
        match = _KEY.search(key)
        if match is None or match.group(2) not in _GGUF_NAMES:
            raise ValueError(f"cannot map adapter tensor {key!r} to a llama.cpp name (supported: "
                             f"{', '.join(_GGUF_NAMES)})")
        layer, module, which = match.groups()
        name = f"blk.{layer}.{_GGUF_NAMES[module]}.weight.lora_{which.lower()}"
        tensors[name] = value.detach().float().numpy().astype(np.float16 if dtype == "f16" else np.float32)
    if not tensors:
        raise ValueError("the model has no LoRA weights to export")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(config.lora_alpha))
    for name in sorted(tensors, key=_natural):
        writer.add_tensor(name, tensors[name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
