"""Schema drafts inside tool calls against prompt n-gram drafts: same replies, fewer decode calls?

Both are speculative greedy decoding (raygent.llm_pool.lazy_decode): the decoder evaluates a
guess of the next tokens in one batch and keeps what the model confirms. The baseline guesses
from the prompt's n-grams everywhere (`LlamaCppChatModel(draft_calls=False)`, session 22);
`draft_calls=True` (the default) guesses inside a call from the offered tools' schemas and the
conversation's values (raygent.llm_pool.call_draft).

For each request it takes the first reply exactly as `chat` would prompt it (the default model,
its grammar, exemplars and first-token bias), evaluates the prompt once, then generates the reply
with each drafter in turn (the order alternates between requests), timing the generation alone.
Requests: the first steps of benchmarks/multi_step_unseen.py (invented tools, 5 offered) and,
where the `bfcl-eval` wheel is installed, the first N of BFCL's seed-0 shuffle per category.

Prints per set: replies identical, decode calls, generation seconds (sum and median per reply),
and the ratio of schema drafts to the baseline.

Run: .venv/bin/python benchmarks/call_drafts.py [--bfcl CATEGORIES] [--limit N] [--no-unseen]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from raygent.llm_pool.lazy_decode import common_prefix  # noqa: E402
from raygent.llm_pool.llama_cpp import LlamaCppChatModel  # noqa: E402
from raygent.schema import GenerationParams, Message, ToolSpec  # noqa: E402


def unseen_requests() -> list[tuple[str, list[Message], list[ToolSpec]]]:
    import multi_step_unseen as unseen

    out = []
    for i, case in enumerate(unseen.CASES):
        tools = [t.spec for t in unseen.make_tools(unseen.offered_tools(case, i))]
        out.append((f"unseen_{i}", [Message.user(case.request)], tools))
    return out


def bfcl_requests(categories: str, limit: int) -> list[tuple[str, list[Message], list[ToolSpec]]]:
    from raygent.evaluation.bfcl import load_cases

    return [(c.id, list(c.messages), list(c.tools)) for c in load_cases(categories, limit=limit, seed=0)]


def generate(llm: LlamaCppChatModel, kwargs: dict[str, Any]) -> tuple[str, int, float]:
    """(reply text, decode calls, seconds) of one greedy generation, the prompt already cached."""
    before = llm.decode_stats()["decode_calls"]
    start = time.perf_counter()
    text = "".join(piece for piece, _, _ in llm._generate(kwargs))
    seconds = time.perf_counter() - start
    return text, llm.decode_stats()["decode_calls"] - before, seconds


def compare(models: dict[bool, LlamaCppChatModel], requests: list, params: GenerationParams) -> dict[str, Any]:
    llama = models[True]._llama
    same, calls, seconds = 0, {True: 0, False: 0}, {True: [], False: []}
    differ = []
    for n, (name, messages, tools) in enumerate(requests):
        kwargs, _ = models[True]._prepare(messages, tools, params)
        prompt = kwargs["prompt"]
        cached = min(common_prefix(llama.input_ids[: llama.n_tokens].tolist(), prompt), len(prompt) - 1)
        llama.n_tokens = cached
        llama.eval(prompt[cached:-1])  # the prompt but its last token: each run evaluates that one
        texts = {}
        for draft_calls in ((True, False) if n % 2 else (False, True)):
            text, used, took = generate(models[draft_calls], kwargs)
            texts[draft_calls] = text
            calls[draft_calls] += used
            seconds[draft_calls].append(took)
        if texts[True] == texts[False]:
            same += 1
        else:
            differ.append(name)
    return {"same": same, "n": len(requests), "calls": calls, "seconds": seconds, "differ": differ}


def report(label: str, r: dict[str, Any]) -> None:
    s_on, s_off = sum(r["seconds"][True]), sum(r["seconds"][False])
    print(f"{label}: replies identical {r['same']}/{r['n']}"
          + (f" (differ: {', '.join(r['differ'][:8])})" if r["differ"] else ""))
    print(f"  decode calls: prompt n-grams {r['calls'][False]}, schema drafts {r['calls'][True]} "
          f"(ratio {r['calls'][True] / max(1, r['calls'][False]):.2f})")
    print(f"  generation seconds: prompt n-grams {s_off:.1f} (median {statistics.median(r['seconds'][False]):.2f}), "
          f"schema drafts {s_on:.1f} (median {statistics.median(r['seconds'][True]):.2f}); "
          f"ratio {s_on / s_off:.2f}", flush=True)


def main() -> None:
    from raygent.evaluation.cli import parse_options

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bfcl", default="simple_python,multiple,parallel,parallel_multiple,live_simple",
                        help="BFCL categories (needs the bfcl-eval wheel); '' for none")
    parser.add_argument("--limit", type=int, default=20, help="BFCL cases per category")
    parser.add_argument("--no-unseen", action="store_true", help="skip multi_step_unseen's first steps")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="a LlamaCppChatModel option")
    args = parser.parse_args()
    options = parse_options(args.set)
    base = LlamaCppChatModel(draft_calls=True, **options)
    base.load()
    other = LlamaCppChatModel(draft_calls=False, **options)
    other._llama, other._template = base._llama, base._template  # one set of weights, one KV cache
    models = {True: base, False: other}
    params = GenerationParams(max_tokens=args.max_tokens)
    print(f"machine: {platform.machine()} cpus={os.cpu_count()}; model {base.model_name}; options {options or 'defaults'}")
    sets = []
    if not args.no_unseen:
        sets.append(("multi_step_unseen first steps", unseen_requests()))
    if args.bfcl:
        try:
            for category in args.bfcl.split(","):
                sets.append((f"BFCL {category} (first {args.limit})", bfcl_requests(category, args.limit)))
        except Exception as exc:  # the wheel is an eval extra
            print(f"BFCL skipped: {exc}")
    total = {"same": 0, "n": 0, "calls": {True: 0, False: 0}, "seconds": {True: [], False: []}, "differ": []}
    for label, requests in sets:
        r = compare(models, requests, params)
        report(label, r)
        for key in ("same", "n"):
            total[key] += r[key]
        for flag in (True, False):
            total["calls"][flag] += r["calls"][flag]
            total["seconds"][flag] += r["seconds"][flag]
        total["differ"] += r["differ"]
    if len(sets) > 1:
        report("all", total)


if __name__ == "__main__":
    main()
