"""Register your own tool: a typed function with `@tool` (schema from the signature and docstring).

The same tool works with raygent's Agent and with the seed-style AgentExecutor
(`additional_tool_list`, which also accepts seed-style tool objects). Run:
.venv/bin/python examples/register_tool.py
"""

import time

from raygent import tool
from raygent.compat import AgentExecutor, LLMFactory


@tool
def bmi(weight_kg: float, height_m: float) -> dict:
    """Compute the body-mass index from weight and height.

    Args:
        weight_kg: body weight in kilograms
        height_m: height in metres
    """
    value = weight_kg / height_m**2
    band = "underweight" if value < 18.5 else "normal" if value < 25 else "overweight" if value < 30 else "obese"
    return {"bmi": round(value, 1), "band": band}


print("schema:", bmi.spec.parameters)
agent = AgentExecutor(LLMFactory.build_llm("qwen2.5-coder-0.5b-instruct"), tool_cfg={}, additional_tool_list=[bmi])

start = time.perf_counter()
results = agent.run("I weigh 70 kg and I am 1.75 m tall. What is my BMI?", print_info=True)
print(f"\nexec results ({time.perf_counter() - start:.1f} s):")
for item in results:
    print(" ", item)
