"""Greedy decoding under a grammar, checking the grammar lazily.

llama-cpp-python applies a grammar to every vocabulary entry at every step (about 17 ms per token
for Qwen's 151k-token vocabulary on 2 cores, measured: 44 vs 27 ms per token). Under greedy
decoding only the arg-max token matters, so this decoder first asks the grammar about that one
token and falls back to filtering the whole vocabulary only when it is rejected (the approach of
llama.cpp's own common sampler). The result is identical to full filtering; only the cost changes.
A logit bias can be limited to the first generated token (see `LlamaCppChatModel.call_bias`).
"""

from __future__ import annotations

import codecs
import ctypes
import math
import re
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np


class Drafter(Protocol):
    """Guesses a reply's next tokens (`PromptLookup`, `CallDrafter`); told each token generated."""

    def append(self, token: int) -> None: ...

    def draft(self, limit: int | None = None) -> list[int]: ...


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the shared token prefix: what the KV cache already holds of a new prompt."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def with_first_token_bias(logits: np.ndarray, bias: dict[int, float] | None) -> np.ndarray:
    """`logits` with `bias` added (a copy; the engine's buffer stays untouched), or as they are."""
    if not bias:
        return logits
    logits = logits.copy()
    for tok, value in bias.items():
        logits[tok] += value
    return logits


#: (text, {token: bias}): a bias on the token that follows `text`
BiasAfter = tuple[str, dict[int, float]]


def bias_following(text: str, bias_after: BiasAfter | None) -> dict[int, float] | None:
    """The bias of `bias_after` where `text` (the reply so far) ends with its text."""
    if bias_after is not None and text.endswith(bias_after[0]):
        return bias_after[1]
    return None


_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def repeats_a_call(text: str) -> bool:
    """Whether the call `text` has just closed repeats an earlier call of the reply word for word
    (white space aside)."""
    if not text.endswith("</tool_call>"):
        return False
    blocks = [" ".join(b.group(1).split()) for b in _CALL_BLOCK.finditer(text)]
    return len(blocks) >= 2 and blocks[-1] in blocks[:-1]


class StopText:
    """A reply's text, decoded token by token and cut at the first stop string. `add` releases only
    text that no stop string can still claim (the last `hold` characters wait).

    `stop_repeated_call`: a reply whose latest call repeats an earlier one word for word ends with
    that call. The 0.5B, allowed several calls, fills the remaining slots with repeats once it has
    said what it had to say; each repeat costs its whole length in decode steps and is dropped
    afterwards anyway (`call_filter.keep_grounded_calls`)."""

    def __init__(self, llama: Any, stop: list[str], stop_repeated_call: bool = False):
        self.llama = llama
        self.stop = stop
        self.stop_repeated_call = stop_repeated_call
        self.hold = max((len(s) for s in stop), default=0)
        self.text, self.emitted = "", 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token: int) -> tuple[str, bool]:
        """(newly released text, whether a stop string ended the reply: then `rest()` holds the end)."""
        self.text += self._decoder.decode(self.llama.detokenize([token], special=False))
        cut = min((self.text.find(s) for s in self.stop if s in self.text), default=-1)
        if cut < 0 and self.stop_repeated_call and repeats_a_call(self.text):
            cut = len(self.text)  # the repeat stays in the reply (text already released); the filter drops it
        if cut >= 0:
            self.text = self.text[:cut]
            return "", True
        safe = len(self.text) - self.hold
        if safe <= self.emitted:
            return "", False
        piece, self.emitted = self.text[self.emitted:safe], safe
        return piece, False

    def rest(self) -> str:
        """Everything not released yet (at the end of the reply)."""
        piece, self.emitted = self.text[self.emitted:], len(self.text)
        return piece


class LazyGrammarDecoder:
    """Runs one greedy, grammar-constrained generation on a loaded `llama_cpp.Llama`."""

    def __init__(self, llama: Any, grammar_text: str | None):
        import llama_cpp

        self._lib = llama_cpp
        self.llama = llama
        self.n_vocab = llama.n_vocab()
        self.vocab = llama._model.vocab
        self.sampler = None
        if grammar_text:
            self.sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar_text.encode("utf-8"), b"root")
            if not self.sampler:
                raise ValueError("llama.cpp rejected the grammar")
        self._one = (llama_cpp.llama_token_data * 1)()
        self._all: Any = None
        self.n_generated = 0
        # speculation counters: decode calls after the prompt, guessed tokens evaluated, guesses cut short
        self.decode_calls = self.drafted = self.drafts_rejected = 0

    def close(self) -> None:
        if self.sampler is not None:
            self._lib.llama_sampler_free(self.sampler)
            self.sampler = None

    def _allowed(self, token: int, logit: float) -> bool:
        self._one[0].id, self._one[0].logit, self._one[0].p = token, logit, 0.0
        arr = self._lib.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._lib.llama_sampler_apply(self.sampler, ctypes.byref(arr))
        return math.isfinite(self._one[0].logit)

    def _best_allowed(self, logits: np.ndarray) -> int:
        filtered = self.filtered(logits)
        best = int(np.argmax(filtered))
        if not math.isfinite(float(filtered[best])):
            raise RuntimeError("the grammar allows no token here (model output cannot continue)")
        return best

    def filtered(self, logits: np.ndarray) -> np.ndarray:
        """The logits with every token the grammar rejects here set to -inf (a copy)."""
        if self._all is None:
            self._all = (self._lib.llama_token_data * self.n_vocab)()
            view = np.ctypeslib.as_array(self._all)
            view["id"] = np.arange(self.n_vocab, dtype=np.int32)
        view = np.ctypeslib.as_array(self._all)
        view["logit"] = logits
        view["p"] = 0.0
        arr = self._lib.llama_token_data_array(data=self._all, size=self.n_vocab, selected=-1, sorted=False)
        self._lib.llama_sampler_apply(self.sampler, ctypes.byref(arr))
        return view["logit"].astype(np.float64)

    def _choose(self, logits: np.ndarray) -> int:
        token = int(np.argmax(logits))
        if self.sampler is None or self._allowed(token, float(logits[token])):
            return token
        return self._best_allowed(logits)

    def _logits(self) -> np.ndarray:
        ptr = self._lib.llama_get_logits_ith(self.llama._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _eval_rows(self, tokens: list[int]) -> list[np.ndarray]:
        """Evaluate `tokens` in one batch after the cache; the logits after each of them (views of
        the engine's buffer, valid until the next decode)."""
        llama = self.llama
        if len(tokens) == 1:
            llama.eval(tokens)
            return [self._logits()]
        llama._ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)
        n_past = llama.n_tokens
        llama._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
        llama._ctx.decode(llama._batch)
        llama.input_ids[n_past:n_past + len(tokens)] = tokens
        llama.n_tokens += len(tokens)
        ctx = llama._ctx.ctx
        return [np.ctypeslib.as_array(self._lib.llama_get_logits_ith(ctx, i), shape=(self.n_vocab,))
                for i in range(len(tokens))]

    def generate(self, prompt: list[int], *, max_tokens: int, stop: list[str],
                 first_token_bias: dict[int, float] | None = None,
                 lookup: Drafter | None = None,
                 bias_after: BiasAfter | None = None,
                 stop_repeated_call: bool = False) -> Iterator[tuple[str, str | None]]:
        """Yield (text piece, finish_reason or None); the last item carries 'stop' or 'length'.

        `bias_after` (text, bias): the bias applies to every token that follows the text (the next
        call's opening after a closed call).

        With `lookup` (a `Drafter`: a PromptLookup over `prompt`, or a CallDrafter), each evaluated
        token goes with the tokens the lookup guesses come next, in one batch; the guesses the model confirms are kept (the
        output is the greedy output either way), the rest leave the cache again.
        """
        llama = self.llama
        cached = common_prefix(llama.input_ids[: llama.n_tokens].tolist(), prompt)
        cached = min(cached, len(prompt) - 1)  # always evaluate at least one token for fresh logits
        llama.n_tokens = cached
        llama.eval(prompt[cached:])
        out = StopText(llama, stop, stop_repeated_call)
        rows = [self._logits()]  # the logits for the next positions, one row each
        drafted: list[int] = []  # guessed tokens in the cache beyond those generated
        for i in range(max_tokens):
            token = self._choose(with_first_token_bias(rows.pop(0), first_token_bias if i == 0
                                                       else bias_following(out.text, bias_after)))
            if drafted:
                if token == drafted[0]:
                    drafted.pop(0)  # already in the cache, and `rows` holds what follows it
                else:  # a wrong guess: it and everything guessed after it leave the cache
                    llama.n_tokens -= len(drafted)
                    drafted, rows = [], []
                    self.drafts_rejected += 1
            self.n_generated += 1
            if self._lib.llama_vocab_is_eog(self.vocab, token):
                yield out.rest(), "stop"
                return
            self.accept(token)
            piece, stopped = out.add(token)
            if stopped:
                yield out.rest(), "stop"
                return
            if piece:
                yield piece, None
            if lookup is not None:
                lookup.append(token)
            if rows or i + 1 >= max_tokens:  # the last token's logits would never be read
                continue
            guess = lookup.draft(limit=max_tokens - i - 2) if lookup is not None else []
            rows = self._eval_rows([token, *guess])
            drafted = guess
            self.decode_calls += 1
            self.drafted += len(guess)
        yield out.rest(), "length"

    def accept(self, token: int) -> None:
        """Advance the grammar past the chosen token."""
        if self.sampler is not None:
            self._lib.llama_sampler_accept(self.sampler, token)

    def __enter__(self) -> LazyGrammarDecoder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
