"""Hugging Face transformers backend: a local model folder or a GGUF file, CPU or GPU.

Prompts come from the model's own chat template, with the tools passed to
`apply_chat_template(tools=...)` when the template renders them (Qwen2.5, Llama 3.1, Hermes, ...);
replies are read with a tool-call format (hermes for Qwen). Concurrent requests are batched:
a small batcher collects the requests that arrive close together (until none came for
`batch_wait_ms`, at most `batch_wait_max_ms`) and runs one
left-padded `generate` for all of them, each row with its own stop strings and token budget, so
N agents sharing one replica cost about one decode pass per step instead of N. Streaming uses a
batch-aware streamer that hands each row's new text to its request as tokens arrive.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raygent.llm_pool.base import ChatModel, as_params
from raygent.llm_pool.errors import BackendConfigError
from raygent.llm_pool.formats import ToolCallFormat, get_format
from raygent.llm_pool.text_tools import opens_like_call
from raygent.schema import Completion, Delta, GenerationParams, Message, ToolSpec, Usage

#: a plain ChatML template (Qwen 1.x, Yi, many fine-tunes) for models whose tokenizer ships none;
#: tools are described by the tool-call format in the system turn
CHATML_TEMPLATE = (
    "{%- for m in messages -%}{{- '<|im_start|>' + m['role'] + '\\n' + (m['content'] or '') + '<|im_end|>\\n' -}}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
BUILTIN_TEMPLATES = {"chatml": CHATML_TEMPLATE}


def _torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise BackendConfigError("the transformers backend needs torch and transformers: pip install "
                                 "'raygent[hf]' (with the CPU or CUDA build of torch you want)",
                                 backend="transformers") from exc
    return torch


def _stop_cut(text: str, stops: Sequence[str]) -> int | None:
    """Where the first stop string starts in `text`, or None."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _held_suffix(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters could be the start of a stop string (held back while streaming)."""
    longest = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                longest = max(longest, k)
                break
    return longest


@dataclass
class _Request:
    """One chat request waiting for (or in) a batch."""

    input_ids: list[int]
    params: GenerationParams
    stops: list[str]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue | None = None  # streaming requests get their text pieces here
    # filled by the worker thread
    text: str = ""
    emitted: int = 0
    done: bool = False
    finish: str = "length"
    new_ids: list[int] = field(default_factory=list)


@dataclass
class BatchStats:
    """What the batcher did (for tests, benchmarks and logs)."""

    generate_calls: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    generate_seconds: float = 0.0


class TransformersChatModel(ChatModel):
    """Chat with tools on a transformers causal LM.

    model: a local folder (save_pretrained layout), a Hugging Face id already in the local cache,
        or a .gguf file.
    gguf_file: a GGUF file name inside `model` (or a path to one); transformers dequantizes it
        (needs the gguf package).
    device: "cpu", "cuda", "cuda:1", "mps"; default cuda when available. device_map ("auto", or a
        dict) instead places the weights with accelerate (multi-GPU, offload).
    dtype: "auto", "float32", "bfloat16", "float16"; default float32 on CPU, "auto" elsewhere.
    format: the tool-call format replies are parsed with (hermes for Qwen2.5/Hermes models).
    template_tools: pass tools to the chat template (None: when the template mentions tools and
        the format is hermes); otherwise the format renders them into the system message.
    max_batch_size / batch_wait_ms: dynamic batching (1 / 0 turns it off): a batch closes when no
        request arrived for `batch_wait_ms`, after `batch_wait_max_ms` in all, or when full.
    local_files_only: never download (the default; raygent loads what is on disk).
    chat_template: a Jinja chat template (or "chatml") replacing the tokenizer's own, for models
        that ship none.
    num_threads: torch's intra-op CPU threads for generation. On a machine busy with other work,
        1 can be several times faster than the default (measured on the 2-core dev VM under load:
        a 32-token generate took 0.54 s with 1 thread against 2.90 s with 2).
    """

    backend_name = "transformers"

    def __init__(self, model: str | os.PathLike, *, gguf_file: str | None = None, device: str | None = None,
                 device_map: str | dict | None = None, dtype: str | None = None,
                 format: str | ToolCallFormat = "hermes", template_tools: bool | None = None,
                 max_batch_size: int = 8, batch_wait_ms: float = 5.0, batch_wait_max_ms: float = 50.0,
                 trust_remote_code: bool = False,
                 local_files_only: bool = True, revision: str | None = None, model_name: str | None = None,
                 chat_template: str | None = None, num_threads: int | None = None,
                 model_kwargs: dict[str, Any] | None = None):
        self.model_path = str(model)
        if gguf_file is None and self.model_path.lower().endswith(".gguf"):  # a GGUF file given as the model
            gguf_file = self.model_path
            self.model_path = str(Path(self.model_path).expanduser().parent)
        if gguf_file and os.path.isfile(os.path.expanduser(gguf_file)) and not os.path.isdir(self.model_path):
            self.model_path = str(Path(gguf_file).expanduser().parent)
        if gguf_file:
            gguf_file = Path(gguf_file).name if os.path.isfile(os.path.expanduser(gguf_file)) else gguf_file
        self.gguf_file = gguf_file
        self.model_name = model_name or (Path(gguf_file).stem if gguf_file else Path(self.model_path).name)
        self.device = device
        self.device_map = device_map
        self.dtype = dtype
        self.format = get_format(format)
        self.template_tools = template_tools
        self.max_batch_size = max(1, int(max_batch_size))
        self.batch_wait_s = max(0.0, batch_wait_ms / 1000)
        self.batch_wait_max_s = max(0.0, batch_wait_max_ms / 1000)
        self.trust_remote_code = trust_remote_code
        self.local_files_only = local_files_only
        self.revision = revision
        self.model_kwargs = dict(model_kwargs or {})
        self.chat_template = BUILTIN_TEMPLATES.get(chat_template, chat_template) if chat_template else None
        self.num_threads = num_threads
        self.stats = BatchStats()
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._model: Any = None
        self._tokenizer: Any = None
        self._eos_ids: set[int] = set()
        self._pad_id: int = 0
        self._load_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[_Request] = []
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._worker_loop: asyncio.AbstractEventLoop | None = None

    def __getstate__(self) -> dict[str, Any]:  # weights, threads and tasks are rebuilt where unpickled
        keep = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return keep

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    # -- loading -----------------------------------------------------------------------------
    def load(self) -> tuple[Any, Any]:
        """Load tokenizer and weights now (otherwise on first use)."""
        with self._load_lock:
            if self._model is None:
                self._load()
        return self._model, self._tokenizer

    def resolve_path(self) -> str:
        """The local folder to load from (subclasses resolve caches here)."""
        return os.path.expanduser(self.model_path)

    def _load(self) -> None:
        torch = _torch()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = self.resolve_path()
        if not os.path.isdir(path) and self.local_files_only and os.path.sep in path:
            raise BackendConfigError(f"model folder not found: {path}", backend=self.backend_name)
        common: dict[str, Any] = {"trust_remote_code": self.trust_remote_code,
                                  "local_files_only": self.local_files_only}
        if self.revision:
            common["revision"] = self.revision
        if self.gguf_file:
            common["gguf_file"] = self.gguf_file
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = self.dtype or ("float32" if device == "cpu" and self.device_map is None else "auto")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, **common)
            kwargs = {**common, "dtype": dtype if dtype == "auto" else getattr(torch, dtype), **self.model_kwargs}
            if self.device_map is not None:
                kwargs["device_map"] = self.device_map
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except (OSError, ValueError, ImportError) as exc:
            where = f"{path} / {self.gguf_file}" if self.gguf_file else path
            hint = " (GGUF files also need: pip install gguf)" if self.gguf_file and "gguf" in str(exc).lower() else ""
            raise BackendConfigError(f"cannot load a transformers model from {where}: {exc}{hint}",
                                     backend=self.backend_name) from exc
        if self.device_map is None:
            model.to(device)
        model.eval()
        tokenizer.padding_side = "left"  # decoder-only batches are padded on the left
        if self.chat_template:
            tokenizer.chat_template = self.chat_template
        if not getattr(tokenizer, "chat_template", None):
            raise BackendConfigError(f"{path} has no chat template (tokenizer_config.json 'chat_template'); use a "
                                     f"chat/instruct model, or pass chat_template='chatml' (or a Jinja template)",
                                     backend=self.backend_name)
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
            try:
                tid = tokenizer.convert_tokens_to_ids(token)
            except (KeyError, ValueError):  # remote-code tokenizers may raise for unknown tokens
                continue
            if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
                eos_ids.add(tid)
        if not eos_ids:
            raise BackendConfigError(f"{path}: no end-of-sequence token found (generation_config.eos_token_id, the "
                                     f"tokenizer's eos_token)", backend=self.backend_name)
        self._eos_ids = eos_ids
        # padding: the tokenizer's pad token, else an end-of-sequence token (masked out anyway)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
            tokenizer.eos_token_id if tokenizer.eos_token_id is not None else min(eos_ids))
        self._tokenizer, self._model = tokenizer, model

    # -- prompt ------------------------------------------------------------------------------
    def _uses_template_tools(self) -> bool:
        if self.template_tools is not None:
            return self.template_tools
        template = self._tokenizer.chat_template
        template = template if isinstance(template, str) else str(template)
        return self.format.name == "hermes" and "tools" in template

    def render_prompt(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None,
                      tool_choice: str = "auto") -> str:
        """The prompt text the model sees (the chat template applied, generation prompt added)."""
        self.load()
        offered = list(tools or []) if tool_choice != "none" else []
        if self._uses_template_tools():
            turns = [_template_message(m) for m in messages]
            tool_defs = [t.to_openai() for t in offered] or None
        else:
            turns = self.format.render_messages(list(messages), offered or None)
            tool_defs = None
        return self._tokenizer.apply_chat_template(turns, tools=tool_defs, add_generation_prompt=True,
                                                   tokenize=False)

    # -- batching ----------------------------------------------------------------------------
    async def _submit(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None, params: GenerationParams,
                      stream: bool) -> _Request:
        loop = asyncio.get_running_loop()
        if self._model is None:
            await asyncio.to_thread(self.load)
        prompt = self.render_prompt(messages, tools, params.tool_choice)
        ids = self._tokenizer(prompt, add_special_tokens=False)["input_ids"]
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if limit and len(ids) + params.max_tokens > limit:
            raise ValueError(f"prompt of {len(ids)} tokens plus max_tokens {params.max_tokens} exceeds the model's "
                             f"context of {limit} tokens; shorten the history or lower max_tokens")
        offered = bool(tools) and params.tool_choice != "none"
        stops = list(dict.fromkeys([*params.stop, *(self.format.stop if offered else [])]))
        req = _Request(input_ids=ids, params=params, stops=stops, future=loop.create_future(), loop=loop,
                       queue=asyncio.Queue() if stream else None)
        self._ensure_worker(loop)
        self._pending.append(req)
        assert self._wakeup is not None
        self._wakeup.set()
        return req

    def _ensure_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._worker is None or self._worker.done() or self._worker_loop is not loop:
            self._wakeup = asyncio.Event()
            self._worker_loop = loop
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raygent-hf-generate")
            self._worker = loop.create_task(self._batch_loop())

    async def _batch_loop(self) -> None:
        """Collect the requests arriving together, run one generate per compatible group, repeat."""
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._pending:
                continue
            if self.batch_wait_s and len(self._pending) < self.max_batch_size:
                await self._gather_arrivals(loop)
            while self._pending:
                first = self._pending[0]
                key = _sampling_key(first.params)
                batch = [r for r in self._pending if _sampling_key(r.params) == key][: self.max_batch_size]
                for r in batch:
                    self._pending.remove(r)
                try:
                    await loop.run_in_executor(self._executor, self._generate, batch)
                except BaseException as exc:  # every request of the batch learns what went wrong
                    for r in batch:
                        if not r.future.done():
                            r.future.set_exception(exc)
                        if r.queue is not None:
                            r.queue.put_nowait(None)
                    if isinstance(exc, asyncio.CancelledError):
                        raise

    async def _gather_arrivals(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until requests stop arriving: `batch_wait_ms` with no new one, at most
        `batch_wait_max_ms` in all, or until a batch is full. Requests reaching a Serve replica
        trickle in a millisecond or so apart, so one fixed wait started generating with the first
        few and left the rest for a second generate (measured on an H100: 32 pooled requests took
        2x as long as in-process, where they all arrive in one tick)."""
        deadline = loop.time() + max(self.batch_wait_max_s, self.batch_wait_s)
        seen = len(self._pending)
        while True:
            await asyncio.sleep(min(self.batch_wait_s, max(0.0, deadline - loop.time())))
            count = len(self._pending)
            if count == seen or count >= self.max_batch_size or loop.time() >= deadline:
                return
            seen = count

    def _generate(self, batch: list[_Request]) -> None:
        """One left-padded generate for the batch; runs in the worker thread."""
        torch = _torch()
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        model, tok = self._model, self._tokenizer
        if self.num_threads and torch.get_num_threads() != self.num_threads:
            torch.set_num_threads(self.num_threads)  # OpenMP's setting is per thread: set it in the generate thread
        width = max(len(r.input_ids) for r in batch)
        pad = self._pad_id
        input_ids = torch.tensor([[pad] * (width - len(r.input_ids)) + r.input_ids for r in batch])
        mask = torch.tensor([[0] * (width - len(r.input_ids)) + [1] * len(r.input_ids) for r in batch])
        device = next(model.parameters()).device
        eos = self._eos_ids

        def advance(row: int, token: int) -> None:
            r = batch[row]
            if r.done:
                return
            if token in eos:
                r.done, r.finish = True, "stop"
            else:
                r.new_ids.append(token)
                text = tok.decode(r.new_ids, skip_special_tokens=True)
                if not text.endswith("\ufffd"):  # else an incomplete multi-byte character: wait for more
                    cut = _stop_cut(text, r.stops)
                    if cut is not None:
                        text, r.done, r.finish = text[:cut], True, "stop"
                    r.text = text
                if not r.done and len(r.new_ids) >= r.params.max_tokens:
                    r.done, r.finish = True, "length"
            if r.queue is not None:
                end = len(r.text) if r.done else len(r.text) - _held_suffix(r.text, r.stops)
                if end > r.emitted:
                    piece = r.text[r.emitted:end]
                    r.emitted = end
                    r.loop.call_soon_threadsafe(r.queue.put_nowait, piece)

        class RowStreamer(BaseStreamer):
            """Feeds every row's new token to its request (the first put is the prompt)."""

            def __init__(self) -> None:
                self.prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                for row, token in enumerate(value.reshape(len(batch), -1)[:, -1].tolist()):
                    advance(row, int(token))

            def end(self) -> None:
                pass

        class RowsDone(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.tensor([r.done for r in batch], device=input_ids.device)

        p = batch[0].params
        gen: dict[str, Any] = {"max_new_tokens": max(r.params.max_tokens for r in batch) + 1, "pad_token_id": pad,
                               "eos_token_id": sorted(eos) or None, "streamer": RowStreamer(),
                               "stopping_criteria": StoppingCriteriaList([RowsDone()])}
        if p.temperature > 0:
            gen.update(do_sample=True, temperature=p.temperature, top_p=p.top_p, top_k=0)
            if p.seed is not None:
                torch.manual_seed(p.seed)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **gen)
        self.stats.generate_calls += 1
        self.stats.batch_sizes.append(len(batch))
        self.stats.generate_seconds += time.perf_counter() - started
        for r in batch:
            reason = r.finish if r.done else "length"
            if r.queue is not None and len(r.text) > r.emitted:
                r.loop.call_soon_threadsafe(r.queue.put_nowait, r.text[r.emitted:])
                r.emitted = len(r.text)
            result = (r.text, reason, len(r.input_ids), len(r.new_ids))
            r.loop.call_soon_threadsafe(_resolve, r.future, result)
            if r.queue is not None:
                r.loop.call_soon_threadsafe(r.queue.put_nowait, None)

    # -- chat interface ----------------------------------------------------------------------
    def _finish(self, raw: str, reason: str, n_prompt: int, n_out: int, tools: Sequence[ToolSpec] | None,
                params: GenerationParams) -> Completion:
        usage = Usage(prompt_tokens=n_prompt, completion_tokens=n_out, total_tokens=n_prompt + n_out)
        if not tools or params.tool_choice == "none":
            return Completion(text=raw.strip(), usage=usage, finish_reason=reason, model=self.model_name, raw=raw)
        parsed = self.format.parse(raw, list(tools))
        return Completion(text=parsed.text, tool_calls=parsed.tool_calls, usage=usage,
                          finish_reason="tool_calls" if parsed.tool_calls else reason, model=self.model_name,
                          raw=raw, parse_errors=parsed.errors)

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                   params: GenerationParams | dict | None = None) -> Completion:
        p = as_params(params)
        req = await self._submit(messages, tools, p, stream=False)
        raw, reason, n_prompt, n_out = await req.future
        return self._finish(raw, reason, n_prompt, n_out, tools, p)

    async def stream(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                     params: GenerationParams | dict | None = None) -> AsyncIterator[Delta]:
        """Answer text streams as generated; a reply that opens like a tool call is held back and
        delivered parsed in the final Delta."""
        p = as_params(params)
        req = await self._submit(messages, tools, p, stream=True)
        assert req.queue is not None
        parse = bool(tools) and p.tool_choice != "none"
        text, emitted, held = "", 0, None if parse else False
        while (piece := await req.queue.get()) is not None:
            text += piece
            if held is None and text.strip():
                held = opens_like_call(text)
            if held is False and len(text) > emitted:
                yield Delta(text=text[emitted:])
                emitted = len(text)
        raw, reason, n_prompt, n_out = await req.future
        completion = self._finish(raw, reason, n_prompt, n_out, tools, p)
        yield Delta(text=completion.text if held else "", tool_calls=completion.tool_calls,
                    finish_reason=completion.finish_reason, usage=completion.usage,
                    parse_errors=completion.parse_errors)

    async def get_stats(self) -> BatchStats:
        return self.stats

    async def aclose(self) -> None:
        """Stop the batcher and its generate thread (the weights stay loaded)."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
            self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


def _resolve(future: asyncio.Future, result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _sampling_key(p: GenerationParams) -> tuple:
    """Requests that can share one generate call (greedy ones always can)."""
    return ("greedy",) if p.temperature <= 0 else ("sample", p.temperature, p.top_p, p.seed)


def _template_message(m: Message) -> dict[str, Any]:
    """A Message in the shape HF chat templates expect (call arguments as objects, not JSON text)."""
    out: dict[str, Any] = {"role": m.role, "content": m.content or ""}
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                             for c in m.tool_calls]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
        if m.name:
            out["name"] = m.name
    return out
