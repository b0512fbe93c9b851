"""Multi-step tool use on embedded models: requests whose second step needs the first one's result.

Eight two-step requests (arithmetic chains, date -> arithmetic, address -> speech, date -> speech;
English and Chinese) and four single-step ones, each run through the Agent with the built-in
address, calculator, date and speech tools. A two-step request counts as
  chained  - the expected tools in order and the expected answer;
  folded   - answered right from fewer calls where the later steps are arithmetic (`17*23*3` in one
             calculator call, or the age computed without the calculator); speech cannot be folded;
  failed   - anything else (stopped after the first result, a wrong value, the wrong tool).
Prints each case, the counts per model, and each model's ratio of chained requests to the first
model's (the baseline, by default the 0.5B embedded default).

Run: .venv/bin/python benchmarks/multi_step.py [MODEL[+ADAPTER] ...]   (embedded names or GGUF paths,
optionally with a LoRA adapter: a shipped name or a GGUF adapter path; default:
qwen2.5-coder-0.5b-instruct qwen2.5-coder-0.5b-instruct+multistep qwen2.5-coder-1.5b-instruct)
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
import time

# (request, expected tools in order, text the answer or the last result must contain (None: any),
#  foldable: the later steps are arithmetic the model may do in its first call or in its head;
#  speech is an action with an artifact and cannot be skipped)
TWO_STEP = [
    ("First call the calculator for 17*23. After it returns, call the calculator again to multiply that "
     "result by 3.", ["calculator", "calculator"], "1173", True),
    ("Compute 17*23 with the calculator, then multiply the result by 3.", ["calculator", "calculator"], "1173", True),
    ("Find out the current year, then calculate how old someone born in 1990 is this year.",
     ["current_datetime", "calculator"], "{age}", True),
    ("先用计算器算 25*4，然后把结果除以 5。", ["calculator", "calculator"], "20", True),
    ("What is 2**10? Then subtract 24 from the result.", ["calculator", "calculator"], "1000", True),
    ("Parse the address 浙江杭州市江干区九堡镇三村村一区, then read the district name aloud with text to speech.",
     ["address_parse", "text_to_speech"], "江干区", False),
    ("Get the current date and time, then say it out loud with text to speech.",
     ["current_datetime", "text_to_speech"], None, False),
    ("识别这个地址的城市：浙江杭州市江干区九堡镇三村村一区，然后用语音读出城市名。", ["address_parse", "text_to_speech"], "杭州", False),
]
SINGLE_STEP = [
    ("使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区", ["address_parse"], "江干区", False),
    ("What is 365*24?", ["calculator"], "8760", False),
    ("What time is it now?", ["current_datetime"], None, False),
    ("Hello, who are you?", [], None, False),
]
TOOLS = ("address_parse", "calculator", "current_datetime", "text_to_speech")


def _verdict(names: list[str], expected: list[str], answer_ok: bool, foldable: bool) -> str:
    if names == expected and answer_ok:
        return "chained" if len(expected) > 1 else "right"
    if foldable and answer_ok and 0 < len(names) < len(expected) and names == expected[:len(names)]:
        return "folded"  # the arithmetic of the later steps done in the first call (17*23*3) or in its head
    return "failed"


async def _evaluate(model: str, options: dict | None = None) -> dict[str, int]:
    from raygent import Agent
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.toolhub.builtin import BUILTIN_TOOLS

    name, _, lora = model.partition("+")  # MODEL+ADAPTER: a LoRA adapter on the model
    llm = LlamaCppChatModel(name, lora=lora or None, **(options or {}))
    llm.load()
    tools = [BUILTIN_TOOLS[name]() for name in TOOLS]
    age = str(time.gmtime().tm_year - 1990)
    counts = {"chained": 0, "folded": 0, "failed": 0, "right": 0, "single_failed": 0}
    seconds = []
    for request, expected, want, foldable in TWO_STEP + SINGLE_STEP:
        start = time.perf_counter()
        result = await Agent(llm=llm, tools=tools).run(request)
        seconds.append(time.perf_counter() - start)
        want = want.replace("{age}", age) if want else None
        last = json.dumps(result.tool_calls[-1].result, ensure_ascii=False) if result.tool_calls else ""
        answer_ok = want is None or want in result.answer or (want in last and len(expected) > 1)
        verdict = _verdict([c.name for c in result.tool_calls], expected, answer_ok, foldable)
        if len(expected) <= 1 and verdict == "failed":
            verdict = "single_failed"
        counts[verdict] += 1
        calls = ", ".join(f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in result.tool_calls)
        print(f"  [{verdict}] {request[:60]!r}: {calls or 'no call'} -> {result.answer[:70]!r} "
              f"({seconds[-1]:.1f} s)", flush=True)
    print(f"{model}: two-step {counts['chained']} chained, {counts['folded']} folded, {counts['failed']} failed "
          f"of {len(TWO_STEP)}; single-step {counts['right']} of {len(SINGLE_STEP)} right; "
          f"{sum(seconds):.0f} s in all", flush=True)
    return counts


def main() -> None:
    import argparse

    from raygent.evaluation.cli import parse_options

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=["qwen2.5-coder-0.5b-instruct",
                                                       "qwen2.5-coder-0.5b-instruct+multistep",
                                                       "qwen2.5-coder-1.5b-instruct"])
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="a LlamaCppChatModel option for every model, e.g. --set max_calls=4")
    args = parser.parse_args()
    models, options = args.models, parse_options(args.set)
    print(f"machine: {platform.machine()}; models: {', '.join(models)}; options: {options or 'defaults'}")
    results = {}
    for model in models:
        print(f"== {model}")
        results[model] = asyncio.run(_evaluate(model, options))
    base = results[models[0]]["chained"] + results[models[0]]["folded"]
    for model, counts in results.items():
        solved = counts["chained"] + counts["folded"]
        ratio = f"{solved / base:.2f}" if base else "n/a (baseline solved none)"
        print(f"{model}: two-step solved (chained + folded) {solved}/{len(TWO_STEP)}, chained "
              f"{counts['chained']}/{len(TWO_STEP)}; ratio of solved to {models[0]}: {ratio}")


if __name__ == "__main__":
    main()
