"""The embedded GGUF used the plain way, without raygent: the baseline `--model embedded-raw` measures.

`RawLlamaChatModel` is what a user gets from llama-cpp-python alone: `Llama` on the same
Qwen2.5-Coder-0.5B-Instruct GGUF as raygent's default model, the prompt written by the model's OWN
chat template from the GGUF metadata (`tokenizer.chat_template`; Qwen2.5's template takes `tools` and
writes the hermes `<tool_call>` instructions itself), greedy decoding (temperature 0, no repeat
penalty), and nothing else: no grammar, no exemplars, no call bias, no relevance bias, no LoRA
adapter, no call filter. The reply is read leniently (`parse_raw_calls`): every
`<tool_call>{json}</tool_call>` block is a call (an unclosed last block too), else a bare JSON object
with "name" and "arguments", else no call.

The template is rendered the way Hugging Face `apply_chat_template` does (a sandboxed Jinja2
environment with trim_blocks/lstrip_blocks and a `tojson` that keeps key order and non-ASCII text),
so the model sees the tool list as its template's authors wrote it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raygent.llm_pool.base import ChatModel, as_params
from raygent.schema import Completion, GenerationParams, Message, ToolCall, ToolSpec, Usage

_DECODER = json.JSONDecoder()
_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)


def _as_call(obj: Any) -> ToolCall | None:
    """A decoded JSON value -> a ToolCall when it is {"name": str, "arguments": object (or its JSON text)}."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"].strip():
        return None
    args = obj.get("arguments", {})
    if isinstance(args, str):  # OpenAI style: the arguments as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    return ToolCall(name=obj["name"].strip(), arguments=args)


def _decode_object(text: str) -> tuple[Any, int] | None:
    """The JSON value at the start of `text` (leading whitespace and ``` fences skipped) and where it ends."""
    stripped = text.lstrip()
    offset = len(text) - len(stripped)
    fence = re.match(r"```[a-zA-Z]*\s*", stripped)
    if fence:
        offset += fence.end()
    try:
        return _DECODER.raw_decode(text, offset)
    except json.JSONDecodeError:
        return None


def parse_raw_calls(text: str) -> tuple[list[ToolCall], list[str]]:
    """A plain reply -> (calls, parse errors).

    Every `<tool_call>...</tool_call>` block holding {"name": ..., "arguments": {...}} is a call; the
    last block may lack its closing tag (a reply cut off, or a model that forgot it). A block that does
    not decode is no call, and its error is reported. Without any `<tool_call>` tag, each top-level
    JSON object in the text with a "name" and "arguments" is a call (a model that answers with the bare
    JSON). Anything else (prose, malformed JSON) is no call."""
    calls: list[ToolCall] = []
    errors: list[str] = []
    if "<tool_call>" in text:
        for m in _BLOCK.finditer(text):
            body = m.group(1)
            decoded = _decode_object(body)
            call = _as_call(decoded[0]) if decoded else None
            if call is None:
                errors.append(f"tool_call block is not a JSON call with name and arguments: {body.strip()[:200]!r}")
            else:
                calls.append(call)
        return calls, errors
    i = text.find("{")
    while i != -1:
        try:
            obj, end = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        call = _as_call(obj)
        if call is not None:
            calls.append(call)
            i = text.find("{", end)
        else:  # e.g. {"tool_calls": [...]} or {"function": {...}}: look inside
            i = text.find("{", i + 1)
    return calls, errors


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """Hugging Face's `tojson` filter for chat templates (Jinja2's own sorts keys and escapes HTML)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise(message: str) -> None:
    raise ValueError(f"chat template error: {message}")


def template_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """raygent Messages -> the OpenAI-style dicts chat templates read (call arguments as objects)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content or ""}
        if m.tool_calls:
            d["tool_calls"] = [{"id": c.id, "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
        if m.name:
            d["name"] = m.name
        if m.tool_call_id:
            d["tool_call_id"] = m.tool_call_id
        out.append(d)
    return out


class RawLlamaChatModel(ChatModel):
    """The GGUF through llama-cpp-python with its own chat template and greedy decoding; nothing else.

    model: an embedded model name or a GGUF path (default: raygent's embedded default model).
    n_threads: llama.cpp threads (default: as LlamaCppChatModel, `default_threads()`)."""

    def __init__(self, model: str | os.PathLike | None = None, *, n_ctx: int = 4096, n_threads: int | None = None,
                 verbose: bool = False, **llama_kwargs: Any):
        from raygent.llm_pool.embedded import DEFAULT_MODEL, EMBEDDED_MODELS

        self.model_spec = str(model) if model is not None else DEFAULT_MODEL
        stem = self.model_spec if self.model_spec in EMBEDDED_MODELS else Path(self.model_spec).stem
        self.model_name = stem + "+raw"
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.verbose = verbose
        self.llama_kwargs = llama_kwargs
        self._llama: Any = None
        self._template: Any = None
        self._load_lock = threading.Lock()
        self._lock: asyncio.Lock | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_llama=None, _template=None, _load_lock=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load_lock = threading.Lock()

    def load(self) -> Any:
        with self._load_lock:
            if self._llama is None:
                from jinja2.sandbox import ImmutableSandboxedEnvironment
                from llama_cpp import Llama

                from raygent.llm_pool.embedded import resolve_model_path
                from raygent.llm_pool.llama_cpp import _extra_buffers_safe, _model_loading, default_threads

                path = resolve_model_path(self.model_spec)
                threads = self.n_threads or default_threads()
                options = {"n_threads_batch": threads, **self.llama_kwargs}
                # the AMX guard is a crash workaround (see _extra_buffers_safe), not a quality lever
                with _model_loading(extra_buffers=_extra_buffers_safe()):
                    self._llama = Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=threads,
                                        verbose=self.verbose, **options)
                source = self._llama.metadata.get("tokenizer.chat_template")
                if not source:
                    raise RuntimeError(f"{path} has no chat template in its GGUF metadata")
                env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
                env.filters["tojson"] = _tojson
                env.globals["raise_exception"] = _raise
                self._template = env.from_string(source)
        return self._llama

    def render_prompt(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None) -> str:
        self.load()
        offered = [t.to_openai() for t in tools or []]
        return self._template.render(messages=template_messages(messages), tools=offered or None,
                                     add_generation_prompt=True, bos_token="", eos_token="")

    def _complete(self, prompt: str, p: GenerationParams) -> tuple[str, str | None, Usage]:
        llama = self.load()
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if len(tokens) + p.max_tokens > self.n_ctx:
            raise ValueError(f"prompt of {len(tokens)} tokens + max_tokens={p.max_tokens} exceeds n_ctx={self.n_ctx}")
        out = llama.create_completion(tokens, max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p,
                                      repeat_penalty=1.0, stop=list(p.stop) or None, seed=p.seed)
        choice = out["choices"][0]
        u = out.get("usage") or {}
        usage = Usage(prompt_tokens=u.get("prompt_tokens", len(tokens)),
                      completion_tokens=u.get("completion_tokens", 0), total_tokens=u.get("total_tokens", 0))
        return choice["text"], choice.get("finish_reason"), usage

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                   params: GenerationParams | dict | None = None) -> Completion:
        p = as_params(params)
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            prompt = await asyncio.to_thread(self.render_prompt, messages, tools)
            raw, finish, usage = await asyncio.to_thread(self._complete, prompt, p)
        calls, errors = parse_raw_calls(raw) if tools and p.tool_choice != "none" else ([], [])
        text = _BLOCK.sub("", raw).strip() if calls else raw.strip()
        reason = "tool_calls" if calls else ("length" if finish == "length" else "stop")
        return Completion(text=text, tool_calls=calls, usage=usage, finish_reason=reason, model=self.model_name,
                          raw=raw, parse_errors=errors)
