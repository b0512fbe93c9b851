"""The OpenAI backend against a real OpenAI-compatible server: llama-cpp-python's server running the
tiny Qwen2 model (built and written as GGUF by the test) on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("starlette_context", reason="llama-cpp-python's server extra is not installed")
pytest.importorskip("gguf")

import tiny_models as tm  # noqa: E402

from raygent.llm_pool.errors import BackendServerError  # noqa: E402
from raygent.llm_pool.openai_backend import OpenAICompatibleChatModel  # noqa: E402
from raygent.schema import Message  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    folder = tm.build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen-srv"))
    gguf_path = tm.write_gguf(folder, folder / "tiny-qwen-f32.gguf")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path), "--host",
                             "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--model_alias", "tiny"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/models", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"llama.cpp server exited: {proc.stderr.read().decode()[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail("llama.cpp server did not start within 90 s")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_chat_and_stream_on_a_real_llama_cpp_server(llama_server):
    llm = OpenAICompatibleChatModel("tiny", base_url=llama_server)  # local: no key needed
    c = await llm.chat([Message.user(tm.TEXT_QUESTION)], None, {"max_tokens": 30})
    assert c.text == tm.TEXT_REPLY and c.finish_reason == "stop"
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (33, 12)  # same tokens as transformers counts
    deltas = [d async for d in llm.stream([Message.user(tm.TEXT_QUESTION)], None, {"max_tokens": 30})]
    assert len(deltas) > 3 and "".join(d.text for d in deltas) == tm.TEXT_REPLY
    assert deltas[-1].finish_reason == "stop"
    short = await llm.chat([Message.user(tm.TEXT_QUESTION)], None, {"max_tokens": 3})
    assert short.finish_reason == "length" and short.usage.completion_tokens == 3
    await llm.aclose()


async def test_tool_call_through_a_real_llama_cpp_server(llama_server):
    """llama-cpp-python renders the tools with the GGUF's chat template; the model writes a Hermes call,
    which the server returns as text and the backend reads (native mode's text fallback)."""
    llm = OpenAICompatibleChatModel("tiny", base_url=llama_server)
    c = await llm.chat(tm.tool_question(), [tm.WEATHER], {"max_tokens": 40})
    assert [(t.name, t.arguments) for t in c.tool_calls] == [("weather", {"city": "Paris"})]
    assert c.finish_reason == "tool_calls" and c.raw == tm.TOOL_REPLY
    deltas = [d async for d in llm.stream(tm.tool_question(), [tm.WEATHER], {"max_tokens": 40})]
    assert len(deltas) == 1 and deltas[0].tool_calls[0].arguments == {"city": "Paris"}
    await llm.aclose()


async def test_server_error_body_reaches_the_caller(llama_server):
    """llama-cpp-python answers a malformed field with HTTP 500 and its validation message."""
    llm = OpenAICompatibleChatModel("tiny", base_url=llama_server, max_retries=0, extra_body={"top_k": "many"})
    with pytest.raises(BackendServerError, match="HTTP 500") as info:
        await llm.chat([Message.user("x")], None, {"max_tokens": 4})
    assert llama_server in str(info.value) and "top_k" in str(info.value)
