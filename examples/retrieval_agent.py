"""An agent with 2,000 registered tools: the ToolRetriever offers the model only the top 5 per turn.

The catalogue is the built-in tools plus 1,997 synthetic ones (raygent/retrieval/synthetic.py). The
retriever runs as a Ray actor when `--remote` is given (same interface). Prints which tools reached
the prompt and what the model did with them. Needs the embedded model (`make setup`).

Run: .venv/bin/python examples/retrieval_agent.py ["your request"] [--remote]
"""

import asyncio
import sys
import time

from raygent import Agent, runtime
from raygent.retrieval.synthetic import synthetic_tools
from raygent.retrieval.tool_retriever import ToolRetriever
from raygent.toolhub.base import Tool
from raygent.toolhub.builtin import default_tools
from raygent.toolhub.registry import ToolRegistry


class CatalogueTool(Tool):
    """A stand-in for a real API: echoes the call (the catalogue is synthetic)."""

    def __init__(self, spec):
        self.name, self.description, self.parameters = spec.name, spec.description, spec.parameters

    async def call(self, **arguments):
        return {"tool": self.name, "arguments": arguments}


class ShowTools:
    """Wraps the retriever to print the specs it selects each turn."""

    def __init__(self, retriever):
        self.retriever = retriever

    async def select(self, query, specs, k):
        chosen = await self.retriever.select(query, specs, k)
        print(f"offered to the model ({len(chosen)} of {len(specs)}):", [s.name for s in chosen])
        return chosen


async def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--remote"]
    request = args[0] if args else "Please calculate 17*23 for me."
    registry = ToolRegistry([CatalogueTool(s) for s in synthetic_tools(1997)] + default_tools())
    retriever = runtime.deploy(ToolRetriever, remote="--remote" in sys.argv)
    agent = Agent(tools=registry, retriever=ShowTools(retriever), tool_top_k=5)
    start = time.perf_counter()
    result = await agent.run(request)
    for call in result.tool_calls:
        print(f"tool call: {call.name}({call.arguments}) -> {call.result if call.error is None else call.error}")
    print(f"answer: {result.answer}\n({result.steps} steps, {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    asyncio.run(main())
