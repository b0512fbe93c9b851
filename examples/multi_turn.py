"""Multi-turn tool use: the follow-up refers to the previous turn ("this address").

History is kept across `run` calls until `reset()`, as in the seed. Run:
.venv/bin/python examples/multi_turn.py
"""

import time

from raygent.compat import AgentExecutor, LLMFactory

agent = AgentExecutor(LLMFactory.build_llm("qwen2.5-coder-0.5b-instruct"), {"modelscope_text-address": {"use": True}})

for turn in ("使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区",
             "这个地址属于哪个区？"):
    start = time.perf_counter()
    results = agent.run(turn)
    calls = [(r["name"], r["arguments"]) for r in results if "name" in r]
    print(f"user: {turn}\n  tool calls: {calls}\n  answer: {results[-1]['answer']}  "
          f"({time.perf_counter() - start:.1f} s)")

print("messages in history:", len(agent.history))
agent.reset()  # a fresh conversation: the earlier turns are forgotten
print("messages after reset:", len(agent.history))
