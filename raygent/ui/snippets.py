"""The code shown after publishing: curl and the openai SDK, with the real URL, key and agent."""

from __future__ import annotations

import json

EXAMPLE = "使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区"


def _base(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def curl(url: str, key: str | None, agent: str, text: str = EXAMPLE) -> str:
    body = json.dumps({"model": agent, "messages": [{"role": "user", "content": text}]}, ensure_ascii=False)
    auth = f" \\\n  -H 'Authorization: Bearer {key}'" if key else ""
    return (f"curl -s {_base(url)}/chat/completions \\\n  -H 'Content-Type: application/json'{auth} \\\n"
            f"  -d '{body}'")


def openai_sdk(url: str, key: str | None, agent: str, text: str = EXAMPLE) -> str:
    return (f"import openai\n\n"
            f"client = openai.OpenAI(base_url={_base(url)!r}, api_key={(key or 'unused')!r})\n"
            f"reply = client.chat.completions.create(\n"
            f"    model={agent!r},\n"
            f"    messages=[{{\"role\": \"user\", \"content\": {json.dumps(text, ensure_ascii=False)}}}],\n"
            f")\n"
            f"print(reply.choices[0].message.content)\n"
            f"print(reply.model_extra[\"raygent\"][\"tool_calls\"])   # the agent's tool calls\n")


__all__ = ["curl", "openai_sdk", "EXAMPLE"]
