"""The same agent with its LLM and its tools as Ray actors (`raygent.deploy`).

First with raygent's own API (Agent + deploy), then with the seed-style executor's `remote=True`,
which deploys the tools itself and here reuses the LLM actor. The agent code does not change:
actor proxies have the same awaitable methods. Run: .venv/bin/python examples/remote_agent.py
"""

import asyncio
import time

from raygent import Agent, ToolRegistry, deploy
from raygent.compat import AgentExecutor
from raygent.llm_pool.llama_cpp import LlamaCppChatModel
from raygent.runtime import init, shutdown
from raygent.toolhub.builtin import AddressParseTool

TASK = "使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区"

init(num_cpus=2)
start = time.perf_counter()
# classes plus arguments: the model is constructed (and loaded) inside its actor, never pickled
llm = deploy(LlamaCppChatModel, init_kwargs={"model": "qwen2.5-coder-0.5b-instruct"})
tools = deploy(ToolRegistry, init_kwargs={"tools": [AddressParseTool()]})
print(f"actors up ({time.perf_counter() - start:.1f} s): {llm!r}\n  {tools!r}")

agent = Agent(llm, tools)
start = time.perf_counter()
result = asyncio.run(agent.run(TASK))
print(f"Agent on actors ({time.perf_counter() - start:.1f} s):")
print("  calls:", [(c.name, c.arguments, c.result) for c in result.tool_calls])
print("  answer:", result.answer)

executor = AgentExecutor(llm, {"modelscope_text-address": {"use": True}})  # an llm proxy is used as is
start = time.perf_counter()
results = executor.run("使用地址识别模型，找到省市区等元素，地址：北京市海淀区中关村大街27号", remote=True)
print(f"AgentExecutor.run(remote=True) ({time.perf_counter() - start:.1f} s):")
for item in results:
    print(" ", item)
executor.close()  # stops the actors the executor started (its tools; the llm actor is ours)
shutdown()
