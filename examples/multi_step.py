"""Multi-step tool use: one request that needs two calls in sequence, the second using the first's result.

Uses the larger embedded option (Qwen2.5-Coder-1.5B-Instruct, `pip install 'raygent[llama-1_5b]'`):
measured here, the 0.5B default answers after the first result instead of chaining a second call.
The 1.5B chains this request because it spells out both calls; on requests that leave the steps
implicit both embedded models mostly stop after the first result (benchmarks/multi_step.py).
Pass another embedded name or a GGUF path as the first argument to compare.

Run: .venv/bin/python examples/multi_step.py [MODEL]
"""

import sys
import time

from raygent.compat import AgentExecutor, LLMFactory

model = sys.argv[1] if len(sys.argv) > 1 else "qwen2.5-coder-1.5b-instruct"
llm = LLMFactory.build_llm(model)  # an embedded model by name (or a GGUF path), no config file
agent = AgentExecutor(llm, {"calculator": {"use": True}, "address_parse": {"use": True}})

start = time.perf_counter()
results = agent.run("First call the calculator for 17*23. After it returns, call the calculator again to multiply "
                    "that result by 3.", print_info=True)
print(f"\nexec results ({time.perf_counter() - start:.1f} s):")
for item in results:
    print(" ", item)
print("tools used in order:", [r["name"] for r in results if "name" in r])
