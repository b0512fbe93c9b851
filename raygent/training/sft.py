"""Supervised LoRA fine-tuning of a chat model on tool-use conversations, on CPU if need be.

The examples are tokenized exactly as the llama.cpp backend lays out its prompts (system prompt,
tool descriptions, exemplars, hermes calls), and only the assistant turns are trained. Two things
make a 0.5B model trainable on 2 cores (measured: a 1,024-token sequence took 27 s forward and
backward with logits over every position):
- the system turn (about 1,000 tokens with four tools and the exemplars) is shared by the examples
  of a batch: its KV cache is computed once per optimizer step without gradients, and each
  conversation's own tokens (about 150-300) are trained on top of it. The gradient that would flow
  into the system turn's keys and values is dropped, a truncation that leaves the adapter to learn
  from the conversation's tokens only;
- logits are computed only at the positions that predict a trained token, not over the 152k-token
  vocabulary at every position.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from raygent.training.chains import Conversation

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_END = "<|im_end|>"


class SupervisedExample(BaseModel):
    """Token ids of one conversation: the shared system turn, then the rest with a mask of the
    tokens to learn (the assistant turns, each with its end-of-turn token)."""

    prefix_ids: list[int]
    ids: list[int]
    train: list[bool]
    kind: str = ""


def render_examples(conversations: Sequence[Conversation], chat_model: Any) -> list[SupervisedExample]:
    """Tokenize conversations as `chat_model` (a LlamaCppChatModel) prompts them at inference."""
    llama = chat_model.load()

    def tokens(text: str) -> list[int]:
        return llama.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []

    examples = []
    for conv in conversations:
        full = chat_model.render_conversation(conv.messages, conv.tools)
        system_end = full.index(_END) + len(_END) + 1  # the system turn and its newline
        pieces: list[tuple[str, bool]] = []
        at = system_end
        for i, message in enumerate(conv.messages):
            if message.role != "assistant":
                continue
            prompt = chat_model.render_prompt(conv.messages[:i], conv.tools)
            if not full.startswith(prompt):
                raise ValueError("the chat template renders a conversation differently from its prompts; "
                                 "cannot align the training targets")
            end = full.index(_END, len(prompt)) + len(_END)
            pieces += [(full[at:len(prompt)], False), (full[len(prompt):end], True)]
            at = end
        ids: list[int] = []
        train: list[bool] = []
        for text, learn in pieces:
            piece = tokens(text)
            ids += piece
            train += [learn] * len(piece)
        examples.append(SupervisedExample(prefix_ids=tokens(full[:system_end]), ids=ids, train=train, kind=conv.kind))
    return examples


class LoraSettings(BaseModel):
    rank: int = 8
    alpha: float = 16.0
    learning_rate: float = 2e-4
    epochs: int = 2
    batch_size: int = 8
    warmup_steps: int = 4
    seed: int = 0
    targets: tuple[str, ...] = LORA_TARGETS


def load_base_model(base: str | os.PathLike) -> Any:
    """A causal LM in float32 from a GGUF file (dequantized by transformers) or a HF folder.
    Training on the dequantized GGUF weights means the adapter fits the quantized model it will
    run with."""
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(base)
    if path.suffix == ".gguf":
        return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)


def train_lora(model: Any, examples: Sequence[SupervisedExample], settings: LoraSettings | None = None,
               log: Callable[[str], None] = print, *, shard: tuple[int, int] = (0, 1),
               sum_gradients: Callable[[list[Any]], None] | None = None,
               on_step: Callable[[float], None] | None = None) -> Any:
    """Wrap `model` with a LoRA adapter, train it on `examples`, return the peft model.

    Data-parallel use (`raygent.training.distributed`): every worker makes the same batches (same
    seed) and handles its `shard` = (rank, world size) of each; `sum_gradients` adds the trainable
    gradients up over the workers before the step. Losses are scaled by the whole batch's trained
    tokens, so the summed gradient is the one a single process computes. `on_step` gets each step's
    loss per trained token (over the whole batch)."""
    import torch
    from peft import LoraConfig, get_peft_model

    settings = settings or LoraSettings()
    torch.manual_seed(settings.seed)
    peft_model = get_peft_model(model, LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.0,
                                                  target_modules=list(settings.targets), bias="none"))
    peft_model.train()
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    rng = random.Random(settings.seed)
    batches = [batch for _ in range(settings.epochs) for batch in _batches(examples, settings.batch_size, rng)]
    total = len(batches)

    def rate(step: int) -> float:  # linear warm-up, then cosine decay to a tenth
        if step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps
        progress = (step - settings.warmup_steps) / max(1, total - settings.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    start = time.perf_counter()
    rank, world = shard
    for step, batch in enumerate(batches):
        loss_sum, n_tokens = _train_step(peft_model, batch, part=batch[rank::world])
        if sum_gradients is not None:
            for p in trainable:  # a worker whose part was empty still takes part in the sum
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            loss = torch.tensor([loss_sum])
            sum_gradients([p.grad for p in trainable] + [loss])
            loss_sum = float(loss[0])
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        loss_per_token = loss_sum / max(1, n_tokens)
        if on_step is not None:
            on_step(loss_per_token)
        log(f"step {step + 1}/{total}: loss {loss_per_token:.4f} over {n_tokens} tokens "
            f"({time.perf_counter() - start:.0f} s)")
    peft_model.eval()
    return peft_model


def _batches(examples: Sequence[SupervisedExample], size: int, rng: random.Random) -> list[list[SupervisedExample]]:
    """Shuffled batches whose examples share one system turn (its KV is computed once per batch)."""
    by_prefix: dict[tuple[int, ...], list[SupervisedExample]] = {}
    for ex in examples:
        by_prefix.setdefault(tuple(ex.prefix_ids), []).append(ex)
    batches = []
    for group in by_prefix.values():
        group = list(group)
        rng.shuffle(group)
        batches += [group[i:i + size] for i in range(0, len(group), size)]
    rng.shuffle(batches)
    return batches


def _train_step(model: Any, batch: Sequence[SupervisedExample],
                part: Sequence[SupervisedExample] | None = None) -> tuple[float, int]:
    """Accumulate the gradients of `part` of one batch (all of it by default), scaled by the whole
    batch's trained tokens; returns (summed loss of the part, trained tokens of the batch)."""
    import torch
    import torch.nn.functional as F

    part = batch if part is None else part
    n_tokens = sum(sum(ex.train[1:]) for ex in batch)
    loss_sum = 0.0
    if not part:
        return loss_sum, n_tokens
    prefix = torch.tensor([batch[0].prefix_ids])
    with torch.no_grad():  # the shared system turn, with the adapter as it is now
        shared = model(input_ids=prefix, use_cache=True).past_key_values
    for ex in part:
        ids = torch.tensor([ex.ids])
        # position j-1 predicts token j; the first token (a turn opener) is never a target
        predicting = torch.tensor([j - 1 for j in range(1, len(ex.ids)) if ex.train[j]])
        out = model(input_ids=ids, past_key_values=_copy_cache(shared), use_cache=True, logits_to_keep=predicting)
        loss = F.cross_entropy(out.logits[0].float(), ids[0, predicting + 1], reduction="sum")
        (loss / max(1, n_tokens)).backward()
        loss_sum += float(loss.detach())
    return loss_sum, n_tokens


def _copy_cache(cache: Any) -> Any:
    """A fresh cache holding the shared prefix (the model appends a conversation's keys to it)."""
    from transformers import DynamicCache

    copy = DynamicCache()
    for layer, (keys, values) in enumerate(_layers(cache)):
        copy.update(keys, values, layer)
    return copy


def _layers(cache: Any) -> list[tuple[Any, Any]]:
    if hasattr(cache, "layers"):  # transformers 5
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # transformers 4.x
