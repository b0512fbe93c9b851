"""ModelScope-Agent (v0.x) compatible API on raygent: port a seed script by changing its imports.

    from raygent.compat import AgentExecutor, Config, LLMFactory, template_path
    llm = LLMFactory.build_llm("qwen2.5-coder-0.5b", Config.from_file(template_path("model")))
    agent = AgentExecutor(llm, Config.from_file(template_path("tool")))
    agent.run("使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区")
"""

from raygent.compat.agent_executor import AgentExecutor, EventLoopError, exec_results, seed_event
from raygent.compat.config import (
    Config,
    ConfigError,
    api_keys,
    default_model_config,
    default_tool_config,
    get_api_key,
    load_env,
    template_path,
)
from raygent.compat.llm_factory import BACKENDS, LLMFactory, LLMSpec, UnsupportedBackendError, generation_params
from raygent.compat.prompt import AgentType, format_for_prompt_generator
from raygent.compat.tools import SEED_TOOLS, SeedToolAdapter, as_tool

build_llm = LLMFactory.build_llm  # shorthand

__all__ = ["AgentExecutor", "AgentType", "BACKENDS", "Config", "ConfigError", "EventLoopError",
           "LLMFactory", "LLMSpec", "SEED_TOOLS", "SeedToolAdapter", "UnsupportedBackendError", "api_keys",
           "as_tool", "build_llm", "default_model_config", "default_tool_config", "exec_results",
           "format_for_prompt_generator", "generation_params", "get_api_key", "load_env", "seed_event",
           "template_path"]
