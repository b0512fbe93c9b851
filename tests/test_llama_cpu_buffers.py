"""llama.cpp's extra CPU buffer types (repacked weights, AMX) are off on CPUs with AMX, where
llama-cpp-python 0.3.36 built natively segfaults in its AMX matmul on the first decode."""

from __future__ import annotations

import pytest

llama_lib = pytest.importorskip("llama_cpp.llama_cpp")

from raygent.llm_pool import llama_cpp as backend  # noqa: E402


def test_extra_buffers_follow_the_cpu_unless_forced(monkeypatch):
    monkeypatch.delenv("RAYGENT_LLAMA_EXTRA_BUFFERS", raising=False)
    monkeypatch.setattr(backend, "_cpu_has_amx", lambda: True)
    assert backend._extra_buffers_safe() is False
    monkeypatch.setattr(backend, "_cpu_has_amx", lambda: False)
    assert backend._extra_buffers_safe() is True
    monkeypatch.setenv("RAYGENT_LLAMA_EXTRA_BUFFERS", "0")
    assert backend._extra_buffers_safe() is False
    monkeypatch.setenv("RAYGENT_LLAMA_EXTRA_BUFFERS", "on")
    monkeypatch.setattr(backend, "_cpu_has_amx", lambda: True)
    assert backend._extra_buffers_safe() is True


def test_loading_without_extra_buffers_changes_the_defaults_only_while_loading():
    original = llama_lib.llama_model_default_params
    assert original().use_extra_bufts is True  # llama.cpp's own default
    with backend._model_loading(extra_buffers=False):
        assert llama_lib.llama_model_default_params().use_extra_bufts is False
    assert llama_lib.llama_model_default_params is original
    with pytest.raises(RuntimeError), backend._model_loading(extra_buffers=False):
        raise RuntimeError("a load that fails")
    assert llama_lib.llama_model_default_params is original and backend._PARAMS_LOCK.acquire(blocking=False)
    backend._PARAMS_LOCK.release()
    with backend._model_loading(extra_buffers=True):
        assert llama_lib.llama_model_default_params is original


@pytest.mark.model
def test_the_embedded_model_decodes_on_this_cpu(embedded_llm):
    """The first decode crashed the process on an AMX CPU before; here it answers."""
    from raygent.schema import Message

    import asyncio

    reply = asyncio.run(embedded_llm.chat([Message.user("Say hi")], None, {"max_tokens": 4}))
    assert reply.text


@pytest.mark.ray
def test_a_replica_given_one_cpu_runs_one_llama_thread(ray_cluster):
    """Threads default to the CPUs Ray reserved for the process: two 1-CPU replicas on 2 cores used
    to run 2 threads each (4 spinning on 2 cores; 0.37x llama_cpp.server's tokens/s, measured)."""
    import os

    import ray

    from raygent.llm_pool.llama_cpp import LlamaCppChatModel, default_threads

    built_here = LlamaCppChatModel()  # no n_threads: this process's CPUs
    assert built_here.n_threads == default_threads() == len(os.sched_getaffinity(0))
    explicit = LlamaCppChatModel(n_threads=3)

    @ray.remote(num_cpus=1)
    def threads_in_a_one_cpu_worker(shipped, fixed) -> tuple[int, int, int]:
        return LlamaCppChatModel().n_threads, shipped.n_threads, fixed.n_threads

    @ray.remote(num_cpus=0)
    def threads_without_a_reservation() -> int:
        return LlamaCppChatModel().n_threads

    # made in the worker, or made here and unpickled there: 1 thread; an explicit count is kept
    assert ray.get(threads_in_a_one_cpu_worker.remote(built_here, explicit)) == (1, 1, 3)
    assert ray.get(threads_without_a_reservation.remote()) == len(os.sched_getaffinity(0))
