"""The multi-agent examples run end to end with scripted models (each as its own subprocess, as a user
runs it): examples/role_play.py (group chat of personas and a scripted user, round robin and model
choice, in-process and as Ray actors) and examples/pooled_writers.py (writer replicas over an LLM
pool on Ray Serve, fan-out then fan-in)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PERSONAS = ["narrator", "detective", "witness", "user"]


def run_example(script: str, *args: str, timeout_s: float = 120) -> str:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--scripted", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def transcript(out: str) -> list[tuple[str, str]]:
    """The (speaker, text) lines printed after '===== transcript'."""
    tail = out.split("===== transcript", 1)[1].split("\n", 1)[1]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^\s*\d+\. ([\w-]+): (.*)$", tail, flags=re.MULTILINE)]


def test_role_play_round_robin_with_a_scripted_user():
    out = run_example("role_play.py", "--rounds", "8", "--auto-user", "I saw the lights flicker.;Who else was here?")
    turns = transcript(out)
    assert [s for s, _ in turns] == ["scene"] + PERSONAS * 2
    user_lines = [t for s, t in turns if s == "user"]
    assert user_lines == ["I saw the lights flicker.", "Who else was here?"]
    said = dict(turns[1:4])
    assert said["detective"].startswith("Mr. Pell, where exactly")
    assert said["witness"].startswith("I-I was at the desk")
    # the live events: each request, each reply, and the question to the human
    assert "[scene -> detective] your turn" in out
    assert "[user -> scene] I saw the lights flicker." in out
    assert out.count("(user is asked to speak)") == 2
    assert out.count("== round ") == 8 and "round robin -> witness" in out


def test_role_play_model_choice_picks_the_speakers():
    out = run_example("role_play.py", "--speaker", "model", "--rounds", "8", "--auto-user", "Tell the truth, Pell.")
    turns = transcript(out)
    # the scripted model's picks (role_play.SCRIPT_PICKS), not round robin
    assert [s for s, _ in turns] == ["scene", "narrator", "witness", "detective", "user", "witness", "narrator",
                                     "detective", "user"]
    assert [t for s, t in turns if s == "user"] == ["Tell the truth, Pell.", "(stays silent)"]
    assert "the model picks -> witness (it said 'witness')" in out


@pytest.mark.ray
def test_role_play_as_ray_actors_gives_the_same_transcript():
    args = ("--rounds", "8", "--auto-user", "I saw the lights flicker.;Who else was here?")
    local = transcript(run_example("role_play.py", *args))
    remote_out = run_example("role_play.py", "--remote", *args)
    assert "(Ray actors)" in remote_out
    assert transcript(remote_out) == local


@pytest.mark.ray
def test_pooled_writers_fan_out_over_the_pool_then_the_editor_combines():
    out = run_example("pooled_writers.py", "--remote", "--tasks", "4", "--writers", "2", "--pool-replicas", "2")
    drafts = re.findall(r"^task (\d+): (.+)\n  \[(\w+)\] (.+)\n  \((.+)\)$", out, flags=re.MULTILINE)
    assert [int(n) for n, *_ in drafts] == [1, 2, 3, 4]
    for _, task, speaker, text, where in drafts:  # every task got a writer's reply, served by the pool
        assert task.startswith("Write one or two sentences about")
        assert speaker == "writer" and text.startswith("Scripted draft")
        assert re.match(r"writer#[01] via pool replica[01]/pid\d+: waited", where), where
    assert "[editor] EDITED: the drafts, woven into one short piece by the editor." in out
    handled = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+#\d+): handled (\d+), failed 0$", out,
                                                               flags=re.MULTILINE)}
    assert handled["writer#0"] + handled["writer#1"] == 4 and handled["editor#0"] == 1
    assert handled["writer#0"] >= 1 and handled["writer#1"] >= 1  # the replicas shared the burst
    calls = re.search(r"^model calls per pool replica: (.+)$", out, flags=re.MULTILINE).group(1)
    assert sum(int(n) for n in re.findall(r": (\d+)", calls)) == 4
    assert "replies: 4/4 tasks answered" in out
