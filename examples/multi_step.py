"""Multi-step tool use: one request that needs two tools in sequence, the second using the first's result.

Uses the embedded 0.5B model, which runs with the shipped `multistep` LoRA adapter by default
(docs/training.md): the plain 0.5B parses the address and stops; with the adapter it passes the
district it found to the speech tool (benchmarks/multi_step.py: 8 of 8 held-out two-step requests
chained, 0 without). Pass `none` as the first argument to see the model without the adapter.

Run: .venv/bin/python examples/multi_step.py [ADAPTER|none]
"""

import asyncio
import sys
import time

from raygent import Agent
from raygent.llm_pool.llama_cpp import LlamaCppChatModel
from raygent.toolhub.builtin import BUILTIN_TOOLS

llm = LlamaCppChatModel(lora=sys.argv[1] if len(sys.argv) > 1 else "auto")  # "none": the plain model
tools = [BUILTIN_TOOLS[name]() for name in ("address_parse", "calculator", "current_datetime", "text_to_speech")]

start = time.perf_counter()
result = asyncio.run(Agent(llm=llm, tools=tools).run(
    "Parse the address 浙江杭州市江干区九堡镇三村村一区, then read the district name aloud with text to speech."))
print(f"{result.model} ({time.perf_counter() - start:.1f} s)")
for call in result.tool_calls:
    print(f"  {call.name}({call.arguments}) -> {call.result if call.error is None else call.error}")
print("answer:", result.answer)
print("artifacts:", [a.uri for a in result.artifacts])
