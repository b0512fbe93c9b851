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
