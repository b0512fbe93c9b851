"""Single-step tool use: the seed's first README demo, on the embedded model (CPU, offline).

The seed enabled `modelscope_text-address` (ModelScope's hosted address model); raygent maps that
name to its built-in `address_parse` tool (cpca). Run: .venv/bin/python examples/single_step.py
"""

import time

from raygent.compat import AgentExecutor, Config, LLMFactory, load_env, template_path

load_env()  # optional: a .env with MODEL_CONFIG_FILE / TOOL_CONFIG_FILE / API keys, as in the seed

model_cfg = Config.from_file(template_path("model"))
tool_cfg = {"modelscope_text-address": {"use": True}}  # a seed-style tool config, by the seed's tool name

llm = LLMFactory.build_llm("qwen2.5-coder-0.5b", model_cfg)
agent = AgentExecutor(llm, tool_cfg)
print("tools offered:", list(agent.available_tool_list))

start = time.perf_counter()
results = agent.run("使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区",
                    print_info=True)
print(f"\nexec results ({time.perf_counter() - start:.1f} s):")
for item in results:
    print(" ", item)
