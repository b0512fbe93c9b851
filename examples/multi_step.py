"""Multi-step tool use: one request that needs two tools in sequence (parse an address, then compute).

Run: .venv/bin/python examples/multi_step.py
"""

import time

from raygent.compat import AgentExecutor, LLMFactory

llm = LLMFactory.build_llm("qwen2.5-coder-0.5b-instruct")  # an embedded model by name, no config file
agent = AgentExecutor(llm, {"address_parse": {"use": True}, "calculator": {"use": True}})

start = time.perf_counter()
results = agent.run("First parse the address 浙江杭州市江干区九堡镇三村村一区 with the address tool, then use the "
                    "calculator to compute its adcode divided by 2.", print_info=True)
print(f"\nexec results ({time.perf_counter() - start:.1f} s):")
for item in results:
    print(" ", item)
print("tools used in order:", [r["name"] for r in results if "name" in r])
