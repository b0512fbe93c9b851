"""The embedded default model (Qwen2.5-Coder-0.5B-Instruct GGUF on llama.cpp), for real.

Decoding is greedy (temperature 0, fixed seed), so a run is reproducible on one build from the same
cache state. Across cache states (a prompt read on top of a cached or restored prefix vs. read whole)
llama.cpp's logits differ in the last bits, so free wording may differ: the tests compare tool calls
exactly and check the facts in an answer, never its exact text (docs/architecture.md, "What is
deterministic"). Nothing depends on today's date: the clock tool is pinned where a run reads it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from raygent import Agent
from raygent.llm_pool import embedded
from raygent.llm_pool.embedded import EmbeddedModelError, ensure_embedded_model, resolve_model_path
from raygent.schema import GenerationParams, Message, ToolSpec
from raygent.toolhub.builtin import default_tools
from raygent.toolhub.builtin.clock import CurrentDatetimeTool

pytestmark = pytest.mark.model

SEED_TASK = "使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区"


def test_assembled_model_is_cached_and_verified(tmp_path):
    path = ensure_embedded_model(cache_dir=tmp_path)
    assert path.name == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" and path.stat().st_size > 300_000_000
    assert path.with_suffix(".sha256").read_text() == embedded.EMBEDDED_MODELS[embedded.DEFAULT_MODEL].sha256
    mtime = path.stat().st_mtime
    assert ensure_embedded_model(cache_dir=tmp_path) == path and path.stat().st_mtime == mtime  # not rebuilt


def test_corrupt_chunk_is_refused_with_a_reinstall_hint(tmp_path, monkeypatch):
    chunk = tmp_path / "part01.bin"
    chunk.write_bytes(b"not a model")
    monkeypatch.setattr(embedded, "_chunk_files", lambda model: [chunk])
    with pytest.raises(EmbeddedModelError, match="a chunk package is corrupt. Reinstall: pip install --force-reinstall"):
        ensure_embedded_model(cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "models").glob("*.gguf"))  # nothing half-written is left behind


def test_missing_chunk_package_names_the_install_command(monkeypatch):
    model = embedded.EMBEDDED_MODELS[embedded.DEFAULT_MODEL]
    broken = embedded.EmbeddedModel(model.name, model.filename, ("raygent_no_such_part1",), model.sha256, "llama")
    with pytest.raises(EmbeddedModelError, match=r"'raygent_no_such_part1' is not installed. Install it with: pip"):
        embedded._chunk_files(broken)


def test_unknown_model_path_is_a_clear_error():
    with pytest.raises(EmbeddedModelError, match="neither an existing GGUF file nor an embedded model"):
        resolve_model_path("/nowhere/model.gguf")


async def test_seed_single_step_example(embedded_llm):
    result = await Agent(llm=embedded_llm, tools=default_tools()).run(SEED_TASK)
    assert result.stop_reason == "answer"
    call = result.tool_calls[0]
    assert call.name == "address_parse" and call.error is None
    assert {"province": "浙江省", "city": "杭州市", "district": "江干区"}.items() <= call.result.items()
    for element in ("浙江省", "杭州市", "江干区", "九堡镇"):
        assert element in result.answer
    assert result.model == "qwen2.5-coder-0.5b-instruct+multistep"  # the shipped adapter applies by default


async def test_chit_chat_gets_an_answer_and_arithmetic_a_call(embedded_llm):
    """The call bias follows how well the tools fit: a joke is answered without a tool (it used to
    call the calculator and answer "Two times two is four"), while arithmetic and the date still
    call theirs."""
    tools = default_tools()
    for chat in ("Tell me a joke about cats.", "What is the capital of France?", "Thanks, that's all!"):
        result = await Agent(llm=embedded_llm, tools=tools).run(chat)
        assert result.tool_calls == [] and result.answer.strip(), (chat, result)
    for request, tool in (("What is 365*24?", "calculator"), ("What day of the week is it today?",
                                                               "current_datetime")):
        result = await Agent(llm=embedded_llm, tools=tools).run(request)
        assert [c.name for c in result.tool_calls][:1] == [tool], (request, result.tool_calls)
        if tool == "calculator":
            assert result.tool_calls[0].result["result"] == 8760


async def test_multi_turn_follow_up_refers_to_previous_turn(embedded_llm):
    agent = Agent(llm=embedded_llm, tools=default_tools())
    first = await agent.run("What is 120/8?")
    assert first.tool_calls[0].result["result"] == 15
    follow_up = await agent.run("Now add 5 to that result.")
    assert [c.name for c in follow_up.tool_calls] == ["calculator"]
    assert follow_up.tool_calls[0].result["result"] == 20 and "20" in follow_up.answer


async def test_tool_choice_required_named_and_none(embedded_llm):
    tools = [t.spec for t in default_tools()]
    hello = [Message.user("Hello there!")]
    required = await embedded_llm.chat(hello, tools, GenerationParams(tool_choice="required"))
    assert len(required.tool_calls) == 1 and required.finish_reason == "tool_calls"
    named = await embedded_llm.chat([Message.user("What is 6 times 7?")], tools,
                                    GenerationParams(tool_choice="calculator"))
    assert named.tool_calls[0].name == "calculator" and "6" in named.tool_calls[0].arguments["expression"]
    none = await embedded_llm.chat([Message.user("What is 6 times 7?")], tools, GenerationParams(tool_choice="none"))
    assert none.tool_calls == [] and none.text


async def test_unchanged_prefix_reuses_the_kv_cache(embedded_llm):
    tools = [t.spec for t in default_tools()]
    first = await embedded_llm.chat([Message.user("What is 2+2?")], tools)
    second = await embedded_llm.chat([Message.user("What is 3+3?")], tools)
    # system prompt, tool section and exemplars are shared: only the new user turn is evaluated
    assert second.usage.cached_prompt_tokens >= second.usage.prompt_tokens - 20
    assert first.usage.prompt_tokens > 500


async def test_streamed_answer_matches_the_final_answer(embedded_llm):
    agent = Agent(llm=embedded_llm, tools=default_tools())
    events = [e async for e in agent.stream("What is 23*47+12?")]
    types = [e.type for e in events]
    assert types[:2] == ["tool_call", "tool_result"] and types[-1] == "done"
    streamed = "".join(e.text for e in events if e.type == "answer_delta")
    assert streamed.strip() == events[-1].result.answer and "1093" in streamed


async def test_context_overflow_is_a_clear_error_event(embedded_llm):
    events = [e async for e in Agent(llm=embedded_llm).stream("word " * 5000)]
    assert events[0].type == "error" and "exceeds the context window n_ctx=4096" in events[0].text


async def test_multi_step_second_call_uses_first_result(embedded_llm):
    # the embedded default: the 0.5B with its shipped `multistep` adapter (without it the 0.5B
    # answers after the first result; benchmarks/multi_step.py: 0 of 8 chained, 8 of 8 with it)
    agent = Agent(llm=embedded_llm, tools=default_tools())
    result = await agent.run("First call the calculator for 17*23. After it returns, call the calculator again "
                             "to multiply that result by 3.")
    assert [c.name for c in result.tool_calls] == ["calculator", "calculator"]
    first, second = result.tool_calls
    assert first.result["result"] == 391
    assert "391" in second.arguments["expression"] and second.result["result"] == 1173
    assert "1173" in result.answer and result.steps == 3


class _ClockAt(CurrentDatetimeTool):
    """current_datetime stopped at one moment (same name, description and schema as the real one):
    the greedy run then sees the same tool result on every day, and in every year."""

    async def call(self, timezone: str | None = None) -> dict[str, str]:
        return {"iso": "2026-12-02T10:30:00+00:00", "date": "2026-12-02", "time": "10:30:00",
                "weekday": "Wednesday", "weekday_zh": "星期三", "timezone": "UTC"}


async def test_multi_step_date_then_age(embedded_llm):
    """The second call computes with a value only the first call knows (the year the clock gives)."""
    tools = [_ClockAt() if t.name == "current_datetime" else t for t in default_tools()]
    result = await Agent(llm=embedded_llm, tools=tools).run(
        "Find out the current year, then calculate how old someone born in 1990 is.")
    assert [c.name for c in result.tool_calls] == ["current_datetime", "calculator"]
    year = int(result.tool_calls[0].result["date"][:4])
    assert year == 2026 and str(year) in result.tool_calls[1].arguments["expression"]
    assert result.tool_calls[1].result["result"] == year - 1990 and str(year - 1990) in result.answer


def test_default_adapter_applies_to_the_embedded_0_5b_only(tmp_path):
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    assert LlamaCppChatModel().lora == "multistep"
    assert LlamaCppChatModel(lora=None).lora is None and LlamaCppChatModel(lora="none").lora is None
    assert LlamaCppChatModel(lora=None).model_name == "qwen2.5-coder-0.5b-instruct"
    # another model (the 1.5B, any GGUF path) has no default adapter: "auto" means none
    assert LlamaCppChatModel("qwen2.5-coder-1.5b-instruct").lora is None
    assert LlamaCppChatModel(tmp_path / "other.gguf").lora is None


def test_call_opening_tokens_include_qwens_tool_call_token(embedded_llm):
    """The bias towards opening a call covers '<' and Qwen's single `<tool_call>` token (which the
    fine-tuned adapter writes; without it the adapter opened calls with a stray token)."""
    llama = embedded_llm.load()
    char, tag = embedded_llm._call_start_tokens()
    assert llama.detokenize([char]) == b"<" and llama.detokenize([tag]) == b"<tool_call>"
    after_user = embedded_llm._first_token_bias([Message.user("hi")])
    assert after_user == {char: embedded_llm.call_bias, tag: embedded_llm.call_bias}
    after_tool = embedded_llm._first_token_bias([Message.user("hi"), Message(role="tool", content="1")])
    assert after_tool == {tag: embedded_llm.open_tag_bias}  # a chained call can open after a result


@pytest.fixture(scope="module")
def embedded_llm_1_5b():
    """The larger embedded option (Qwen2.5-Coder-1.5B-Instruct, extra `llama-1_5b`), chosen by name."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    llm = LlamaCppChatModel("qwen2.5-coder-1.5b-instruct")
    llm.load()
    return llm


async def test_larger_embedded_option_answers_the_seed_example(embedded_llm_1_5b):
    result = await Agent(llm=embedded_llm_1_5b, tools=default_tools()).run(SEED_TASK)
    call = result.tool_calls[0]
    assert call.name == "address_parse" and call.result["district"] == "江干区"
    assert "江干区" in result.answer and result.model == "qwen2.5-coder-1.5b-instruct"


async def test_session_cache_restores_an_interleaved_conversation():
    """With session_cache, a conversation that another one interrupted gets its own KV state back
    (its long first message is not evaluated again); the reply makes the same calls and states the
    same result as without (its wording may differ: restored KV state vs. a fresh evaluation)."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    tools = [t.spec for t in default_tools()]
    story = "Here are my notes: " + " ".join(f"item {i} is a number in the list." for i in range(40))
    first = [Message.user(story + " What is 17*23?")]
    replies = {}
    for slots in (0, 4):
        llm = LlamaCppChatModel(session_cache=slots, n_ctx=2048)
        a = await llm.chat(first, tools)
        await llm.chat([Message.user("Parse this address: 浙江杭州市江干区九堡镇三村村一区")], tools)
        follow = first + [Message.assistant(None, tool_calls=a.tool_calls),
                          Message(role="tool", content='{"result": 391}', tool_call_id=a.tool_calls[0].id,
                                  name="calculator")]
        replies[slots] = await llm.chat(follow, tools)
    without, with_cache = replies[0].usage, replies[4].usage
    assert with_cache.cached_prompt_tokens >= without.cached_prompt_tokens + 300, (without, with_cache)
    without_reply, with_reply = replies[0], replies[4]
    assert [(c.name, c.arguments) for c in with_reply.tool_calls] == [
        (c.name, c.arguments) for c in without_reply.tool_calls] == []  # both answer from the result
    assert "391" in without_reply.text and "391" in with_reply.text, (without_reply.text, with_reply.text)


async def test_session_cache_restores_even_a_small_gain():
    """Two conversations that share a long prefix (system, tools, "What is ") and interleave: the
    second step of each restores its own state although it beats the other's live cache by only
    the ~11 tokens of its question (a restore costs ~12 ms, evaluating those tokens ~0.3 s)."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    tools = [t.spec for t in default_tools()]
    llm = LlamaCppChatModel(session_cache=4, n_ctx=2048)
    openings = [[Message.user("What is 17*23?")], [Message.user("What is 99*99?")]]
    firsts = [await llm.chat(m, tools) for m in openings]  # the live cache now holds the second
    follow = openings[0] + [Message.assistant(None, tool_calls=firsts[0].tool_calls),
                            Message(role="tool", content='{"result": 391}', tool_call_id=firsts[0].tool_calls[0].id,
                                    name="calculator")]
    second = await llm.chat(follow, tools)
    assert second.usage.cached_prompt_tokens >= firsts[0].usage.prompt_tokens, (firsts[0].usage, second.usage)


def test_prompt_evaluation_uses_the_threads_it_is_given():
    """`n_threads=1` (one replica per core) must mean one thread for prompts too: llama-cpp-python
    would otherwise evaluate prompts on every core, and replicas spin against each other."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    one = LlamaCppChatModel(n_threads=1, n_ctx=512).load()
    assert (one.n_threads, one.n_threads_batch) == (1, 1)
    explicit = LlamaCppChatModel(n_threads=1, n_ctx=512, n_threads_batch=2).load()
    assert explicit.n_threads_batch == 2


async def test_a_made_up_call_gives_way_to_a_plain_answer(embedded_llm, monkeypatch):
    """With the old fixed call bias the model calls the calculator for a joke with an expression it
    made up ("2*2"); `answer_invented` (default) sees that no value of the call is in the conversation
    and asks the model again for a plain answer, in `chat` and in `stream`."""
    from raygent.llm_pool.call_filter import invented_call

    monkeypatch.setattr(embedded_llm, "_relevance", None)  # the fixed bias of 8 after a user message
    tools = [t.spec for t in default_tools()]
    joke = [Message.user("Tell me a joke about cats.")]
    monkeypatch.setattr(embedded_llm, "answer_invented", False)
    kept = await embedded_llm.chat(joke, tools)
    assert [c.name for c in kept.tool_calls] == ["calculator"]
    calculator = next(t for t in tools if t.name == "calculator")
    assert invented_call(kept.tool_calls[0], calculator.parameters, joke)
    monkeypatch.setattr(embedded_llm, "answer_invented", True)
    answered = await embedded_llm.chat(joke, tools)
    assert answered.tool_calls == [] and answered.finish_reason == "stop"
    # a joke in plain words (asked again without tools: not a stray token and the call as text)
    assert answered.text.strip()[:1].isalpha() and "{" not in answered.text and "Pods" not in answered.text
    assert answered.usage.completion_tokens > kept.usage.completion_tokens  # both generations counted
    deltas = [d async for d in embedded_llm.stream(joke, tools)]
    assert not any(d.tool_calls for d in deltas) and "".join(d.text for d in deltas) == answered.text
    # a call with the user's own values is kept
    sums = await embedded_llm.chat([Message.user("What is 365*24?")], tools)
    assert [c.name for c in sums.tool_calls] == ["calculator"]


async def test_the_next_call_bias_decides_whether_a_reply_goes_on_after_its_first_call(embedded_llm, monkeypatch):
    """`next_call_bias` is a logit bias on the newline that opens another call after a closed one:
    pushed far up the model writes further calls (which the call filter drops here, as repeats or
    made-up calls), pushed far down it stops after the first; the kept call is the same."""
    tools = [t.spec for t in default_tools()]
    ask = [Message.user("What is 365*24?")]
    replies = {}
    for bias in (-30.0, 30.0):
        monkeypatch.setattr(embedded_llm, "next_call_bias", bias)
        replies[bias] = await embedded_llm.chat(ask, tools)
    assert replies[-30.0].raw.count("<tool_call>") == 1
    assert replies[30.0].raw.count("<tool_call>") >= 2
    for reply in replies.values():
        assert [(c.name, c.arguments) for c in reply.tool_calls] == [("calculator", {"expression": "365*24"})]


async def test_an_option_the_request_states_reaches_the_call(embedded_llm):
    """The 0.5B leaves optional arguments out even where the request states them; `fill_options`
    (default) adds the enum member the request names."""
    weather = ToolSpec(name="get_current_weather", description="Current weather at a place", parameters={
        "type": "object", "required": ["location"],
        "properties": {"location": {"type": "string", "description": "city and state, e.g. Boston, MA"},
                       "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}})
    ask = [Message.user("What's the weather like in Mariposa, CA? Give me the temperature in Celsius.")]
    reply = await embedded_llm.chat(ask, [weather])
    assert [c.name for c in reply.tool_calls] == ["get_current_weather"]
    assert reply.tool_calls[0].arguments.get("unit") == "celsius"


async def _lookup_order(order_id: str) -> dict:
    """Look up a shop order: the customer who placed it, its total and currency, and the item SKU.

    Args:
        order_id: the order number, e.g. Z-9001
    """
    orders = {"A-1042": {"customer_id": "C-311", "total": 86.5, "currency": "USD", "item_sku": "SKU-7781",
                         "tracking_no": "TRK-55120"}}
    if order_id not in orders:
        raise KeyError(f"no order {order_id!r}")
    return {"order_id": order_id, **orders[order_id]}


async def _customer_profile(customer_id: str) -> dict:
    """A customer's profile: name, email address, home city and loyalty tier.

    Args:
        customer_id: the customer id, e.g. C-900
    """
    customers = {"C-311": {"name": "Maria Keller", "email": "maria.keller@example.com", "city": "Lisbon"}}
    if customer_id not in customers:
        raise KeyError(f"no customer {customer_id!r}")
    return {"customer_id": customer_id, **customers[customer_id]}


async def _mail_message(to: str, subject: str, body: str = "") -> dict:
    """Send an email message to an address.

    Args:
        to: the recipient's email address
        subject: the subject line
        body: the message text
    """
    return {"sent": True, "to": to}


async def _track_package(tracking_no: str) -> dict:
    """Where a parcel is now: its status and current city.

    Args:
        tracking_no: the tracking number, e.g. TRK-00001
    """
    parcels = {"TRK-55120": {"status": "in transit", "current_city": "Leipzig"}}
    if tracking_no not in parcels:
        raise KeyError(f"no parcel {tracking_no!r}")
    return {"tracking_no": tracking_no, **parcels[tracking_no]}


def _shop_tools(*extra) -> list:
    from raygent.toolhub.base import FunctionTool

    return [FunctionTool(fn, name=fn.__name__.lstrip("_"), idempotent=True)
            for fn in (_lookup_order, _customer_profile, _mail_message, *extra)]


async def test_after_a_result_the_model_goes_on_to_the_call_the_request_still_needs(embedded_llm, monkeypatch):
    """The 0.5B answers after the order's lookup with a made-up email; `continue_chains` (default)
    asks it for a call first and keeps `customer_profile` with the id the order returned, then lets
    it answer once the profile gave the email (the probe's further call is no next step)."""
    monkeypatch.setattr(embedded_llm, "continue_chains", True)
    result = await Agent(llm=embedded_llm, tools=_shop_tools()).run(
        "Who placed order A-1042? I need their email address.")
    assert [(c.name, c.arguments) for c in result.tool_calls][:2] == [
        ("lookup_order", {"order_id": "A-1042"}), ("customer_profile", {"customer_id": "C-311"})]
    assert "Maria Keller" in result.answer  # a fact of the profile (the wording varies)
    monkeypatch.setattr(embedded_llm, "continue_chains", False)
    alone = await Agent(llm=embedded_llm, tools=_shop_tools()).run(
        "Who placed order A-1042? I need their email address.")
    assert [c.name for c in alone.tool_calls] == ["lookup_order"]  # and an answer with an email it made up


async def test_a_customer_id_is_not_sent_mail_the_profile_is_looked_up_first(embedded_llm, monkeypatch):
    """The 0.5B mails "C-311" itself; a call giving an email parameter no address is not made, and
    asked again without `mail_message` the model looks the customer up; with `continue_chains` the
    mail then goes to the address the profile returned."""
    monkeypatch.setattr(embedded_llm, "continue_chains", True)
    result = await Agent(llm=embedded_llm, tools=_shop_tools()).run(
        "Send customer C-311 an email saying their refund has been approved.")
    names = [c.name for c in result.tool_calls]
    assert names[:2] == ["customer_profile", "mail_message"]
    assert result.tool_calls[1].arguments["to"] == "maria.keller@example.com"
    assert all(c.error is None for c in result.tool_calls)


async def test_an_order_id_is_not_tracked_as_a_parcel_the_order_is_looked_up_first(embedded_llm, monkeypatch):
    """The 0.5B passes the order id as a tracking number; a value shaped unlike the parameter's
    example id ("TRK-00001") is not sent, the model is asked again without `track_package`, looks
    the order up, and the probe then tracks the parcel by the number the order returned."""
    monkeypatch.setattr(embedded_llm, "continue_chains", True)
    result = await Agent(llm=embedded_llm, tools=_shop_tools(_track_package)).run(
        "Where is the parcel for order A-1042 right now?")
    assert [(c.name, c.arguments) for c in result.tool_calls][:2] == [
        ("lookup_order", {"order_id": "A-1042"}), ("track_package", {"tracking_no": "TRK-55120"})]
    assert all(c.error is None for c in result.tool_calls)
    assert "Leipzig" in result.answer


async def test_a_text_reply_that_spells_out_a_call_is_made_into_the_call(embedded_llm):
    """A text reply that writes an offered tool's code-like parameter name (`case_id`) describes the
    call the user wanted; `call_described` (default) asks once more for that one call. A text that
    names no such parameter stands as it is, with nothing spent."""
    from raygent.schema import Completion, Usage

    fetch = ToolSpec(name="legal_case_fetch", description="Detailed information about a legal case", parameters={
        "type": "object", "required": ["case_id"],
        "properties": {"case_id": {"type": "string", "description": "The name or number of the case"},
                       "details": {"type": "boolean", "description": "Whether to return the full details"}}})
    ask = [Message.user("I need the detailed case information of the legal case Smith v. Jones.")]
    text = Completion(text="You can call `legal_case_fetch` with the `case_id` of the case.", usage=Usage(),
                      finish_reason="stop", model=embedded_llm.model_name)
    params = GenerationParams()
    made = await embedded_llm._call_described(text, ask, [fetch], params)
    assert [c.name for c in made.tool_calls] == ["legal_case_fetch"]
    assert "jones" in made.tool_calls[0].arguments["case_id"].lower()
    assert made.usage.completion_tokens > 0  # the second generation is counted
    prose = text.model_copy(update={"text": "Smith v. Jones was decided in 1990."})
    assert await embedded_llm._call_described(prose, ask, [fetch], params) == prose
