"""The embedded default model on this machine: seconds per tool-calling turn, tokens/s, peak RSS.

A "tool-calling turn" is one model call that must produce a tool call for a request (system
prompt, tool section and exemplars unchanged between turns, as in an agent session). The
baseline, measured in the same run, is the same turns with the KV cache cleared before each one
(what a server without prefix reuse pays). Goal: median at most 0.7 s per tool call on 2 cores
(issue 15; the first goal was 1.5 s). The turns are also timed without speculative guesses and with
guesses from the prompt's n-grams only (`draft_calls=False`), alternating in the same run.

With an adapter, the run ends with the adapter folded into the weights (`merge_lora=True`, the
default) against llama.cpp's run-time adapter (`merge_lora=False`), both loaded and measured in
alternation: free-text tokens/s, the warm tool-calling turn, and whether both call the same tools.

Run: .venv/bin/python benchmarks/embedded_model.py [--model NAME_OR_GGUF] [--lora auto|none|ADAPTER]
     [--no-merge-ab]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import time

from raygent.llm_pool.llama_cpp import LlamaCppChatModel
from raygent.schema import GenerationParams, Message
from raygent.toolhub.builtin import default_tools

REQUESTS = [
    ("使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区", "address_parse"),
    ("Parse this address: 上海市浦东新区张江镇祖冲之路100号", "address_parse"),
    ("北京市海淀区中关村大街27号 是哪个区的？", "address_parse"),
    ("What is 23*47+12?", "calculator"),
    ("计算 3.5 乘以 4 再减去 2", "calculator"),
    ("Compute 1234 * 5678", "calculator"),
    ("今天几号？", "current_datetime"),
    ("What day of the week is it today?", "current_datetime"),
]


async def turns(llm: LlamaCppChatModel, cold: bool) -> tuple[list[float], int]:
    specs = [t.spec for t in default_tools()]
    seconds, correct = [], 0
    for text, gold in REQUESTS:
        if cold:
            llm._llama.reset()  # forget the cached prefix
        start = time.perf_counter()
        c = await llm.chat([Message.user(text)], specs, GenerationParams(max_tokens=128))
        seconds.append(time.perf_counter() - start)
        correct += bool(c.tool_calls) and c.tool_calls[0].name == gold
    return seconds, correct


def free_text_tps(llm: LlamaCppChatModel) -> float:
    """Generated tokens per second of a free-text reply (no grammar), prompt time taken out."""
    llama = llm.load()
    llama.reset()
    text = "<|im_start|>user\nWrite a long story about a lighthouse.<|im_end|>\n<|im_start|>assistant\n"
    t0 = time.perf_counter()
    llama.eval(llama.tokenize(text.encode(), add_bos=False, special=True))
    prompt_s = time.perf_counter() - t0
    llama.reset()
    t0 = time.perf_counter()
    out = llama.create_completion(text, max_tokens=96, temperature=0.0)
    return out["usage"]["completion_tokens"] / max(1e-9, time.perf_counter() - t0 - prompt_s)


async def merge_ab(model: str | None, lora: str, options: dict, rounds: int = 3) -> None:
    """The adapter merged into the weights vs llama.cpp's run-time adapter, alternating."""
    merged = LlamaCppChatModel(model, lora=lora, **{**options, "merge_lora": True})
    runtime = LlamaCppChatModel(model, lora=lora, **{**options, "merge_lora": False})
    if merged.lora is None:
        return
    t0 = time.perf_counter()
    merged.load()
    merge_load_s = time.perf_counter() - t0
    runtime.load()
    tps: dict[str, list[float]] = {"merged": [], "runtime": []}
    turn: dict[str, list[float]] = {"merged": [], "runtime": []}
    calls: dict[str, list] = {"merged": [], "runtime": []}
    for llm in (merged, runtime):
        await turns(llm, cold=False)  # warm the shared prefix
    specs = [t.spec for t in default_tools()]
    for _ in range(rounds):
        for name, llm in (("merged", merged), ("runtime", runtime)):
            tps[name].append(free_text_tps(llm))
            turn[name] += (await turns(llm, cold=False))[0]
    for name, llm in (("merged", merged), ("runtime", runtime)):
        for text, _ in REQUESTS:
            c = await llm.chat([Message.user(text)], specs, GenerationParams(max_tokens=128))
            calls[name].append([(call.name, call.arguments) for call in c.tool_calls])
    same = sum(a == b for a, b in zip(calls["merged"], calls["runtime"]))
    m_tps, r_tps = statistics.median(tps["merged"]), statistics.median(tps["runtime"])
    m_turn, r_turn = statistics.median(turn["merged"]), statistics.median(turn["runtime"])
    print(f"adapter merged into the weights (load incl. merge if not cached {merge_load_s:.1f} s) vs run-time adapter, "
          f"alternating, {rounds} rounds:")
    print(f"  free text: merged {m_tps:.1f} tok/s, run-time {r_tps:.1f} tok/s; ratio {m_tps / r_tps:.2f}")
    print(f"  tool-calling turn, prefix cached: merged median {m_turn:.2f} s, run-time {r_turn:.2f} s; "
          f"ratio {m_turn / r_turn:.2f}")
    print(f"  same tool calls (names and arguments) on {same}/{len(REQUESTS)} requests")


async def main(model: str | None, lora: str, options: dict | None = None) -> None:
    llm = LlamaCppChatModel(model, lora=lora, **(options or {}))
    t0 = time.perf_counter()
    llama = llm.load()
    load_s = time.perf_counter() - t0
    # prompt throughput: a cold evaluation of the full agent prompt
    specs = [t.spec for t in default_tools()]
    prompt = llama.tokenize(llm.render_prompt([Message.user(REQUESTS[0][0])], specs).encode(), add_bos=False,
                            special=True)
    llama.reset()
    t0 = time.perf_counter()
    llama.eval(prompt)
    prompt_tps = len(prompt) / (time.perf_counter() - t0)
    # generation throughput: free text, no grammar
    llama.reset()
    t0 = time.perf_counter()
    out = llama.create_completion("<|im_start|>user\nWrite a long story about a lighthouse.<|im_end|>\n"
                                  "<|im_start|>assistant\n", max_tokens=128, temperature=0.0)
    gen_s = time.perf_counter() - t0
    n_prompt = out["usage"]["prompt_tokens"]
    gen_tps = out["usage"]["completion_tokens"] / max(1e-9, gen_s - n_prompt / prompt_tps)
    await turns(llm, cold=False)  # warm the shared prefix
    warm, warm_ok = await turns(llm, cold=False)
    stats = llm.decode_stats()
    # the same warm turns without speculative guesses, alternating with guesses to share the machine's phase
    speculate, plain, fast = llm.speculate, [], []
    draft_calls, ngrams_only = llm.draft_calls, []  # and guesses from the prompt's n-grams only (session 22)
    for _ in range(2):
        llm.speculate = False
        plain += (await turns(llm, cold=False))[0]
        llm.speculate = speculate
        fast += (await turns(llm, cold=False))[0]
        llm.draft_calls = False
        ngrams_only += (await turns(llm, cold=False))[0]
        llm.draft_calls = draft_calls
    cold, cold_ok = await turns(llm, cold=True)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(f"machine: {platform.machine()} cpus={os.cpu_count()} threads={llm.n_threads}; model {llm.model_name}")
    print(f"load {load_s:.2f} s; agent prompt {len(prompt)} tokens")
    print(f"prompt eval {prompt_tps:.0f} tok/s; generation {gen_tps:.1f} tok/s")
    print(f"tool-calling turn, prefix cached: median {statistics.median(warm):.2f} s "
          f"(max {max(warm):.2f}), right tool {warm_ok}/{len(REQUESTS)}  (goal <= 0.7 s)")
    print(f"baseline, cache cleared:          median {statistics.median(cold):.2f} s, right tool {cold_ok}/{len(REQUESTS)}")
    print(f"ratio cached / cleared = {statistics.median(warm) / statistics.median(cold):.2f}")
    print(f"decode calls {stats['decode_calls']} for {stats['generated']} tokens "
          f"({stats['drafted']} guessed tokens evaluated, {stats['drafts_rejected']} guesses cut short)")
    print(f"speculate={speculate}: median {statistics.median(fast):.2f} s; speculate=False: median "
          f"{statistics.median(plain):.2f} s; ratio {statistics.median(fast) / statistics.median(plain):.2f} "
          f"(alternating, 16 turns each)")
    print(f"draft_calls={draft_calls}: median {statistics.median(fast):.2f} s; guesses from prompt n-grams only "
          f"(draft_calls=False): median {statistics.median(ngrams_only):.2f} s; ratio "
          f"{statistics.median(fast) / statistics.median(ngrams_only):.2f} (same alternation)")
    print(f"peak RSS {rss_gb:.2f} GB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--lora", default="auto", help="LoRA adapter: auto (the model's default), none, or a name/path")
    parser.add_argument("--no-merge-ab", action="store_true", help="skip the merged vs run-time adapter comparison")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="a LlamaCppChatModel option, e.g. --set max_calls=4 --set relevance_bias=null")
    args = parser.parse_args()
    from raygent.evaluation.cli import parse_options

    options = parse_options(args.set)
    asyncio.run(main(args.model, args.lora, options))
    if not args.no_merge_ab:
        asyncio.run(merge_ab(args.model, args.lora, options))
