"""Chat models behind one interface: `chat(...) -> Completion`, `stream(...) -> AsyncIterator[Delta]`."""

from raygent.llm_pool.base import ChatModel

__all__ = ["ChatModel", "LlamaCppChatModel", "ScriptedChatModel", "PooledLLM", "PoolConfig", "serve_model"]

_POOL = {"PooledLLM", "PoolConfig", "serve_model"}


def __getattr__(name: str):  # lazy: llama_cpp is an optional extra
    if name == "LlamaCppChatModel":
        from raygent.llm_pool.llama_cpp import LlamaCppChatModel

        return LlamaCppChatModel
    if name == "ScriptedChatModel":
        from raygent.llm_pool.scripted import ScriptedChatModel

        return ScriptedChatModel
    if name in _POOL:
        from raygent.llm_pool import pool

        return getattr(pool, name)
    raise AttributeError(name)
