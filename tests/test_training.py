"""Fine-tuning pipeline: chained tool-use conversations, their tokenization, LoRA training and the
export to a llama.cpp adapter (checked by loading it into the embedded model)."""

from __future__ import annotations

import json
import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from raygent.training.chains import write_conversations  # noqa: E402
from raygent.training.sft import LoraSettings, SupervisedExample, render_examples, train_lora  # noqa: E402


def _calls(conv):
    return [c for m in conv.messages if m.role == "assistant" for c in (m.tool_calls or [])]


def test_chained_conversations_use_real_results_and_are_reproducible():
    conversations = write_conversations(40, seed=3)
    again = write_conversations(40, seed=3)
    assert [c.messages[0].content for c in conversations] == [c.messages[0].content for c in again]
    kinds = {c.kind for c in conversations}
    assert {"chain2", "single"} <= kinds
    for conv in conversations:
        calls = _calls(conv)
        results = [m.content for m in conv.messages if m.role == "tool"]
        assert len(calls) == len(results) == {"chain3": 3, "chain2": 2, "single": 1, "chat": 0}[conv.kind]
        assert conv.messages[-1].role == "assistant" and conv.messages[-1].content  # ends with the answer
        offered = {t.name for t in conv.tools}
        assert {c.name for c in calls} <= offered
        for first, second, result in zip(calls, calls[1:], results):
            if first.name == second.name == "calculator":  # the second expression starts from the first result
                value = json.loads(result)["result"]
                number = str(int(value)) if float(value).is_integer() else f"{value:g}"
                assert second.arguments["expression"].startswith(number)
        for call, result in zip(calls, results):
            if call.name == "calculator":  # computed by the real calculator, not written by the template
                assert json.loads(result)["expression"] == call.arguments["expression"]
            if call.name == "text_to_speech":  # really synthesized
                assert json.loads(result)["audio"].endswith(".wav")


def test_benchmark_requests_are_held_out():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "multi_step.py"
    spec = importlib.util.spec_from_file_location("multi_step_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    held_out = {case[0] for case in bench.TWO_STEP + bench.SINGLE_STEP}
    written = {c.messages[0].content for c in write_conversations(300, seed=7)}
    assert not held_out & written


def test_examples_train_exactly_the_assistant_turns(embedded_llm):
    conversations = write_conversations(12, seed=5)
    examples = render_examples(conversations, embedded_llm)
    llama = embedded_llm.load()
    for conv, ex in zip(conversations, examples):
        assert len(ex.ids) == len(ex.train)
        system = llama.detokenize(ex.prefix_ids, special=True).decode()
        assert system.startswith("<|im_start|>system") and system.endswith("<|im_end|>\n")
        # the trained spans, decoded, are the assistant turns as inference renders them
        spans, current = [], []
        for token, learn in zip(ex.ids, ex.train):
            if learn:
                current.append(token)
            elif current:
                spans.append(current)
                current = []
        if current:
            spans.append(current)
        texts = [llama.detokenize(span, special=True).decode() for span in spans]
        assistant = [m for m in conv.messages if m.role == "assistant"]
        assert len(texts) == len(assistant)
        for text, message in zip(texts, assistant):
            assert text.endswith("<|im_end|>")
            if message.tool_calls:
                call = json.loads(re.search(r"<tool_call>\n(.*)\n</tool_call>", text, re.S).group(1))
                assert call == {"name": message.tool_calls[0].name, "arguments": message.tool_calls[0].arguments}
            else:
                assert text == message.content + "<|im_end|>"
        # the untrained rest holds the user request and the tool results
        context = llama.detokenize([t for t, learn in zip(ex.ids, ex.train) if not learn], special=True).decode()
        assert conv.messages[0].content in context


def _tiny_qwen2(hidden: int = 32, intermediate: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                vocab: int = 512):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=512, initializer_range=0.3)
    return Qwen2ForCausalLM(config)


def test_lora_training_lowers_the_loss_and_changes_only_the_adapter():
    prefix = list(range(1, 40))
    examples = [SupervisedExample(prefix_ids=prefix, ids=[50 + i, 60, 61, 62, 63, 64 + i],
                                  train=[False, True, True, True, True, True]) for i in range(4)]
    model = _tiny_qwen2()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    losses = []
    trained = train_lora(model, examples, LoraSettings(rank=8, alpha=16, learning_rate=3e-2, epochs=12, batch_size=4,
                                                       warmup_steps=1),
                         log=lambda line: losses.append(float(line.split("loss ")[1].split()[0])))
    assert len(losses) == 12 and losses[-1] < 0.5 * losses[0]  # it learnt the targets
    merged = trained.merge_and_unload()
    changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, base[k])]
    assert changed and all(re.search(r"(q|k|v|o|gate|up|down)_proj\.weight$", k) for k in changed)


@pytest.mark.ray
def test_two_ray_train_workers_train_the_same_adapter_as_one_process(tmp_path, ray_cluster):
    """Data-parallel training on Ray Train: each worker takes half of every batch and the LoRA
    gradients are summed over the workers, so 2 workers take the steps 1 process takes."""
    from peft import get_peft_model_state_dict

    from raygent.training.distributed import train_lora_on_ray
    from raygent.training.sft import load_base_model

    _tiny_qwen2().save_pretrained(tmp_path / "tiny")  # the workers load it from disk, as a real base
    prefix = list(range(1, 40))
    examples = [SupervisedExample(prefix_ids=prefix, ids=[50 + i, 60, 61 + i % 3, 62, 63, 64 + i],
                                  train=[False, True, True, True, True, True]) for i in range(10)]
    settings = LoraSettings(rank=8, alpha=16, learning_rate=3e-2, epochs=3, batch_size=4, warmup_steps=1)
    alone_losses: list[float] = []
    alone = train_lora(load_base_model(tmp_path / "tiny"), examples, settings, log=lambda line: None,
                       on_step=alone_losses.append)
    pair = train_lora_on_ray(tmp_path / "tiny", examples, settings, workers=2, cpus_per_worker=1,
                             storage_path=tmp_path / "runs", log=lambda line: None)
    assert pair.workers == 2 and len(pair.losses) == 9  # 3 batches (4 + 4 + 2) x 3 epochs
    assert pair.losses == pytest.approx(alone_losses, rel=1e-3)
    assert pair.losses[-1] < 0.6 * pair.losses[0]
    a, b = get_peft_model_state_dict(alone), get_peft_model_state_dict(pair.model)
    assert sorted(a) == sorted(b)
    biggest = max(float(v.abs().max()) for v in a.values())
    assert biggest > 0.05  # the adapter moved ...
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4  # ... and both moved it alike


def test_distributed_training_rejects_zero_workers(tmp_path):
    from raygent.training.distributed import train_lora_on_ray

    with pytest.raises(ValueError, match="workers must be at least 1"):
        train_lora_on_ray(tmp_path, [], workers=0)


def test_exported_adapter_loads_into_the_embedded_model(tmp_path, embedded_llm):
    """An adapter shaped for the 0.5B model (its widths, two of its layers) goes through the exporter
    and into llama.cpp, which checks every tensor's name and shape against the model: with B = 0 the
    answers are the base model's own, with B random they change."""
    from peft import LoraConfig, get_peft_model

    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.schema import GenerationParams, Message
    from raygent.training.gguf_lora import export_lora_gguf

    shaped = _tiny_qwen2(hidden=896, intermediate=4864, layers=2, heads=14, kv_heads=2, vocab=64)
    shaped.config.model_type = "qwen2"
    peft_model = get_peft_model(shaped, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                     "o_proj", "gate_proj", "up_proj",
                                                                                     "down_proj"]))
    zero = export_lora_gguf(peft_model, tmp_path / "zero.gguf")  # peft starts with B = 0
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    loud = export_lora_gguf(peft_model, tmp_path / "loud.gguf")

    import gguf

    reader = gguf.GGUFReader(str(loud))
    names = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}
    assert names["blk.0.attn_k.weight.lora_a"] == (896, 4)  # ne: (in, rank)
    assert names["blk.0.attn_k.weight.lora_b"] == (4, 128)  # ne: (rank, out)
    assert len(names) == 2 * 7 * 2

    question = [Message.user("Name three primary colours.")]
    params = GenerationParams(max_tokens=12, temperature=0.0)

    async def answer(llm):
        return (await llm.chat(question, None, params)).text

    import asyncio

    base = asyncio.run(answer(LlamaCppChatModel(lora=None)))
    with_zero = LlamaCppChatModel(lora=zero)
    assert with_zero.model_name == "qwen2.5-coder-0.5b-instruct+zero"
    assert asyncio.run(answer(with_zero)) == base
    assert asyncio.run(answer(LlamaCppChatModel(lora=loud))) != base


def test_unknown_or_mismatched_adapter_is_a_clear_error(tmp_path):
    from raygent.llm_pool.embedded import EmbeddedModelError, resolve_adapter_path

    with pytest.raises(EmbeddedModelError, match="neither an existing GGUF adapter file nor a shipped adapter"):
        resolve_adapter_path(tmp_path / "nope.gguf", "qwen2.5-coder-0.5b-instruct")
    with pytest.raises(EmbeddedModelError, match="was trained for 'qwen2.5-coder-0.5b-instruct' and does not fit"):
        resolve_adapter_path("multistep", "qwen2.5-coder-1.5b-instruct")


@pytest.mark.parametrize("request_text, field", [
    ("Parse the address 浙江杭州市江干区九堡镇三村村一区, then read the district name aloud with text to speech.",
     "district"),
    ("识别这个地址的城市：浙江杭州市江干区九堡镇三村村一区，然后用语音读出城市名。", "city"),
])
def test_shipped_multistep_adapter_chains_a_second_tool_on_the_first_result(embedded_llm, request_text, field):
    """The embedded 0.5B alone parses the address and stops (benchmarks/multi_step.py: 0 of 8 chained);
    with the shipped adapter (the default) it passes the district or city it found to the speech tool."""
    import asyncio

    from raygent import Agent
    from raygent.toolhub.builtin import BUILTIN_TOOLS

    assert embedded_llm.lora == "multistep"
    tools = [BUILTIN_TOOLS[name]() for name in ("address_parse", "calculator", "current_datetime", "text_to_speech")]
    result = asyncio.run(Agent(llm=embedded_llm, tools=tools).run(request_text))
    assert [c.name for c in result.tool_calls] == ["address_parse", "text_to_speech"]
    parsed = result.tool_calls[0].result
    assert result.tool_calls[1].arguments["text"] == parsed[field] and parsed[field] in ("江干区", "杭州市")
    assert result.artifacts and result.artifacts[0].mime_type == "audio/wav"
    assert result.model == "qwen2.5-coder-0.5b-instruct+multistep"
