"""Shared fixtures: one local Ray cluster and one embedded model per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_cluster():
    """The one local Ray cluster of this test session (started on first use)."""
    import ray

    from raygent import runtime

    runtime.init(num_cpus=4, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    runtime.shutdown()


@pytest.fixture(scope="session")
def embedded_llm():
    """The embedded default model (Qwen2.5-Coder-0.5B-Instruct GGUF on llama.cpp), loaded once."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    llm = LlamaCppChatModel()
    llm.load()
    return llm
