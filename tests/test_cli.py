"""The `raygent` command line, run as a user would (subprocesses)."""

from __future__ import annotations

import json
import os
import re
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
    """The follow-up names no number, so 15 can only come from the first turn; after /reset the same
    follow-up has no 15 or 20 to build on (with the history kept the model answers "20 + 5 = 25")."""
    follow_up = "Now add 5 to that result."
    # the timeout guards against a hang: three turns of the model on a busy 2-core machine can pass 300 s
    out = raygent("chat", stdin=f"What is 120/8?\n{follow_up}\n/reset\n{follow_up}\n/exit\n", timeout=600)
    assert out.returncode == 0, out.stderr
    turns = [t.split("you> ")[0] for t in out.stdout.split("agent> ")[1:]]  # stdout of each turn
    assert len(turns) == 3, out.stdout
    first, second, after_reset = turns
    assert '[tool_call] calculator {"expression": "120/8"}' in first and re.search(r"\b15\b", first), first
    assert re.search(r"\b15\b", second) and re.search(r"\b20\b", second), second  # built on the first answer
    assert out.stdout.count("(history cleared)") == 1
    assert out.stdout.index("(history cleared)") < out.stdout.rindex("agent> ")  # /reset came before turn 3
    assert not re.search(r"\b(15|20)\b", after_reset), after_reset  # nothing left to build on


def test_model_error_is_one_clear_line():
    out = raygent("run", "hi", "--model", "/nowhere/model.gguf")
    assert out.returncode == 1
    assert out.stderr.strip().startswith("raygent: error: EmbeddedModelError: model '/nowhere/model.gguf' is neither")
