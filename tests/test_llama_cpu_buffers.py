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
