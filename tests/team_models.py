"""Deterministic chat models for team tests: they answer from the prompt, so a copy of the model in
every actor (and a restarted actor) answers the same message the same way. Test-only: the product's
default is the embedded model."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence

from raygent.llm_pool.base import ChatModel, as_params
from raygent.schema import Completion, GenerationParams, Message, ToolCall, ToolSpec, Usage


class StoryRulesModel(ChatModel):
    """Plans a story as JSON when asked to plan; writes 'Page N: <what happens>' when asked for a
    page; echoes otherwise. `delay_s` makes each reply take that long (to kill or cancel mid-way)."""

    def __init__(self, delay_s: float = 0.0, page_delay_s: float | None = None):
        self.delay_s = delay_s
        self.page_delay_s = delay_s if page_delay_s is None else page_delay_s

    async def get_model_name(self) -> str:
        return "story-rules"

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None,
                   params: GenerationParams | dict | None = None) -> Completion:
        as_params(params)
        prompt = messages[-1].content or ""
        plan = re.search(r"Plan a (\d+)-page picture book about: (.+)", prompt)
        page = re.search(r"Write page (\d+) of \d+\. What happens: (.+)", prompt)
        zh_plan = re.search(r"写一本(\d+)页的绘本规划：(.+)", prompt)
        zh_page = re.search(r"请写第(\d+)页.*情节：(.+)", prompt)
        if plan or zh_plan:
            await asyncio.sleep(self.delay_s)
            n, topic = (plan or zh_plan).groups()
            text = json.dumps({"title": f"The Tale of {topic}"[:60] if plan else f"{topic}的故事",
                               "cast": [{"name": "Fox", "description": "a small red fox", "look": "orange fur, white tail"},
                                        {"name": "Owl", "description": "a wise owl", "look": "brown feathers"}],
                               "pages": [{"index": i, "scene": f"Fox and Owl in the forest, scene {i}",
                                          "summary": f"step {i} of {topic}"} for i in range(1, int(n) + 1)]},
                              ensure_ascii=False)
        elif page or zh_page:
            await asyncio.sleep(self.page_delay_s)
            n, what = (page or zh_page).groups()
            text = f"Page {n}: {what.strip()}."
        else:
            await asyncio.sleep(self.delay_s)
            text = f"echo: {prompt[-200:]}"
        if tools and (plan or zh_plan):  # a structured request: the plan comes as the required call
            call = ToolCall(name=tools[0].name, arguments=json.loads(text))
            return Completion(tool_calls=[call], model="story-rules", finish_reason="tool_calls")
        return Completion(text=text, model="story-rules", usage=Usage(prompt_tokens=len(prompt) // 4,
                                                                      completion_tokens=len(text) // 4))
