"""A tiny Qwen2 chat model built by the tests themselves (no downloads).

A byte-level BPE tokenizer is trained offline with `tokenizers`, given a Qwen2.5-style chat template
that renders tools, and wrapped as a transformers tokenizer; a Qwen2 model with a 64-wide hidden
layer is created from a config and trained for under a hundred steps (a few seconds on CPU) to
answer two prompts: the weather question with a Hermes tool call, and a greeting with plain text.
Both are saved with save_pretrained, so the backend loads them exactly as it would a real model.
"""

from __future__ import annotations

import json
from pathlib import Path

from raygent.schema import Message, ToolSpec

WEATHER = ToolSpec(name="weather", description="Current weather in a city",
                   parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
TOOL_QUESTION = "What is the weather in Paris?"
TOOL_REPLY = '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call>'
TEXT_QUESTION = "Say hello."
TEXT_REPLY = "Hello! How can I help you today?"

# A Qwen2.5-style template: tools listed in the system turn, calls as <tool_call> JSON, results as
# <tool_response> blocks in a user turn.
CHAT_TEMPLATE = r"""
{%- set has_system = messages and messages[0].role == 'system' -%}
{{- '<|im_start|>system\n' + (messages[0].content if has_system else 'You are a helpful assistant.') -}}
{%- if tools -%}
{{- '\n\n# Tools\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>' -}}
{%- for tool in tools -%}{{- '\n' + (tool | tojson) -}}{%- endfor -%}
{{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags.' -}}
{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- for m in messages[(1 if has_system else 0):] -%}
{%- if m.role == 'assistant' -%}
{{- '<|im_start|>assistant\n' + (m.content or '') -}}
{%- for call in (m.tool_calls or []) -%}
{{- '<tool_call>\n{"name": "' + call.function.name + '", "arguments": ' + (call.function.arguments | tojson) + '}\n</tool_call>' -}}
{%- endfor -%}
{{- '<|im_end|>\n' -}}
{%- elif m.role == 'tool' -%}
{{- '<|im_start|>user\n<tool_response>\n' + m.content + '\n</tool_response><|im_end|>\n' -}}
{%- else -%}
{{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}
"""

_CORPUS = [
    TOOL_QUESTION, TOOL_REPLY, TEXT_QUESTION, TEXT_REPLY, json.dumps(WEATHER.to_openai()),
    "You are a helpful assistant. Current weather in a city.", "天气 北京 杭州 你好 谢谢",
    "The quick brown fox jumps over the lazy dog. 0123456789 {}[]:,\"'",
]

_CACHE: dict[str, Path] = {}


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)
    fast.add_tokens(["<tool_call>", "</tool_call>"])  # ordinary added tokens: kept when decoding, like Qwen's
    return fast


def _train(model, tokenizer, steps: int = 200) -> None:
    """Teach the two replies (loss on the reply tokens only); deterministic."""
    import torch

    def example(question: str, reply: str, tools):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tools=tools,
                                               add_generation_prompt=True, tokenize=False)
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        r = tokenizer(reply + "<|im_end|>", add_special_tokens=False)["input_ids"]
        return p + r, [-100] * len(p) + r

    rows = [example(TOOL_QUESTION, TOOL_REPLY, [WEATHER.to_openai()]), example(TEXT_QUESTION, TEXT_REPLY, None)]
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(i)) + i for i, _ in rows])
    labels = torch.tensor([[-100] * (width - len(lab)) + lab for _, lab in rows])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i, _ in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread is several times faster on a tiny model and a busy machine
    try:
        model.train()
        for _ in range(steps):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            if loss.item() < 0.05:  # every reply token is then the argmax: greedy decoding reproduces it
                break
    finally:
        torch.set_num_threads(threads)
        model.eval()


def build_tiny_qwen(folder: Path) -> Path:
    """Build, train and save the tiny model into `folder` (reused within a test session)."""
    key = "qwen"
    if key in _CACHE:
        import shutil

        shutil.copytree(_CACHE[key], folder, dirs_exist_ok=True)
        return folder
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config)
    _train(model, tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _CACHE[key] = folder
    return folder


def tool_question() -> list[Message]:
    return [Message.user(TOOL_QUESTION)]


def text_question() -> list[Message]:
    return [Message.user(TEXT_QUESTION)]


def write_gguf(model_dir: Path, out_file: Path) -> Path:
    """Write the saved tiny model as an F32 GGUF (llama.cpp's qwen2 layout: hparams, gpt2-style BPE
    vocabulary and merges, chat template, tensors under gguf's own names), as convert_hf_to_gguf would."""
    import gguf
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = model.config
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta") or getattr(cfg, "rope_theta", 10000.0)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(out_file), "qwen2")
    w.add_name("tiny-qwen")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(rope))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens = [""] * len(tok)
    for text, i in tok.get_vocab().items():
        tokens[i] = text
    added = {t.content for t in tok.added_tokens_decoder.values()}
    special = set(tok.all_special_tokens)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.USER_DEFINED if t in added
                       else gguf.TokenType.NORMAL for t in tokens])
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_add_bos_token(False)
    w.add_chat_template(tok.chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, cfg.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), tensor.numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_file
