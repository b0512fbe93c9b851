"""TransformersChatModel on CPU with a tiny Qwen2 model the test builds, trains and saves itself."""

from __future__ import annotations

import asyncio
import pickle

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

import tiny_models as tm  # noqa: E402

from raygent.llm_pool.errors import BackendConfigError  # noqa: E402
from raygent.llm_pool.transformers_backend import TransformersChatModel  # noqa: E402
from raygent.schema import Message, ToolCall  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tm.build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"))


@pytest.fixture(scope="module")
def llm(model_dir):
    model = TransformersChatModel(model_dir, device="cpu", num_threads=1)
    model.load()
    return model


async def test_chat_tool_call_from_the_model(llm):
    c = await llm.chat(tm.tool_question(), [tm.WEATHER], {"max_tokens": 40})
    assert c.raw == tm.TOOL_REPLY
    assert [(t.name, t.arguments) for t in c.tool_calls] == [("weather", {"city": "Paris"})]
    assert c.finish_reason == "tool_calls" and c.text == "" and c.model == llm.model_name
    prompt_ids = llm._tokenizer(llm.render_prompt(tm.tool_question(), [tm.WEATHER]))["input_ids"]
    assert c.usage.prompt_tokens == len(prompt_ids) and c.usage.completion_tokens > 10
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens


async def test_chat_text_and_stream(llm):
    c = await llm.chat(tm.text_question(), None, {"max_tokens": 40})
    assert c.text == tm.TEXT_REPLY and c.finish_reason == "stop" and c.tool_calls == []
    deltas = [d async for d in llm.stream(tm.text_question(), None, {"max_tokens": 40})]
    assert len(deltas) > 3  # token by token, not one piece
    assert "".join(d.text for d in deltas[:-1]) == tm.TEXT_REPLY
    final = deltas[-1]
    assert final.finish_reason == "stop" and final.usage == c.usage and final.text == ""


async def test_stream_holds_back_a_tool_call(llm):
    deltas = [d async for d in llm.stream(tm.tool_question(), [tm.WEATHER], {"max_tokens": 40})]
    assert len(deltas) == 1
    assert deltas[0].tool_calls[0].arguments == {"city": "Paris"} and deltas[0].finish_reason == "tool_calls"


async def test_max_tokens_and_stop_strings(llm):
    c = await llm.chat(tm.text_question(), None, {"max_tokens": 3})
    assert c.finish_reason == "length" and c.usage.completion_tokens == 3
    assert tm.TEXT_REPLY.startswith(c.text)
    c = await llm.chat(tm.text_question(), None, {"max_tokens": 40, "stop": [" How"]})
    assert c.text == "Hello!" and c.finish_reason == "stop"
    deltas = [d async for d in llm.stream(tm.text_question(), None, {"max_tokens": 40, "stop": [" How"]})]
    assert "".join(d.text for d in deltas) == "Hello!"  # no piece of the stop string leaks out


def test_chat_template_renders_tools_and_tool_history(llm):
    history = [Message.user(tm.TOOL_QUESTION),
               Message.assistant(tool_calls=[ToolCall(id="c1", name="weather", arguments={"city": "Paris"})]),
               Message(role="tool", tool_call_id="c1", name="weather", content='{"temp_c": 18}')]
    prompt = llm.render_prompt(history, [tm.WEATHER])
    assert '"name": "weather"' in prompt and "<tools>" in prompt  # the template's own tools section
    assert tm.TOOL_REPLY in prompt  # the call, written by the template from the structured message
    assert '<tool_response>\n{"temp_c": 18}\n</tool_response>' in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "<tools>" not in llm.render_prompt(history, [tm.WEATHER], tool_choice="none")


def test_text_format_renders_tools_when_not_using_the_template(model_dir):
    llm = TransformersChatModel(model_dir, device="cpu", num_threads=1, format="react")
    prompt = llm.render_prompt(tm.tool_question(), [tm.WEATHER])
    assert "<tools>" not in prompt and "weather" in prompt and "Action" in prompt


async def test_concurrent_requests_share_one_generate(model_dir):
    llm = TransformersChatModel(model_dir, device="cpu", num_threads=1, batch_wait_ms=300)
    llm.load()
    tool, text = await asyncio.gather(llm.chat(tm.tool_question(), [tm.WEATHER], {"max_tokens": 40}),
                                      llm.chat(tm.text_question(), None, {"max_tokens": 40}))
    assert llm.stats.generate_calls == 1 and llm.stats.batch_sizes == [2]
    # left padding keeps each row's greedy output identical to running it alone
    assert tool.raw == tm.TOOL_REPLY and tool.tool_calls[0].arguments == {"city": "Paris"}
    assert text.text == tm.TEXT_REPLY and text.finish_reason == "stop"
    assert text.usage.prompt_tokens < tool.usage.prompt_tokens  # each row counts its own, unpadded prompt
    # a streamed and a whole request batch together too
    streamed, whole = await asyncio.gather(_collect(llm.stream(tm.text_question(), None, {"max_tokens": 40})),
                                           llm.chat(tm.tool_question(), [tm.WEATHER], {"max_tokens": 40}))
    assert llm.stats.batch_sizes == [2, 2]
    assert "".join(d.text for d in streamed) == tm.TEXT_REPLY and whole.tool_calls


async def test_requests_trickling_in_join_one_batch_until_a_quiet_gap_or_the_cap(model_dir):
    """Requests reaching a Serve replica arrive a few ms apart: the batch stays open while they keep
    coming (no arrival for batch_wait_ms closes it), up to batch_wait_max_ms. A single fixed wait
    split such a burst into two generates (2x the time for 32 pooled requests on an H100).

    Gaps are set as ratios of the quiet window, with room for a slow or busy machine: arrivals
    10x closer than the window must join, a pause 6x longer must split, and a capped burst spans
    2x the cap."""
    wait_ms = 100
    llm = TransformersChatModel(model_dir, device="cpu", num_threads=1, max_batch_size=8, batch_wait_ms=wait_ms,
                                batch_wait_max_ms=5000)

    async def late(i: int, gap_s: float):
        await asyncio.sleep(i * gap_s)
        return await llm.chat(tm.text_question(), None, {"max_tokens": 3})

    llm.load()
    await asyncio.gather(*(late(i, wait_ms / 10 / 1000) for i in range(6)))  # 10 ms apart, 50 ms in all
    assert llm.stats.batch_sizes == [6]  # a window that closed after the first arrival would have split them
    await asyncio.gather(*(late(i, 6 * wait_ms / 1000) for i in range(2)))  # a 600 ms pause: two batches
    assert llm.stats.batch_sizes[1:] == [1, 1]
    capped = TransformersChatModel(model_dir, device="cpu", num_threads=1, max_batch_size=8, batch_wait_ms=wait_ms,
                                   batch_wait_max_ms=0)  # the cap: one batch_wait_ms, as before
    capped.load()
    llm = capped
    # 40 ms apart (the quiet-gap rule alone would keep the batch open), 200 ms from first to last: the cap splits
    await asyncio.gather(*(late(i, 0.4 * wait_ms / 1000) for i in range(6)))
    assert len(capped.stats.batch_sizes) >= 2 and sum(capped.stats.batch_sizes) == 6


async def test_different_sampling_settings_are_not_mixed(model_dir):
    llm = TransformersChatModel(model_dir, device="cpu", num_threads=1, batch_wait_ms=300)
    llm.load()
    a, b = await asyncio.gather(llm.chat(tm.text_question(), None, {"max_tokens": 5}),
                                llm.chat(tm.text_question(), None, {"max_tokens": 5, "temperature": 0.7, "seed": 1}))
    assert sorted(llm.stats.batch_sizes) == [1, 1] and a.usage.completion_tokens == 5


async def _collect(stream):
    return [d async for d in stream]


def test_pickles_without_weights(llm):
    clone = pickle.loads(pickle.dumps(llm))
    assert clone._model is None and clone.model_path == llm.model_path and clone.format.name == "hermes"


def test_missing_folder_and_missing_template(tmp_path, model_dir):
    with pytest.raises(BackendConfigError, match="model folder not found"):
        TransformersChatModel(tmp_path / "nope" / "model").load()
    import json
    import shutil

    broken = tmp_path / "no-template"
    shutil.copytree(model_dir, broken)
    cfg = json.loads((broken / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (broken / "tokenizer_config.json").write_text(json.dumps(cfg))
    (broken / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(BackendConfigError, match="no chat template"):
        TransformersChatModel(broken).load()


async def test_gguf_file_loads_through_transformers(model_dir, tmp_path):
    """gguf_file=: the tiny model written as a GGUF (qwen2 layout) is dequantized by transformers and
    answers exactly as the original weights do."""
    pytest.importorskip("gguf")
    gguf_path = tm.write_gguf(model_dir, tmp_path / "gguf" / "tiny-qwen-f32.gguf")
    llm = TransformersChatModel(gguf_path.parent, gguf_file=gguf_path.name, device="cpu", num_threads=1)
    c = await llm.chat(tm.tool_question(), [tm.WEATHER], {"max_tokens": 40})
    assert c.raw == tm.TOOL_REPLY and c.tool_calls[0].arguments == {"city": "Paris"}
    assert llm.model_name == "tiny-qwen-f32"
    # a full path to the file works too, and the chat template came from the GGUF's metadata
    by_path = TransformersChatModel(str(gguf_path), device="cpu", num_threads=1)
    assert (by_path.model_path, by_path.gguf_file) == (str(gguf_path.parent), gguf_path.name)
    assert (await by_path.chat(tm.text_question(), None, {"max_tokens": 40})).text == tm.TEXT_REPLY
    assert by_path.render_prompt(tm.tool_question(), [tm.WEATHER]) == TransformersChatModel(
        model_dir).render_prompt(tm.tool_question(), [tm.WEATHER])


@pytest.mark.ray
async def test_as_a_ray_actor_batches_concurrent_calls(model_dir, ray_cluster):
    from raygent import runtime

    llm = runtime.deploy(TransformersChatModel, str(model_dir), remote=True,
                         init_kwargs={"device": "cpu", "batch_wait_ms": 300, "num_threads": 1})
    try:
        tool, text = await asyncio.gather(llm.chat(tm.tool_question(), [tm.WEATHER], {"max_tokens": 40}),
                                          llm.chat(tm.text_question(), None, {"max_tokens": 40}))
        assert tool.tool_calls[0].arguments == {"city": "Paris"} and text.text == tm.TEXT_REPLY
        stats = await llm.get_stats()
        assert stats.batch_sizes == [2]  # the two actor calls met in one generate inside the actor
        deltas = [d async for d in llm.stream(tm.text_question(), None, {"max_tokens": 40})]
        assert "".join(d.text for d in deltas) == tm.TEXT_REPLY
    finally:
        runtime.kill(llm)


async def test_tokenizer_without_pad_token_still_batches(model_dir, monkeypatch):
    """Tokenizers with no pad token (Qwen 1.x, Llama) pad with an end-of-sequence token instead."""
    import transformers

    original = transformers.AutoTokenizer.from_pretrained

    def without_pad(*args, **kwargs):
        tok = original(*args, **kwargs)
        tok.pad_token = None
        return tok

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", without_pad)
    llm = TransformersChatModel(model_dir, device="cpu", num_threads=1, batch_wait_ms=300)
    llm.load()
    assert llm._tokenizer.pad_token_id is None and llm._pad_id == llm._tokenizer.eos_token_id
    tool, text = await asyncio.gather(llm.chat(tm.tool_question(), [tm.WEATHER], {"max_tokens": 40}),
                                      llm.chat(tm.text_question(), None, {"max_tokens": 40}))
    assert llm.stats.batch_sizes == [2] and tool.tool_calls and text.text == tm.TEXT_REPLY
