"""The `raygent` command line, run as a user would (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SEED_TASK = "使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区"


def raygent(*args: str, stdin: str | None = None, env: dict | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "raygent.cli", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_tools_list_json_gives_schemas():
    out = raygent("tools", "list", "--json")
    assert out.returncode == 0, out.stderr
    specs = {s["name"]: s for s in json.loads(out.stdout)}
    assert set(specs) >= {"address_parse", "calculator", "current_datetime", "word_segment", "image_resize"}
    assert specs["calculator"]["parameters"]["required"] == ["expression"]


def test_tools_call_json_and_bad_arguments():
    ok = raygent("tools", "call", "calculator", "--args", '{"expression": "2**10"}', "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["output"] == {"expression": "2**10", "result": 1024}
    bad = raygent("tools", "call", "calculator", "--args", '{"expr": 1}', "--json")
    assert bad.returncode == 1 and "'expression' is a required property" in json.loads(bad.stdout)["error"]
    garbled = raygent("tools", "call", "calculator", "--args", "{not json")
    assert garbled.returncode == 2 and "--args is not valid JSON" in garbled.stderr


def test_tools_call_prints_artifacts(tmp_path):
    out = raygent("tools", "call", "image_draw_text", "--args", '{"text": "hello"}', "--json",
                  env={"RAYGENT_ARTIFACTS": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    art = json.loads(out.stdout)["artifacts"][0]
    assert art["kind"] == "image" and art["mime_type"] == "image/png" and art["uri"].startswith(str(tmp_path))
    assert art["metadata"]["width"] > 0 and art["size_bytes"] > 0


@pytest.mark.model
def test_run_json_on_the_seed_example():
    out = raygent("run", SEED_TASK, "--json")
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(payload) >= {"answer", "tool_calls", "steps", "usage", "model"}
    call = payload["tool_calls"][0]
    assert call["name"] == "address_parse" and call["error"] is None
    assert call["result"]["province"] == "浙江省" and call["result"]["district"] == "江干区"
    assert "江干区" in payload["answer"] and payload["model"] == "qwen2.5-coder-0.5b-instruct+multistep"


@pytest.mark.model
@pytest.mark.ray
def test_run_remote_json_uses_actors_on_the_cluster(ray_cluster):
    out = raygent("run", SEED_TASK, "--json", "--remote", env={"RAY_ADDRESS": ray_cluster})
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    assert payload["tool_calls"][0]["result"]["city"] == "杭州市" and "江干区" in payload["answer"]
    assert payload["placement"] == {"llm": "raygent-llm-default+multistep", "tools": "raygent-tools-builtin",
                                    "ray_address": ray_cluster}


@pytest.mark.model
def test_chat_keeps_history_and_resets():
    out = raygent("chat", stdin="What is 120/8?\nNow add 5 to that result.\n/reset\n/exit\n")
    assert out.returncode == 0, out.stderr
    assert "[tool_call] calculator" in out.stdout and "(history cleared)" in out.stdout
    assert "20" in out.stdout.split("Now add")[0] or "20" in out.stdout


def test_model_error_is_one_clear_line():
    out = raygent("run", "hi", "--model", "/nowhere/model.gguf")
    assert out.returncode == 1
    assert out.stderr.strip().startswith("raygent: error: EmbeddedModelError: model '/nowhere/model.gguf' is neither")
