"""The served-agents test app: rule-based models (each calls its tool, then answers from the result)
and three agents on them, as a serve config."""

from __future__ import annotations

from typing import Any


def _tool_model(tool: str, argument: str, delay_s: float = 0.0) -> dict[str, Any]:
    rule: dict[str, Any] = {"tool": tool, "argument": argument}
    if delay_s:
        rule["delay_s"] = delay_s
    return {"model": {"type": "scripted", "tool_then_answer": rule}, "pool": {"num_cpus": 0}}


def scripted_agents_config(state_url: str, *, slow_delay_s: float = 3.0, **extra: Any) -> dict[str, Any]:
    """`calc` (calculator), `slow` (calculator, each model reply `slow_delay_s` late) and `painter`
    (image_generate, no memory); `extra` adds or replaces top-level sections."""
    return {
        "models": {"calc-model": _tool_model("calculator", "expression"),
                   "slow-model": _tool_model("calculator", "expression", slow_delay_s),
                   "paint-model": _tool_model("image_generate", "prompt")},
        "agents": {
            "calc": {"description": "Does arithmetic with the calculator.", "model": "calc-model",
                     "tools": ["calculator"], "deployment": {"num_cpus": 0}},
            "slow": {"model": "slow-model", "tools": ["calculator"], "deployment": {"num_cpus": 0}},
            "painter": {"model": "paint-model", "tools": ["image_generate"], "memory": False,
                        "deployment": {"num_cpus": 0}},
        },
        "default_model": "calc-model",
        "default_agent": "calc",
        "state": {"url": state_url},
        **extra,
    }
