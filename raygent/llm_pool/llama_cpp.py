"""llama.cpp backend (GGUF on CPU): the embedded default model.

Why it is fast enough on 2 cores: the prompt is laid out so that everything stable (system
prompt, tool descriptions, few-shot exemplars, earlier turns) forms an unchanged prefix, and
llama.cpp reuses the KV cache of the longest common prefix with the previous request, so each
agent step only evaluates the new tokens. Tool calls are constrained by a grammar built from the
offered tools' JSON schemas, so the small model cannot emit a malformed call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from raygent.llm_pool.base import ChatModel, as_params
from raygent.llm_pool.call_draft import CallDrafter
from raygent.llm_pool.call_filter import (_CJK, GENERIC_NAME_WORDS, _key, identifier_words, invented_call,
                                         keep_grounded_calls)
from raygent.llm_pool.date_formats import format_dates
from raygent.llm_pool.described_calls import described_tools, keyed_tools
from raygent.llm_pool.embedded import (AUTO_ADAPTER, DEFAULT_MODEL, EMBEDDED_ADAPTERS, EMBEDDED_MODELS,
                                       choose_adapter, resolve_adapter_path, resolve_model_path)
from raygent.llm_pool.formats import ToolCallFormat, get_format
from raygent.llm_pool.grammar import answer_grammar, tool_call_grammar
from raygent.llm_pool.hemispheres import signed_coordinates
from raygent.llm_pool.lazy_decode import LazyGrammarDecoder, common_prefix
from raygent.llm_pool.next_call import (MADE_UP, MISFIT, OTHER_KIND, OTHER_RECORD, REPEATED, asked_field,
                                        brings_user_value, carries_text, carry_result_fields, follow_reference,
                                        kin_words, misfit_values, next_call_fault, other_tools_value,
                                        returned_texts, shaped_step, unstated_values)
from raygent.llm_pool.parallel_calls import complete_grids, complete_lists, drop_fragment_calls, drop_subsumed_calls
from raygent.llm_pool.request_coverage import answers_a_left_part, anticipates_a_result, left_parts
from raygent.llm_pool.percentages import rates_as_fractions
from raygent.llm_pool.place_names import format_places
from raygent.llm_pool.prompt_lookup import PromptLookup
from raygent.llm_pool.stated_options import fill_stated_options
from raygent.llm_pool.tool_relevance import ToolRelevance
from raygent.llm_pool.unstated_options import drop_unstated_options
from raygent.schema import Completion, Delta, GenerationParams, Message, ToolCall, ToolSpec, Usage

# Exemplar conversations shown after the tools' own examples. Those with tool responses teach the
# 0.5B model to answer from a result instead of calling the tool again (measured: without them it
# repeats the call until the step limit), to quote every field of the result, and to chain a
# second call that uses the first one's result.
_WEATHER = ToolSpec(name="weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}})
_GENERAL_EXAMPLES: list[list[Message]] = [
    [Message.user("What's the weather in Paris, in Fahrenheit?"),
     Message.assistant(tool_calls=[ToolCall(id="ex1", name="weather", arguments={"city": "Paris"})]),
     Message(role="tool", tool_call_id="ex1", name="weather", content='{"temperature_c": 18, "sky": "cloudy"}'),
     Message.assistant(tool_calls=[ToolCall(id="ex2", name="celsius_to_fahrenheit", arguments={"celsius": 18})]),
     Message(role="tool", tool_call_id="ex2", name="celsius_to_fahrenheit", content='{"fahrenheit": 64.4}'),
     Message.assistant("Paris: 64.4 °F (18 °C), cloudy.")],
    [Message.user("查询北京的天气"),
     Message.assistant(tool_calls=[ToolCall(id="ex3", name="weather", arguments={"city": "北京"})]),
     Message(role="tool", tool_call_id="ex3", name="weather",
             content='{"city": "北京", "temperature_c": 18, "sky": "多云", "wind": "北风3级"}'),
     Message.assistant("北京：气温 18°C，多云，北风3级。")],
    [Message.user("Who wrote Hamlet?"), Message.assistant("William Shakespeare wrote Hamlet.")],
]
_DEFAULT_SYSTEM = ("You are a helpful assistant. Call a tool when the request needs one; after a tool returns, "
                   "answer the user directly from its result. Otherwise answer directly.")

log = logging.getLogger(__name__)

#: tokens a further call (`continue_left_parts`) may take: of BFCL's 3,152 answer calls, as the model writes
#: them, the median takes 36 tokens, 99 % take 90 or fewer, one takes more than 192 (291)
FURTHER_CALL_TOKENS = 192

#: (base, weight, floor) of the call bias after a user message: base + weight x the request's
#: similarity to its best-fitting tool, at least floor, at most `call_bias`. Fitted on the first
#: tokens of 240 BFCL cases (seed 1): calls in 100 % of simple_python and multiple, 85 % of
#: live_simple, 20 % of irrelevance and 28 % of live_irrelevance (a fixed 8: 97-100 % and 80-90 %).
RELEVANCE_BIAS: tuple[float, float, float] = (1.5, 8.0, 2.5)
#: the least similarity of the request to a tool (as for RELEVANCE_BIAS) for a probed next call of it
#: to be kept (`continue_chains`). On 70 positions of benchmarks/multi_step_unseen.py (after each
#: expected call's real result) the probed call was right in 27 of the 40 where a call was due; with
#: the other rules, 0.15 kept 25 of them and 1 of the 30 calls made after a request was done (0: 27
#: and 8), 0.20 kept 24 and 1.
#: Built-in tools fitted through their example requests reach 0.154 for requests they do not serve
#: ("What time is it now?" and `text_to_speech`), the chains of benchmarks/multi_step.py 0.28-0.55.
CHAIN_FIT = 0.2
#: least similarity of a result field's name to a parameter ("name: description") for a returned
#: text handed to it where the request cannot be read (wordllama: "city" ~ `company` 0.05, `location`
#: 0.27, `city` 0.91; "arrival airport" ~ an IATA `code` 0.42)
FIELD_FIT = 0.2


class LlamaCppChatModel(ChatModel):
    """Chat with tools on a GGUF model through llama-cpp-python.

    model: a local GGUF path or an embedded model name (default: Qwen2.5-Coder-0.5B-Instruct).
    n_threads: llama.cpp threads (prompts and generation). Default (`default_threads`): the CPUs Ray
        reserved for this process in a Ray worker (a pool replica with `num_cpus: 1` runs 1 thread),
        else the CPUs the process may run on; resolved again where a pickled model is unpickled.
    format: how tools and calls are written in the prompt (hermes by default, Qwen's own).
    grammar: constrain tool calls with a GBNF grammar (hermes format only).
    few_shot: add one exemplar per offered tool (from ToolSpec.examples) to the system prompt.
    call_bias: logit bias towards opening a tool call on the first step after a user message
        (tool_choice "auto" only). Measured on a 12-case toy set with the 0.5B model: with no bias it
        called the right tool on 1 of 8 requests that needed one, with 8.0 on 8 of 8 (and it also
        called a tool on 3 of 4 chit-chat requests, then answered from the result). After a tool
        result no bias applies unless `followup_call_bias` is set.
    relevance_bias: (base, weight, floor): after a user message the call bias is base + weight x the
        request's similarity to its best-fitting offered tool (name, description, example requests;
        wordllama vectors, `tool_relevance.py`), between floor and `call_bias`, for both ways of
        opening a call. Fitted on BFCL first tokens (docs/evaluation.md): it keeps the calls where a
        tool fits and drops most where none does (a fixed 8 made the model call the calculator for a
        joke). None: the fixed `call_bias`; so too where wordllama is not installed.
    open_tag_bias: logit bias on the single `<tool_call>` token (where the vocabulary has one, as
        Qwen's does) for the first token of every reply. A model fine-tuned on Qwen's template (the
        `multistep` adapter) opens calls with that token, yet it stays 1.3-3.1 logits below the
        under-trained tokens around it (`<|im_start|>`, `_Pods`), so the reply started with a stray
        token. Measured over 82 reply starts of chained conversations: where a call follows, its
        logit is 1.3-3.1 below the best ordinary token; where text follows, 19.5-29.3 below. A bias
        of 6 separates them with room both ways; the base 0.5B's logit for it is about -4.6, so the
        bias does not change the base model's replies.
    max_calls: calls allowed in one reply (4 by default). The 0.5B model fills extra slots with
        repeats and with the exemplars' calls, so beyond the first call only grounded ones are kept
        (`call_filter.py`: exact repeats dropped, a further call must bring a value the user wrote or
        a tool returned). Measured: BFCL parallel 0 -> 5/20 (first 20 of seed 0), simple_python and
        multiple 44 -> 42 of 59, the multi-step benchmark 8/8 chained either way, the tool-call turn
        of benchmarks/embedded_model.py unchanged (2.13 vs 2.11 s in one slow phase). 1: one call per
        reply, the grammar admits no second.
    next_call_bias: logit bias on the newline that goes on from a closed call to another (greedy
        replies, with `max_calls` > 1 and the grammar). At the end of a first call the 0.5B stopped where BFCL's
        parallel cases wanted more calls with its newline 0.7-1.5 logits below the end of the reply;
        1.5 lets it go on. Extra calls it then writes where one was wanted are repeats or made up,
        and the call filter drops them. Measured on the first 20 parallel and parallel_multiple and
        first 50 simple_python and multiple of seed 0: parallel 5 -> 6 of 20, the rest unchanged, the
        same 1,031 s for the 140 cases. 0: no bias.
    fill_options: repair the values of the calls a reply keeps, each step measured on BFCL
        (docs/evaluation.md, sessions 26-30): fill optional arguments the latest request states but
        the call left out (an enum member named as a word, "in Celsius" -> `unit="celsius"`; a flag
        whose name's words it uses; a unit, a count or a number it states; per call where a tool is
        called more than once: `stated_options.py`, `request_parts.py`); write a rate given in
        percent as a fraction ("3%" -> 0.03, `percentages.py`), a US city in the 'City, State' form
        the schema asks for ("Pleasanton" -> "Pleasanton, CA", `place_names.py`), a date in the one
        format the schema names ("2023-10-11" -> "10/11/2023", `date_formats.py`), a coordinate
        given south or west as a negative number (`hemispheres.py`); and leave out optional texts
        found nowhere in the conversation (`title="The Great Gatsby"`, `unstated_options.py`).
        False: the calls as the model wrote them.
    answer_invented: where a reply to a user message calls tools with mostly made-up values (fewer
        than half of them in the conversation, enum members and schema defaults aside:
        `call_filter.invented_call`), no offered tool fits the request; the model is asked again for
        a plain answer with no tools in the prompt (a short prompt: the tools' cached prefix is not
        used), which costs that second generation. Except where the made-up call's tool fits the
        request (similarity >= CHAIN_FIT) and other tools are offered: then the model is first asked
        again without that tool, since it went for a chain's later step without the value an earlier
        one gives (`supplier_contact("SUP-99")`, the schema's example id, for "which supplier makes
        SKU-3302"); a made-up reply to that second ask is answered plainly. tool_choice "auto" only.
        False: keep such calls.
    continue_chains: where tool results end the conversation, first ask the model for one call (tool
        choice "required") and keep it where it is a real next step of the request: new, nothing
        made up, carrying a value the tools just returned (the order's `customer_id` to
        `customer_profile`) or, after a failed call, calling another tool, and a tool that fits the
        request (`next_call.py`, CHAIN_FIT; not asked where the call also takes a short value of the
        user's own that no call used yet, `to_code="JPY"` for "in Japanese yen", nor where the
        request is Chinese, which the embedder cannot read, and the call carries a text a tool
        returned); otherwise the reply is generated as usual, which costs
        the probe (about one short call) on each final answer after tools. The 0.5B otherwise
        answers after the first result with made-up facts ("Their email is C-311@example.com").
        Where the probe's call makes a value up, it is asked once more with that tool barred from
        the grammar (the prompt unchanged): the model went for a chain's last tool without the
        value an earlier step gives. Measured: chained requests on unseen business tools
        (benchmarks/multi_step_unseen.py) 0 -> 11 of 30 (session 27), 19 of 30 with session 28's
        checks of values and of fit (docs/benchmarks.md); benchmarks/multi_step.py
        unchanged at 8/8 chained and 4/4 single-step. False: the model's replies as they come.
        Independent of it, always: a call that gives an email parameter something without an "@"
        (a customer id), an id parameter a value shaped unlike its example id, or a ticker
        parameter no symbol, is not made (`next_call.misfit_values`); with no other call left the
        model is asked again without that tool.
    lora: a LoRA adapter applied on top of the model: a GGUF adapter path or the name of one shipped
        with raygent ("multistep": the 0.5B fine-tuned to chain tool calls; see raygent.training).
        "auto" (default): the shipped adapter made for this embedded model, if any — the 0.5B gets
        "multistep" (measured: 6 of 8 two-step requests chained against 0 without it); None: none.
    lora_scale: how strongly the adapter applies (1.0: as trained).
    merge_lora: fold the adapter into the model's weights once (`gguf_merge.py`, cached beside the
        model, about 20 s the first time) and run the merged model: llama.cpp's run-time adapter
        costs two extra matmuls per adapted weight on every token. False: the run-time adapter.
    parallel: decode up to this many requests at once on one llama.cpp context (continuous
        batching, `llama_batch.py`): concurrent requests are admitted into sequence slots and
        decoded together, one `llama_decode` per step for all of them; each slot keeps its KV for
        the conversation's next step and new conversations copy the shared system prefix from a
        neighbour. 1 (default): one request at a time under a lock, the single-sequence path.
        Worth it where requests arrive concurrently (a pool replica serving several agents): on 2
        cores four sequences decode ~1.5x as many tokens per second as one. The KV cache holds
        `n_ctx` tokens per slot; `session_cache` does not apply (the slots are the cache).
    speculate: greedy replies (temperature 0) guess their next tokens from the prompt (the
        exemplars' call syntax, the tool section's names, the user's values, a tool result's
        fields; raygent.llm_pool.prompt_lookup) and evaluate each guess in the same batch as the
        token before it, keeping what the model confirms: the same reply in fewer decode calls.
        `decode_stats()` reports the calls, guesses and rejected guesses. False: one token per call.
    draft_calls: inside a tool call, guesses come from the offered tools' schemas and the
        conversation's values instead of the prompt's n-grams (raygent.llm_pool.call_draft): the
        rest of a name once its first tokens leave one tool, the required keys, a value's rest as
        the request or a tool result spells it, the closing tag. Same reply; a warm tool-calling
        turn took 0.57 s against 1.02 s (docs/benchmarks.md, session 29). False: prompt n-grams only.
    call_described: where a reply to the user is text that writes a code-like parameter name of
        an offered tool ("classified under the 'atm_finder_start' intent", a snippet passing
        `fabricName`), or to a request holding a key shaped like a parameter's example key ("order
        A-1042" for "e.g. Z-9001"), ask once more for one call and make it, unless its values are
        made up (`described_calls.py`); the text reply stands otherwise. Only in `chat`: a streamed text
        reply has reached the user by then. False: text replies as the model wrote them.
    stop_repeated_calls: end a reply (greedy or sampled through the batch engine, a call grammar in
        force) at a call that repeats an earlier one word for word: the 0.5B fills the slots left
        under `max_calls` with repeats, which the call filter drops anyway; the decode steps are
        saved. Of session 29's 376 recorded BFCL first replies, 156 hold a repeat; in 7 the filter
        kept calls written after it: 5 extra calls of wrong replies (multiple_17 and 29 wanted one
        call), 1 needed call (parallel_multiple_187), 1 of a reply wrong either way. False: generate
        up to `max_calls` calls.
    continue_left_parts: where a first reply's calls leave a part of a request with several tasks
        unanswered (`request_coverage.left_parts`: "Second, sort [23, 45, 12] ..." with `array_sort`
        uncalled), the model is asked for one more call after its own (the same prompt and calls,
        cached), kept where it answers a left part (calls a tool the part names or uses one of its
        items), repeats no call and makes no value up (a task that needs an earlier call's result,
        "then calculate how old someone born in 1990 turns" after the current year, waits for the
        next step); again while parts are left and calls are under `max_calls`.
        Chat only (a streamed reply has reached the user by then), Hermes with the grammar.
    session_cache: keep the KV state of this many recent conversations in RAM (about 12 kB per
        token for the 0.5B model) and restore the one sharing the longest prefix with a new
        prompt. Off (0) by default; worth it where conversations interleave on one model (a pool
        replica serving concurrent agent sessions), where the single live KV cache would otherwise
        hold another conversation's prompt and the whole history would be evaluated again.
    """

    def __init__(self, model: str | os.PathLike | None = None, *, n_ctx: int = 4096, n_threads: int | None = None,
                 format: str | ToolCallFormat = "hermes", grammar: bool = True, few_shot: bool = True,
                 call_bias: float = 8.0, followup_call_bias: float = 0.0, open_tag_bias: float = 6.0, max_calls: int = 4,
                 relevance_bias: tuple[float, float, float] | None = RELEVANCE_BIAS,
                 n_batch: int = 256, speculate: bool = True, draft_calls: bool = True,
                 verbose: bool = False, session_cache: int = 0, lora: str | os.PathLike | None = AUTO_ADAPTER,
                 lora_scale: float = 1.0, merge_lora: bool = True, parallel: int = 1, answer_invented: bool = True,
                 next_call_bias: float = 1.5, fill_options: bool = True, continue_chains: bool = True,
                 call_described: bool = True, stop_repeated_calls: bool = True, continue_left_parts: bool = True,
                 **llama_kwargs: Any):
        self.model_spec = str(model) if model is not None else DEFAULT_MODEL
        self.model_name = Path(self.model_spec).stem if self.model_spec not in EMBEDDED_MODELS else self.model_spec
        self.lora = choose_adapter(lora, self.model_spec)
        self.lora_scale = lora_scale
        self.merge_lora = merge_lora
        if self.lora is not None:  # the adapter is part of the model's identity (answers differ)
            self.model_name += "+" + (self.lora if self.lora in EMBEDDED_ADAPTERS else Path(self.lora).stem)
        self.n_ctx = n_ctx
        self._auto_threads = not n_threads  # resolved again where the model is unpickled (a replica)
        self.n_threads = n_threads or default_threads()
        self.format = get_format(format)
        self.use_grammar = grammar and self.format.name == "hermes"
        self.few_shot = few_shot
        self.call_bias = call_bias
        self.followup_call_bias = followup_call_bias
        self.open_tag_bias = open_tag_bias
        self.max_calls = max_calls
        self.answer_invented = answer_invented
        self.next_call_bias = next_call_bias
        self.fill_options = fill_options
        self.relevance_bias = tuple(relevance_bias) if relevance_bias is not None else None
        self.continue_chains = continue_chains
        self.call_described = call_described
        self.stop_repeated_calls = stop_repeated_calls
        self.continue_left_parts = continue_left_parts
        self._relevance = ToolRelevance() if self.relevance_bias is not None or continue_chains else None
        self.n_batch = n_batch
        self.speculate = speculate
        self.draft_calls = draft_calls
        self._decode_stats: Counter[str] = Counter()
        self.verbose = verbose
        self.llama_kwargs = llama_kwargs
        self.session_cache = session_cache
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {parallel}")
        self.parallel = parallel
        self._engine: Any = None  # the BatchedLlama when parallel > 1
        self._states: list[tuple[list[int], bytes]] = []  # (tokens, KV of sequence 0), oldest first
        self._llama: Any = None
        self._template: Any = None
        self._grammar_cache: dict[tuple, Any] = {}
        self._load_lock = threading.Lock()
        self._lock: asyncio.Lock | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_llama=None, _template=None, _grammar_cache={}, _load_lock=None, _lock=None, _states=[],
                     _decode_stats=Counter(),
                     _engine=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load_lock = threading.Lock()
        if self.__dict__.get("_auto_threads"):  # e.g. built in a driver, loaded in a Serve replica
            self.n_threads = default_threads()

    def load(self) -> Any:
        """Load the model now (otherwise it loads on first use)."""
        with self._load_lock:
            if self._llama is None:
                try:
                    from llama_cpp import Llama
                except ImportError as exc:
                    raise RuntimeError("llama.cpp backend needs llama-cpp-python: pip install 'raygent[llama]'") from exc
                import jinja2

                path = resolve_model_path(self.model_spec)
                # prompt evaluation uses as many threads as generation unless told otherwise:
                # llama-cpp-python's own default is every core, so replicas given one thread each
                # ran two per process during prompts and spun against each other (measured: a
                # 2 x 1-thread run took 30 s or 57-61 s depending on how the prompts overlapped)
                options = {"n_threads_batch": self.n_threads, **self.llama_kwargs}
                runtime_adapter = self.lora is not None and not (self.merge_lora and _can_merge())
                if self.lora is not None:
                    adapter = resolve_adapter_path(self.lora, self.model_spec)
                    if not runtime_adapter:
                        from raygent.llm_pool.gguf_merge import ensure_merged_model

                        path = ensure_merged_model(path, adapter, scale=self.lora_scale)
                    else:
                        options.update(lora_path=str(adapter), lora_scale=self.lora_scale)
                # llama.cpp logs a line per adapter tensor outside llama-cpp-python's quiet mode
                quiet = _quiet_native_output(runtime_adapter and not self.verbose)
                with quiet, _model_loading(extra_buffers=_extra_buffers_safe()):
                    self._llama = Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                        n_batch=self.n_batch, verbose=self.verbose, **options)
                template = self._llama.metadata.get("tokenizer.chat_template")
                if not template:
                    raise RuntimeError(f"{path} has no chat template in its GGUF metadata; use a chat/instruct model")
                if self.parallel > 1:
                    from raygent.llm_pool.llama_batch import BatchedLlama

                    self._engine = BatchedLlama(self._llama, n_seq=self.parallel, n_ctx_per_seq=self.n_ctx,
                                                n_threads=self.n_threads, n_batch=max(self.n_batch, 512),
                                                lora_adapter=self._llama._lora_adapter, lora_scale=self.lora_scale)
                env = jinja2.Environment(trim_blocks=False, lstrip_blocks=False)
                env.globals["raise_exception"] = _raise_template_error
                self._template = env.from_string(template)
        return self._llama

    # -- prompt ----------------------------------------------------------------------------
    def _example_text(self, conversation: list[Message]) -> str:
        """An exemplar conversation written in this format, as 'User:/Assistant:' lines."""
        lines = []
        for turn in self.format.render_messages(conversation, None):
            if turn["role"] == "system":
                continue
            lines.append(f"{'User' if turn['role'] == 'user' else 'Assistant'}: {str(turn['content']).strip()}")
        return "\n".join(lines)

    def _system_with_examples(self, messages: list[Message], tools: Sequence[ToolSpec]) -> list[Message]:
        messages = list(messages)
        system = messages[0].content if messages and messages[0].role == "system" else None
        if system is None:
            system = _DEFAULT_SYSTEM
        else:
            messages = messages[1:]
        if tools and self.few_shot:
            examples = []
            for spec in tools:
                for ex in spec.examples[:1]:
                    examples.append([Message.user(ex.query), Message.assistant(
                        tool_calls=[ToolCall(id="ex", name=spec.name, arguments=ex.arguments)])])
            examples += _GENERAL_EXAMPLES
            system = system + "\n\nExamples:\n" + "\n\n".join(self._example_text(c) for c in examples)
        return [Message.system(system), *messages]

    def render_prompt(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None,
                      tool_choice: str = "auto") -> str:
        # tools stay in the prompt under tool_choice "none" (the grammar forbids calls instead), so
        # the cached prefix survives a forced final answer
        return self._render(messages, tools, add_generation_prompt=True)

    def render_conversation(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None) -> str:
        """A whole conversation as this model's prompts show it (no generation prompt): the text a
        fine-tune trains on, so that training sees exactly what inference will."""
        return self._render(messages, tools, add_generation_prompt=False)

    def _render(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None,
                add_generation_prompt: bool) -> str:
        self.load()
        offered = list(tools or [])
        plain = self.format.render_messages(self._system_with_examples(list(messages), offered), offered or None)
        return self._template.render(messages=plain, add_generation_prompt=add_generation_prompt, bos_token="",
                                     eos_token="")

    def _grammar(self, tools: Sequence[ToolSpec], tool_choice: str, max_calls: int | None = None) -> str | None:
        if not self.use_grammar or not tools:
            return None
        max_calls = max_calls or self.max_calls
        key = (tool_choice, max_calls, tuple(t.model_dump_json() for t in tools))
        if key not in self._grammar_cache:
            self._grammar_cache[key] = tool_call_grammar(tools, tool_choice, max_calls=max_calls)
        return self._grammar_cache[key]

    # -- token counting (history budgets) -------------------------------------------------
    async def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens `messages` take in this model's chat template and tokenizer (no tools, no exemplars,
        no generation prompt): what a history of them adds to a prompt. Used for memory budgets."""
        return await asyncio.to_thread(self._count_tokens, list(messages))

    def _count_tokens(self, messages: list[Message]) -> int:
        llama = self.load()

        def n(msgs: list[Message]) -> int:
            text = self._template.render(messages=self.format.render_messages(msgs, None), add_generation_prompt=False,
                                         bos_token="", eos_token="")
            return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0

        if not messages:
            return 0
        # measured after a fixed system turn, so a template's default system prompt (Qwen inserts one
        # when the conversation has none) is not counted as part of these messages
        probe = [Message.system("-")]
        total = n(probe + messages) - n(probe)
        return max(0, total)

    # -- generation ------------------------------------------------------------------------
    def _prepare(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None,
                 params: GenerationParams, answer_only: bool = False,
                 one_call: bool | frozenset[str] = False, prefix: str = "") -> tuple[dict[str, Any], int]:
        """Tokens and generation settings; `answer_only`: a plain answer that may not begin like a
        call (the answer that replaces made-up calls); `one_call`: at most one call (the probe of
        `continue_chains`), given as a set: of a tool not in it (the prompt keeps every tool);
        `prefix`: the start of the reply, already written (the calls before a further one)."""
        llama = self.load()
        prompt = self.render_prompt(messages, tools, params.tool_choice) + prefix
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if len(tokens) + params.max_tokens > self.n_ctx:
            raise ValueError(f"prompt of {len(tokens)} tokens plus max_tokens {params.max_tokens} exceeds the "
                             f"context window n_ctx={self.n_ctx}; shorten the history or raise n_ctx")
        if self._engine is not None:
            cached = 0  # known once the engine admits the request into a slot
        elif self.session_cache:
            cached = self._restore_state(tokens)
        else:
            cached = common_prefix(llama.input_ids[: llama.n_tokens].tolist(), tokens)
        stop = list(dict.fromkeys([*params.stop, *self.format.stop, "<|im_end|>", "<|endoftext|>"]))
        callable_tools = [t for t in tools or [] if not isinstance(one_call, frozenset) or t.name not in one_call]
        grammar = self._grammar(callable_tools, params.tool_choice, 1 if one_call else None)
        if answer_only and self.use_grammar:
            grammar = answer_grammar()
        first_token_bias = None
        if grammar is not None and params.tool_choice == "auto" and messages and not answer_only:
            first_token_bias = self._first_token_bias(messages, list(tools or []))
        bias_after = None
        if self.next_call_bias and grammar is not None and self.max_calls > 1 and not (answer_only or one_call):
            bias_after = ("</tool_call>", {self._newline_token(): self.next_call_bias})
        kwargs = dict(prompt=tokens, max_tokens=params.max_tokens, temperature=params.temperature,
                      top_p=params.top_p, stop=stop, seed=params.seed, grammar=grammar,
                      first_token_bias=first_token_bias, bias_after=bias_after,
                      stop_repeated_call=bool(self.stop_repeated_calls and grammar is not None and not one_call),
                      draft_tools=callable_tools if grammar is not None and not answer_only else [],
                      draft_sources=_draft_sources(messages))
        return kwargs, cached

    # -- several conversations' KV states (session_cache) ---------------------------------------
    def _restore_state(self, tokens: list[int]) -> int:
        """Load the saved KV state sharing the longest prefix with `tokens` when it beats the live
        cache; returns the number of prompt tokens now cached.

        Any gain is worth it: restoring an 800-token state took 12 ms, evaluating 10 tokens after
        such a prefix 318 ms (1 thread, measured). An earlier 16-token margin made every second
        step of concurrent agent runs evaluate ~11 tokens again (2 % of a pool's work)."""
        import ctypes

        import llama_cpp

        llama = self._llama
        current = common_prefix(llama.input_ids[: llama.n_tokens].tolist(), tokens)
        best, best_n = None, current
        for i, (saved, _) in enumerate(self._states):
            n = common_prefix(saved, tokens)
            if n > best_n:
                best, best_n = i, n
        if best is None:
            return current
        saved, data = self._states.pop(best)
        self._states.append((saved, data))  # most recently used last
        llama._ctx.kv_cache_clear()
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if not llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, buf, len(data), 0):
            llama.n_tokens = 0  # the cache is now empty: evaluate the whole prompt
            return 0
        llama.input_ids[: len(saved)] = saved
        llama.n_tokens = len(saved)
        return common_prefix(saved, tokens)

    def _save_state(self) -> None:
        """Remember the live KV state (sequence 0) under the tokens it holds."""
        import ctypes

        import llama_cpp

        llama = self._llama
        tokens = llama.input_ids[: llama.n_tokens].tolist()
        if not tokens:
            return
        size = llama_cpp.llama_state_seq_get_size(llama._ctx.ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llama._ctx.ctx, buf, size, 0)
        # an older state of the same conversation (a prefix of this one) is superseded
        self._states = [(t, d) for t, d in self._states if common_prefix(t, tokens) < len(t)]
        self._states.append((tokens, bytes(buf)[:written]))
        del self._states[: max(0, len(self._states) - self.session_cache)]

    def _generate(self, kwargs: dict[str, Any]) -> Iterator[tuple[str, str | None, int]]:
        """Yield (text piece, finish reason or None, tokens so far). Runs in a worker thread.

        Greedy requests use the lazy-grammar decoder (same output, grammar checked on the chosen
        token only); sampled ones use llama-cpp-python's sampler chain, where a logit bias applies
        to every token rather than only the first.
        """
        if kwargs["temperature"] <= 0:
            lookup = self._drafter(kwargs) if self.speculate else None
            with LazyGrammarDecoder(self._llama, kwargs["grammar"]) as decoder:
                for piece, finish in decoder.generate(kwargs["prompt"], max_tokens=kwargs["max_tokens"],
                                                      stop=kwargs["stop"], first_token_bias=kwargs["first_token_bias"],
                                                      lookup=lookup, bias_after=kwargs.get("bias_after"),
                                                      stop_repeated_call=kwargs.get("stop_repeated_call", False)):
                    yield piece, finish, decoder.n_generated
                self._decode_stats.update(generated=decoder.n_generated, decode_calls=decoder.decode_calls,
                                          drafted=decoder.drafted, drafts_rejected=decoder.drafts_rejected)
            return
        from llama_cpp import LlamaGrammar

        grammar = LlamaGrammar.from_string(kwargs["grammar"], verbose=False) if kwargs["grammar"] else None
        n = 0
        for chunk in self._llama.create_completion(
                prompt=kwargs["prompt"], max_tokens=kwargs["max_tokens"], temperature=kwargs["temperature"],
                top_p=kwargs["top_p"], stop=kwargs["stop"], seed=kwargs["seed"], grammar=grammar,
                logit_bias=kwargs["first_token_bias"], stream=True):
            n += 1
            choice = chunk["choices"][0]
            yield choice.get("text") or "", choice.get("finish_reason"), n

    def _drafter(self, kwargs: dict[str, Any]) -> PromptLookup | CallDrafter:
        """Where calls may be written (Hermes, a grammar): drafts that know the tools' schemas."""
        if not (self.draft_calls and kwargs.get("draft_tools")) or self.format.name != "hermes":
            return PromptLookup(kwargs["prompt"])
        llama = self._llama
        return CallDrafter(kwargs["prompt"],
                           lambda text: llama.tokenize(text.encode("utf-8"), add_bos=False, special=True),
                           llama.detokenize, kwargs["draft_tools"], kwargs["draft_sources"])

    def _call_start_tokens(self) -> tuple[int, int | None]:
        """The tokens that open a Hermes call: '<' (the grammar spells tags character by character)
        and, where the vocabulary has one, the single `<tool_call>` token (Qwen's), which the grammar
        also accepts."""
        char = self._llama.tokenize(b"<", add_bos=False, special=False)[0]
        tag = self._llama.tokenize(b"<tool_call>", add_bos=False, special=True)
        return char, (tag[0] if len(tag) == 1 and tag[0] != char else None)

    def _newline_token(self) -> int:
        """The token that goes on from a closed call to the next (the grammar's "\n" between calls)."""
        return self._llama.tokenize(b"\n", add_bos=False, special=False)[0]

    def user_call_bias(self, request: str, tools: Sequence[ToolSpec]) -> float:
        """The call bias of a reply to a user message: `call_bias`, or with `relevance_bias` (base,
        weight, floor) base + weight x the request's similarity to its best-fitting tool, between the
        floor and `call_bias` (raygent.llm_pool.tool_relevance)."""
        if self._relevance is None or self.relevance_bias is None:
            return self.call_bias
        similarity = self._relevance.score(request, tools)
        if similarity is None:
            return self.call_bias
        base, weight, floor = self.relevance_bias
        return min(self.call_bias, max(floor, base + weight * similarity))

    def _first_token_bias(self, messages: Sequence[Message],
                          tools: Sequence[ToolSpec] = ()) -> dict[int, float] | None:
        """Logit biases for the reply's first token (tool_choice "auto", a grammar in force)."""
        char, tag = self._call_start_tokens()
        if messages and messages[-1].role == "user":
            # one bias for both ways of opening a call: what the relevance fit measured
            step = self.user_call_bias(messages[-1].content or "", tools) if tools else self.call_bias
            tag_bias = step
        else:
            step = self.followup_call_bias
            tag_bias = max(step, self.open_tag_bias)
        bias = {char: step} if step else {}
        if tag is not None and tag_bias:
            bias[tag] = tag_bias
        return bias or None

    def _finish(self, raw: str, finish: str | None, usage: Usage, tools: Sequence[ToolSpec] | None,
                tool_choice: str = "auto", messages: Sequence[Message] = ()) -> Completion:
        if tool_choice == "none":
            return Completion(text=raw.strip(), usage=usage, finish_reason="length" if finish == "length" else "stop",
                              model=self.model_name, raw=raw)
        parsed = self.format.parse(raw, list(tools) if tools else None)
        calls, carried = carry_result_fields(parsed.tool_calls, messages)  # the order's customer_id, not its id
        for why in carried:
            log.debug("%s", why)
        if self.max_calls > 1 and len(calls) > 1:  # repeats and copied exemplars filling the extra slots
            calls, dropped = keep_grounded_calls(calls, messages, {t.name: t.parameters for t in tools or ()})
            calls, completed = complete_grids(calls, messages, self.max_calls)  # Lakers and Bulls x 2018 and 2020
            for why in dropped + completed:
                log.debug("%s", why)
        if self.max_calls > 1 and calls:  # "in 'New York' and from 'San Francisco'": the call for each item
            calls, listed = complete_lists(calls, tools, messages, self.max_calls)
            for why in listed:
                log.debug("%s", why)
        if self.fill_options and calls:  # "in Celsius" -> unit="celsius", left out by the small model
            calls, added = fill_stated_options(calls, tools, messages)
            calls, fractions = rates_as_fractions(calls, tools, messages)  # "3%" -> rate=0.03, not 3.0
            calls, places = format_places(calls, tools, messages)  # "Pleasanton" -> "Pleasanton, CA"
            calls, dates = format_dates(calls, tools)  # "2023-10-11" -> "10/11/2023" where 'MM/DD/YYYY' is asked
            calls, signs = signed_coordinates(calls, messages)  # "119.5383 W" -> longitude=-119.5383
            for note in added + fractions + places + dates + signs:
                log.debug("%s", note)
            if self.max_calls > 1 and len(calls) > 1:  # calls that differed only in a value now filled alike: one call
                calls = _one_of_each(calls)
        if self.max_calls > 1 and len(calls) > 1:  # send_email(to) then send_email(to, body): one call written twice
            calls, subsumed = drop_subsumed_calls(calls, messages)
            calls, pieces = drop_fragment_calls(calls, messages)  # "docker start", then "docker" and "start"
            for why in subsumed + pieces:
                log.debug("%s", why)
        reason = "tool_calls" if calls else ("length" if finish == "length" else "stop")
        return Completion(text=parsed.text, tool_calls=calls, usage=usage, finish_reason=reason,
                          model=self.model_name, raw=raw, parse_errors=parsed.errors)

    def _without_unstated(self, completion: Completion, tools: Sequence[ToolSpec] | None,
                          messages: Sequence[Message]) -> Completion:
        """The calls to make, without optional text values found nowhere in the conversation
        (`title="The Great Gatsby"`, `unstated_options.py`). Applied to the calls a reply keeps, after
        `_invented` has judged them whole: those made-up values are part of what tells a made-up call."""
        if not (self.fill_options and completion.tool_calls):
            return completion
        calls, notes = drop_unstated_options(completion.tool_calls, tools, messages)
        if not notes:
            return completion
        # an option the request states fills the place of the made-up one ("in km/h" where the
        # model wrote the description's default "m/s")
        calls, filled = fill_stated_options(calls, tools, messages)
        for note in notes + filled:
            log.debug("%s", note)
        calls = _one_of_each(calls)  # calls that differed only in a dropped value
        return completion.model_copy(update={"tool_calls": calls})

    def decode_stats(self) -> dict[str, int]:
        """Totals of the single-sequence greedy path since load: tokens generated, decode calls after
        the prompts, guessed tokens evaluated and guesses cut short (`speculate`)."""
        return {key: int(self._decode_stats[key])
                for key in ("generated", "decode_calls", "drafted", "drafts_rejected")}

    def batch_stats(self) -> dict[str, Any] | None:
        """With `parallel` > 1: the engine's decode calls by how many sequences generated a token in
        each ({sequences: calls}); None on the one-request-at-a-time path."""
        if self._engine is None:
            return None
        return {"generating_per_decode": dict(self._engine.generating_per_decode)}

    def _lock_for_loop(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                   params: GenerationParams | dict | None = None) -> Completion:
        return await self._chat(messages, tools, as_params(params))

    async def _chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None, p: GenerationParams,
                    answer_only: bool = False, one_call: bool | frozenset[str] = False,
                    retry_invented: bool = True, prefix: str = "") -> Completion:
        spent = Usage()
        if not (answer_only or one_call):
            probed = await self._probe_next_call(messages, tools, p)
            if probed is not None and probed.tool_calls:
                return probed
            spent = probed.usage if probed is not None else spent
        completion = await self._reply(messages, tools, p, answer_only, one_call, retry_invented, prefix)
        return completion.model_copy(update={"usage": completion.usage + spent}) if spent.total_tokens else completion

    async def _reply(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None, p: GenerationParams,
                     answer_only: bool, one_call: bool | frozenset[str], retry_invented: bool = True,
                     prefix: str = "") -> Completion:
        if self.parallel > 1:
            state: dict[str, Any] = {}
            pieces = [item async for item in self._generation(messages, tools, p, state, answer_only, one_call, prefix)]
            kwargs, cached = state["kwargs"], state["cached"]
        else:  # one thread hop for the whole reply, not one per token
            async with self._lock_for_loop():
                kwargs, cached = await asyncio.to_thread(self._prepare, messages, tools, p, answer_only, one_call,
                                                         prefix)
                pieces = await asyncio.to_thread(lambda: list(self._generate(kwargs)))
                if self.session_cache:
                    await asyncio.to_thread(self._save_state)
        raw = "".join(piece for piece, _, _ in pieces)
        finish = next((f for _, f, _ in reversed(pieces) if f), None)
        n_out = pieces[-1][2] if pieces else 0
        n_prompt = len(kwargs["prompt"])
        usage = Usage(prompt_tokens=n_prompt, completion_tokens=n_out, total_tokens=n_prompt + n_out,
                      cached_prompt_tokens=cached)
        completion = self._finish(raw, finish, usage, tools, p.tool_choice, messages)
        if self._invented(completion.tool_calls, messages, tools, p):
            others = await self._retry_tools(completion.tool_calls, messages, tools) if retry_invented else None
            again = await self._ask_again(messages, others, p)
            return again.model_copy(update={"usage": usage + again.usage})
        misfit = self._misfit(completion.tool_calls, tools, p)
        if misfit:
            kept = [c for c in completion.tool_calls if c.name not in misfit]
            if kept:
                return self._without_unstated(completion.model_copy(update={"tool_calls": kept}), tools, messages)
            # every call misplaced a value (a customer id for the customer's email): asked again without
            # those tools, the model looks the value up first (`customer_profile`), or answers
            again = await self._ask_again(messages, [t for t in tools or () if t.name not in misfit], p)
            return again.model_copy(update={"usage": usage + again.usage})
        if not completion.tool_calls and not (answer_only or one_call):
            return await self._call_described(completion, messages, tools, p)
        if not (answer_only or one_call):
            completion = await self._continue_left_parts(completion, messages, tools, p)
        return self._without_unstated(completion, tools, messages)

    async def _continue_left_parts(self, completion: Completion, messages: Sequence[Message],
                                   tools: Sequence[ToolSpec] | None, p: GenerationParams) -> Completion:
        """`continue_left_parts`: the reply's calls and the further calls that answer the parts of
        the request they left out."""
        if not (self.continue_left_parts and self.use_grammar and self.max_calls > 1 and p.tool_choice == "auto"
                and completion.tool_calls and messages and messages[-1].role == "user"):
            return completion
        # one call; a free text the 0.5B goes on writing (a birthday message of 512 tokens) is cut short
        required = p.model_copy(update={"tool_choice": "required",
                                        "max_tokens": min(p.max_tokens, FURTHER_CALL_TOKENS)})
        calls, usage = list(completion.tool_calls), completion.usage
        while len(calls) < self.max_calls and (left := left_parts(messages, calls, tools)):
            prefix = "\n".join(self.format.render_call(c) for c in calls) + "\n"
            # where left parts name uncalled tools, the grammar takes only those: asked for one more
            # call, the 0.5B otherwise writes its first call again
            named = {name for part in left for name in part.tools}
            barred = frozenset(t.name for t in tools or () if t.name not in named) if named else frozenset()
            further = await self._chat(messages, tools, required, one_call=barred or True, prefix=prefix)
            usage = usage + further.usage
            written = {(c.name, json.dumps(c.arguments, sort_keys=True)) for c in calls}
            new = [c for c in further.tool_calls if (c.name, json.dumps(c.arguments, sort_keys=True)) not in written]
            spec = next((t for t in tools or () if new and t.name == new[0].name), None)
            # a task that needs an earlier call's result ("then calculate how old someone born in 1990
            # turns" after the current year) gets a call with a value made up for it: not made now,
            # the agent makes it once the result is in
            if not new or not answers_a_left_part(new[0], left) or spec is None or unstated_values(
                    new[0], messages, spec.parameters) or anticipates_a_result(new[0], calls, messages):
                log.debug("no further call: %s", "none written" if not new else
                          f"{new[0].name} answers no left part or makes a value up")
                break
            log.debug("further call %s for a part the reply left: %s", new[0].name, left[0].text[:60])
            calls.append(new[0])
        if len(calls) == len(completion.tool_calls):
            return completion.model_copy(update={"usage": usage})
        return completion.model_copy(update={"tool_calls": calls, "usage": usage})

    async def _call_described(self, completion: Completion, messages: Sequence[Message],
                              tools: Sequence[ToolSpec] | None, p: GenerationParams) -> Completion:
        """`call_described`: the one call a text reply spelled out, or the text reply."""
        if not (self.call_described and self.use_grammar and p.tool_choice == "auto" and messages
                and messages[-1].role == "user"):
            return completion
        described = described_tools(completion.text, tools) or keyed_tools(messages[-1].content or "", tools)
        if not described:
            return completion
        required = p.model_copy(update={"tool_choice": "required"})
        # the same prompt (its KV cache is reused), the grammar open to the described tools only
        barred = frozenset(t.name for t in tools or () if t not in described)
        again = await self._chat(messages, tools, required, one_call=barred or True)
        usage = completion.usage + again.usage
        if again.tool_calls and not self._invented(again.tool_calls, messages, tools, p):
            log.info("calling %s: the text reply spelled the call out", again.tool_calls[0].name)
            return again.model_copy(update={"usage": usage})
        return completion.model_copy(update={"usage": usage})

    async def _ask_again(self, messages: Sequence[Message], others: Sequence[ToolSpec] | None,
                         p: GenerationParams) -> Completion:
        """After calls that could not be made: the calls the model makes with the `others` tools, or
        else a plain answer. The answer is asked for anew, under the answer grammar and without
        tools: a reply without calls written with tools in the prompt is often an under-trained
        token ("плач", `_Pods`) or a call's JSON as text (18 of 20 BFCL re-asks began so)."""
        spent = Usage()
        if others:
            again = await self._chat(messages, others, p, retry_invented=False)
            if again.tool_calls:
                return again
            spent = again.usage
        answer = await self._chat(messages, None, p, answer_only=True)
        return answer.model_copy(update={"usage": spent + answer.usage}) if spent.total_tokens else answer

    def _misfit(self, calls: Sequence[ToolCall], tools: Sequence[ToolSpec] | None, p: GenerationParams) -> set[str]:
        """The tools whose calls in a reply give a value of the wrong kind (`next_call.misfit_values`)."""
        if not (calls and tools and p.tool_choice == "auto"):
            return set()
        specs = {t.name: t for t in tools}
        bad = set()
        for call in calls:
            problems = misfit_values(call, specs[call.name].parameters) if call.name in specs else []
            if problems:
                log.info("not calling %s: %s", call.name, "; ".join(problems))
                bad.add(call.name)
        return bad

    async def _probe_next_call(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None,
                               p: GenerationParams) -> Completion | None:
        """`continue_chains`: after tool results, the one call the model makes when it must call,
        kept where it is a real next step of the request (`next_call.next_call_fault`, and the tool
        fits the request: similarity >= CHAIN_FIT); otherwise a completion with no calls, whose
        usage is what the probe cost. None where no probe applies."""
        if not (self.continue_chains and tools and self.use_grammar and p.tool_choice == "auto"
                and messages and messages[-1].role == "tool" and self._relevance is not None):
            return None
        request = next((m.content for m in reversed(messages) if m.role == "user"), None)
        if not request:
            return None
        specs = {t.name: t for t in tools}
        required = p.model_copy(update={"tool_choice": "required"})
        spent, barred, misfit = Usage(), frozenset(), False
        for _ in range(3):
            probe = await self._chat(messages, tools, required, one_call=barred or True)
            spent = spent + probe.usage
            why, call = "no call", (probe.tool_calls or [None])[0]
            if call is not None:
                spec = specs.get(call.name)
                why = "an unknown tool" if spec is None else (next_call_fault(call, messages, spec.parameters)
                                                               or other_tools_value(call, messages, tools))
                # the embedder judges the fit, except where the call also takes a value of the user's
                # own that no call used yet, or where it cannot read the request (Chinese) and the
                # call carries a text a tool returned (a ticker, a city; a bare number such as an
                # address's area code 330104 handed to the calculator still needs the fit)
                # nor where the request's own words name the tool and the call carries a text a
                # tool returned ("Email the supplier ...": `mail_message` to the supplier's address,
                # which the embedder scored 0.09)
                # (there, the returned text must still be of the parameter's kind: after a finished
                # chain for a customer's city, the 0.5B handed "Lisbon" to `company_ticker(company)`)
                if why is None and not brings_user_value(call, messages, spec.parameters):
                    if not _words_name(call.name, request) and (field := asked_field(call, messages)):
                        # the result holds what the user asked to be told: the chain is done
                        why = f"it hands on the {field} the request asks for"
                    elif ((_CJK.search(request) or _words_name(call.name, request))
                            and carries_text(call, messages, spec.parameters)):
                        why = await asyncio.to_thread(self._foreign_value, call, messages, spec)
                    else:
                        fit = await asyncio.to_thread(self._relevance.score, request, [spec])
                        if fit is None or fit < CHAIN_FIT:
                            why = (f"the request fits {call.name} too little "
                                   f"({'no embedder' if fit is None else f'{fit:.2f}'})")
            if why is None:
                log.debug("going on with %s: a next step of the request", call.name)
                return probe.model_copy(update={"usage": spent})
            log.debug("not going on with %s: %s", call and call.name, why)
            if call is not None and OTHER_RECORD in why and (follow := follow_reference(messages)) is not None:
                # the model goes on with the record in hand; the request's words point to another
                log.debug("going on with %s%s: the reference the request names", follow.name, follow.arguments)
                return probe.model_copy(update={"tool_calls": [follow], "usage": spent})
            # a made-up value: the model went for the last tool of a chain without the value an
            # earlier step would give (`city_forecast("Paris")` before the customer's profile);
            # asked once more with that tool barred from the grammar (same prompt, cached)
            # so is a returned value handed to a tool of another kind, or the record in hand where the
            # request names its reference, or a value of another kind (`supplier_contact("C-311")`,
            # a customer id where "SUP-99" is the example: asked again, `sku_details` comes first)
            # (not a repeat: asked again after a finished chain, the 0.5B then goes on to any tool
            # that takes a returned text, `company_ticker("Lisbon")`)
            # once asked again for a wrong tool, a repeat of an earlier step is one more wrong tool
            # (`supplier_contact("C-311")`, then `lookup_order` again, then `sku_details`)
            misfit = misfit or MISFIT in why
            wrong_tool = any(m in why for m in (MADE_UP, OTHER_RECORD, OTHER_KIND, MISFIT)) or bool(
                barred and REPEATED in why)
            if call is None or not wrong_tool or len(barred) + 1 >= len(specs):
                break
            barred = barred | {call.name}
        if misfit and (step := shaped_step(messages, tools)) is not None:
            # the model wanted a next step but wrote a value of another kind: the latest result's
            # key of a tool's example shape is that step (`sku_details("SKU-7781")`)
            log.debug("going on with %s%s: the result's key of its example's shape", step.name, step.arguments)
            return probe.model_copy(update={"tool_calls": [step], "usage": spent})
        return probe.model_copy(update={"tool_calls": [], "text": "", "finish_reason": "stop", "usage": spent})

    def _foreign_value(self, call: ToolCall, messages: Sequence[Message], spec: ToolSpec) -> str | None:
        """Why a returned text the call carries is not of its parameter's kind (None: it is, or
        nothing can tell): the result field's name shares no word with the parameter's name and
        description, and the embedder puts the two below FIELD_FIT ("city" for `company`: 0.05;
        "manager_id" for `employee_id`: 0.55; "email" for `to`, "the recipient's email address",
        shares a word)."""
        properties = (spec.parameters or {}).get("properties") or {}
        for name, field, value in returned_texts(call, messages):
            description = str((properties.get(name) or {}).get("description") or "")
            if kin_words(field, name, description) or self._relevance is None:
                continue
            kinship = self._relevance.score(field.replace("_", " "), [ToolSpec(name=name, description=description)])
            if kinship is not None and kinship < FIELD_FIT:
                return f"the result's {field} {value!r} is no {call.name}'s {name} ({kinship:.2f})"
        return None

    async def _retry_tools(self, calls: Sequence[ToolCall], messages: Sequence[Message],
                           tools: Sequence[ToolSpec] | None) -> list[ToolSpec] | None:
        """The tools to ask again with after a reply to the user made its calls' values up, or None
        (answer instead). Where a made-up call's tool fits the request (CHAIN_FIT), the model went
        for a later step of a chain without the value an earlier one gives
        (`supplier_contact("SUP-99")`, the schema's example, for "which supplier makes SKU-3302"):
        asked again without that tool it calls the earlier step (`sku_details("SKU-3302")`). Where
        it fits too little (a joke request and a calculator) or no other tool is offered, None."""
        request = next((m.content for m in reversed(messages) if m.role == "user"), None)
        barred = {c.name for c in calls}
        others = [t for t in tools or () if t.name not in barred]
        if not (others and request and self._relevance is not None):
            return None
        specs = [t for t in tools or () if t.name in barred]
        fit = await asyncio.to_thread(self._relevance.score, request, specs)
        if fit is None or fit < CHAIN_FIT:
            return None
        log.info("asking again without %s: its made-up call fits the request (%.2f)", ", ".join(sorted(barred)), fit)
        return others

    def _invented(self, calls: Sequence[ToolCall], messages: Sequence[Message], tools: Sequence[ToolSpec] | None,
                  p: GenerationParams) -> bool:
        """Whether a reply's calls should give way to a plain answer (`answer_invented`)."""
        if not (self.answer_invented and calls and tools and p.tool_choice == "auto" and messages
                and messages[-1].role == "user"):
            return False
        specs = {t.name: t for t in tools}
        invented = all(c.name in specs and invented_call(c, specs[c.name].parameters, messages) for c in calls)
        if invented:
            log.info("answering instead of calling %s: most of the call's values appear nowhere in the conversation",
                     ", ".join(c.name for c in calls))
        return invented

    async def stream(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                     params: GenerationParams | dict | None = None) -> AsyncIterator[Delta]:
        """Streams answer text as it is generated; a reply that turns out to be a tool call is held
        back and delivered parsed in the final Delta."""
        async for delta in self._stream(messages, tools, as_params(params)):
            yield delta

    async def _stream(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None, p: GenerationParams,
                      answer_only: bool = False) -> AsyncIterator[Delta]:
        spent = Usage()
        if not answer_only:
            probed = await self._probe_next_call(messages, tools, p)
            if probed is not None and probed.tool_calls:
                yield Delta(tool_calls=probed.tool_calls, finish_reason="tool_calls", usage=probed.usage,
                            parse_errors=probed.parse_errors)
                return
            spent = probed.usage if probed is not None else spent
        async for delta in self._stream_reply(messages, tools, p, answer_only):
            if delta.usage is not None and spent.total_tokens:
                delta = delta.model_copy(update={"usage": delta.usage + spent})
            yield delta

    async def _stream_reply(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None,
                            p: GenerationParams, answer_only: bool) -> AsyncIterator[Delta]:
        state: dict[str, Any] = {}
        raw, finish, emitted, n_out = "", None, 0, 0
        looks_like_call: bool | None = None
        async for piece, piece_finish, n_out in self._generation(messages, tools, p, state, answer_only):
            raw += piece
            finish = piece_finish or finish
            if looks_like_call is None and raw.strip():
                looks_like_call = raw.lstrip()[:1] in ("<", "{", "`") or raw.lstrip().startswith(
                    ("Action:", "Thought:"))
            if looks_like_call is False and len(raw) > emitted:
                yield Delta(text=raw[emitted:])
                emitted = len(raw)
        kwargs, cached = state["kwargs"], state["cached"]
        n_prompt = len(kwargs["prompt"])
        usage = Usage(prompt_tokens=n_prompt, completion_tokens=n_out, total_tokens=n_prompt + n_out,
                      cached_prompt_tokens=cached)
        completion = self._finish(raw, finish, usage, tools, p.tool_choice, messages)
        invented = bool(looks_like_call) and self._invented(completion.tool_calls, messages, tools, p)
        misfit = self._misfit(completion.tool_calls, tools, p) if looks_like_call and not invented else set()
        if invented or (misfit and not [c for c in completion.tool_calls if c.name not in misfit]):
            # the held-back calls were made up, or all misplaced a value: as in _reply, calls with the
            # other tools where they apply, else a plain answer, streamed
            if invented:
                others = await self._retry_tools(completion.tool_calls, messages, tools)
            else:
                others = [t for t in tools or () if t.name not in misfit]
            if others:
                again = await self._chat(messages, others, p, retry_invented=False)
                usage = usage + again.usage
                if again.tool_calls:
                    yield Delta(tool_calls=again.tool_calls, finish_reason="tool_calls", usage=usage,
                                parse_errors=again.parse_errors)
                    return
            async for delta in self._stream(messages, None, p, answer_only=True):
                if delta.usage is not None:
                    delta = delta.model_copy(update={"usage": usage + delta.usage})
                yield delta
            return
        if misfit:
            completion = completion.model_copy(
                update={"tool_calls": [c for c in completion.tool_calls if c.name not in misfit]})
        completion = self._without_unstated(completion, tools, messages)
        # a held-back reply (tool calls, maybe with a thought) arrives whole in the final delta
        yield Delta(text=completion.text if looks_like_call else "", tool_calls=completion.tool_calls,
                    finish_reason=completion.finish_reason, usage=usage, parse_errors=completion.parse_errors)

    async def _generation(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None, p: GenerationParams,
                          state: dict[str, Any], answer_only: bool = False,
                          one_call: bool | frozenset[str] = False,
                          prefix: str = "") -> AsyncIterator[tuple[str, str | None, int]]:
        """Generation items as they come; `state` gets the prepared kwargs and the cached token count."""
        if self.parallel > 1:
            kwargs, _ = await asyncio.to_thread(self._prepare, messages, tools, p, answer_only, one_call, prefix)
            request = self._batch_request(kwargs)
            state["kwargs"] = kwargs
            async for item in self._batched(request):
                yield item
            state["cached"] = request.cached  # known once the engine admitted the request
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        async with self._lock_for_loop():
            kwargs, cached = await asyncio.to_thread(self._prepare, messages, tools, p, answer_only, one_call, prefix)
            state.update(kwargs=kwargs, cached=cached)

            def produce() -> None:
                try:
                    for item in self._generate(kwargs):
                        loop.call_soon_threadsafe(queue.put_nowait, item)
                    if self.session_cache:
                        self._save_state()
                except BaseException as exc:  # surfaced in the consumer
                    loop.call_soon_threadsafe(queue.put_nowait, exc)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, None)  # the end

            worker = threading.Thread(target=produce, daemon=True)
            worker.start()
            try:
                async for item in _drain(queue):
                    yield item
            finally:
                await asyncio.to_thread(worker.join)

    def _batch_request(self, kwargs: dict[str, Any]) -> Any:
        from raygent.llm_pool.llama_batch import BatchRequest

        return BatchRequest(prompt=kwargs["prompt"], max_tokens=kwargs["max_tokens"], stop=kwargs["stop"],
                            grammar=kwargs["grammar"], first_token_bias=kwargs["first_token_bias"],
                            bias_after=kwargs.get("bias_after"),
                            stop_repeated_call=kwargs.get("stop_repeated_call", False),
                            temperature=kwargs["temperature"], top_p=kwargs["top_p"], seed=kwargs["seed"])

    async def _batched(self, request: Any) -> AsyncIterator[tuple[str, str | None, int]]:
        """Submit to the batch engine and yield its items for this request."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        request.emit = lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)
        self._engine.submit(request)
        async for item in _drain(queue):
            yield item


async def _drain(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    """The items a producer thread puts on `queue` until None; an exception put there is raised here."""
    while (item := await queue.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item


def _quiet_native_output(quiet: bool) -> Any:
    import contextlib

    if not quiet:
        return contextlib.nullcontext()
    from llama_cpp._utils import suppress_stdout_stderr

    return suppress_stdout_stderr(disable=False)


_PARAMS_LOCK = threading.Lock()


def default_threads() -> int:
    """llama.cpp threads for a model given none: the CPUs Ray reserved for this process when it is a
    Ray worker that reserved at least one (a pool replica with `num_cpus: 1` gets 1 thread), else the
    CPUs this process may run on.

    Every core used to be the default everywhere, so `cluster/serve_openai.yaml` (2 replicas x 1 CPU,
    no `n_threads`) ran 2 threads per replica, 4 spinning threads on 2 cores: 6.9 completion tok/s
    for 8 concurrent requests against 36.7 with one thread per replica (benchmarks/llm_server_peer.py,
    layouts 2x2p2c1 and yaml, same run)."""
    import sys

    if "ray" in sys.modules:  # only a process that imported Ray can be a Ray worker
        try:
            import ray

            if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
                cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)
                if cpus >= 1:
                    return int(cpus)
        except Exception:  # noqa: BLE001 - no usable answer from Ray: fall back to the process's CPUs
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return " amx_tile" in line or " amx_int8" in line
    except OSError:
        pass
    return False


def _can_merge() -> bool:
    """Whether gguf-py is here to fold an adapter into the weights; an install from before the llama
    extra required it falls back to llama.cpp's run-time adapter (same answers, slower), with a warning."""
    import importlib.util

    if importlib.util.find_spec("gguf") is not None:
        return True
    import warnings

    warnings.warn("the LoRA adapter runs as a llama.cpp run-time adapter, about a third slower per token; "
                  "pip install gguf (part of 'raygent[llama]') to fold it into the weights", stacklevel=3)
    return False


def _extra_buffers_safe() -> bool:
    """Whether llama.cpp may put the weights in its extra CPU buffer types (repacked layouts, AMX).

    On CPUs with AMX (Intel Sapphire Rapids and later) a native build of llama-cpp-python 0.3.36
    moves Q4_K weights into its AMX buffer and segfaults in `ggml_backend_amx_mul_mat` on the first
    decode, batched or not (measured on a 2-core Xeon with amx_tile/amx_int8). There the weights stay
    in plain CPU buffers, as llama-server's `--no-repack` does. RAYGENT_LLAMA_EXTRA_BUFFERS=1/0 forces
    either way."""
    forced = os.environ.get("RAYGENT_LLAMA_EXTRA_BUFFERS", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    return not _cpu_has_amx()


class _model_loading:
    """While a `Llama` loads: llama.cpp's default model params with `use_extra_bufts` as given.

    llama-cpp-python's `Llama` takes no such argument and reads the defaults once while loading,
    so the defaults function is swapped for the load (under a lock: loads are serialized)."""

    def __init__(self, *, extra_buffers: bool):
        self.extra_buffers = extra_buffers
        self._original: Any = None

    def __enter__(self) -> None:
        if self.extra_buffers:
            return
        import llama_cpp.llama_cpp as lib

        _PARAMS_LOCK.acquire()
        self._original = original = lib.llama_model_default_params

        def defaults() -> Any:
            params = original()
            params.use_extra_bufts = False
            return params

        lib.llama_model_default_params = defaults

    def __exit__(self, *exc: Any) -> None:
        if self._original is None:
            return
        import llama_cpp.llama_cpp as lib

        lib.llama_model_default_params = self._original
        self._original = None
        _PARAMS_LOCK.release()


def _raise_template_error(message: str) -> None:
    raise ValueError(f"chat template error: {message}")


def _words_name(tool: str, request: str) -> bool:
    """Whether a word of the request holds a word of the tool's name (four letters or more, not a
    generic verb): "Email" holds `mail_message`'s "mail"."""
    words = [w for w in identifier_words(tool) if len(w) >= 4 and w not in GENERIC_NAME_WORDS]
    return any(w in token for token in re.findall(r"[a-z]+", request.lower()) for w in words)


def _one_of_each(calls: Sequence[ToolCall]) -> list[ToolCall]:
    """The calls with exact repeats (same tool, same arguments) dropped, each kept at its last place."""
    return list({c.name + _key(c.arguments): c for c in reversed(calls)}.values())[::-1]


def _draft_sources(messages: Sequence[Message], most: int = 6) -> list[str]:
    """The texts a call's values may copy, the most recent first: the user's messages and tool results."""
    texts = [m.content for m in reversed(messages) if m.role in ("user", "tool") and m.content]
    return texts[:most]
