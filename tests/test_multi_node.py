"""A real two-node Ray cluster on this host (tests/_ray_cluster.py): placement by custom resources,
`ray job submit`, and a node killed mid-run.

These tests never use the session's shared Ray cluster (conftest.py): they start their own head
(127.0.0.2, tagged {"llm": 1}) and worker (127.0.0.3, tagged {"tools": 1}) with `ray start`, and
every driver runs in a subprocess with RAY_ADDRESS pointing there.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from _ray_cluster import HEAD_IP, RAY, WORKER_IP, two_loopback_nodes_possible, two_node_cluster

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "examples" / "cluster_driver.py"
RESULT_TAG = "CLUSTER_DRIVER_RESULT "


pytestmark = pytest.mark.skipif(not two_loopback_nodes_possible(),
                                reason=f"needs the loopback addresses {HEAD_IP} and {WORKER_IP} (Linux)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head with the dashboard (job server), worker; shared by the placement and job tests."""
    with two_node_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_TAG)]
    assert lines, f"no {RESULT_TAG.strip()} line in the driver's output:\n{stdout[-4000:]}"
    return json.loads(lines[-1][len(RESULT_TAG):])


def test_driver_places_the_pool_on_the_llm_node_and_the_hubs_on_the_tools_node(cluster, tmp_path):
    assert cluster.start_s is not None and cluster.head.node_id != cluster.worker.node_id
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, str(DRIVER), "--scripted", "--json"], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=cluster.driver_env(RAYGENT_HOME=str(tmp_path)))
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    result = _result(out.stdout)
    nodes, where = result["nodes"], result["placement"]

    # the tags as the driver saw them: the head offers llm, the worker tools
    assert nodes[cluster.head.node_id]["tags"] == {"llm": 1} and nodes[cluster.head.node_id]["ip"] == HEAD_IP
    assert nodes[cluster.worker.node_id]["tags"] == {"tools": 1} and nodes[cluster.worker.node_id]["ip"] == WORKER_IP
    # the pool on the llm node; every hub, the agent, the team's members and message hub on the tools node
    assert where["pool"] == [cluster.head.node_id]
    assert set(where["hubs"]) == {"math", "nlp"} and set(where["hubs"].values()) == {cluster.worker.node_id}
    assert where["agent"] == cluster.worker.node_id
    assert where["team"] == {"researcher": [cluster.worker.node_id], "writer": [cluster.worker.node_id]}
    assert where["message_hub"] == cluster.worker.node_id
    assert where["driver"] == cluster.head.node_id  # RAY_ADDRESS on the head: the driver joins its raylet

    # calls crossed nodes: the agent (tools node) asked the pool (llm node), which asked for the
    # calculator; the hub (tools node) computed it and the model's answer quotes that result
    agent = result["agent"]
    assert agent["error"] is None and agent["model"] == "scripted-tool-model"
    assert [(c["name"], c["arguments"], c["result"]) for c in agent["tool_calls"]] == [
        ("calculator", {"expression": "12345 * 6789"}, {"expression": "12345 * 6789", "result": 12345 * 6789})]
    assert str(12345 * 6789) in agent["answer"]

    # the team: researcher (calculator on the tools node) -> writer, both through the pool
    turns = result["team"]["turns"]
    assert [t["speaker"] for t in turns] == ["researcher", "writer"]
    assert str(7 * 24 * 3600 * 7) in turns[0]["text"] and str(7 * 24 * 3600 * 7) in turns[1]["text"]
    assert result["hub_calls"] == {"math": 2, "nlp": 0}  # the agent's calculator call and the researcher's
    print(f"cluster start {cluster.start_s:.1f} s; driver {elapsed:.1f} s; timings {result['timings']}")


def test_ray_job_submit_runs_the_driver_on_the_cluster(cluster):
    job_id = f"raygent-cluster-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    submit = subprocess.run(
        [RAY, "job", "submit", "--address", cluster.dashboard_url, "--submission-id", job_id,
         "--working-dir", str(REPO), "--", "python", "examples/cluster_driver.py", "--scripted", "--no-team",
         "--tools", "calculator", "--pool-name", "job-llm", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=cluster.env)
    elapsed = time.monotonic() - t0
    assert submit.returncode == 0, f"{submit.stdout[-4000:]}\n{submit.stderr[-4000:]}"
    assert f"Job '{job_id}' succeeded" in submit.stdout + submit.stderr

    logs = subprocess.run([RAY, "job", "logs", "--address", cluster.dashboard_url, job_id], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=cluster.env)
    assert logs.returncode == 0, logs.stderr[-3000:]
    result = _result(logs.stdout)
    assert str(12345 * 6789) in result["agent"]["answer"] and result["agent"]["error"] is None
    assert result["placement"]["pool"] == [cluster.head.node_id]
    assert result["placement"]["hubs"] == {"math": cluster.worker.node_id}
    assert result["placement"]["driver"] == cluster.head.node_id  # the job's driver runs on the head
    print(f"ray job submit: {elapsed:.1f} s")


# -- a node dies mid-run -------------------------------------------------------------------------------
KILL_DRIVER = r'''
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[1])
import ray
from ray import cloudpickle
import cluster_driver as cd
cloudpickle.register_pickle_by_value(cd)  # the scripted model travels by value to the pool replica
from raygent import runtime, tool
from raygent.actors.agent import Agent
from raygent.toolhub.builtin import CalculatorTool
from raygent.toolhub.hub import HubSet, deploy_hub

HEAD, WORKER = sys.argv[2], sys.argv[3]


@tool(timeout_s=60)
async def slow_lookup(key: str) -> dict:
    """Look a key up (takes 8 s).

    key: the key to look up"""
    await asyncio.sleep(8)
    return {"key": key, "value": 42}


def say(tag, payload):
    print(tag + " " + json.dumps(payload, default=str), flush=True)


async def remote_agent_outcome(task):
    try:
        result = await task
        return {"answer": result.answer, "error": result.error}
    except Exception as exc:
        return {"exception": type(exc).__name__, "actor_error": isinstance(exc, ray.exceptions.RayActorError),
                "message": str(exc)[:600]}


async def main():
    cd.connect()
    pool = cd.start_pool(cd.parse_args(["--scripted", "--pool-name", "kill-llm"]))
    # needs the tools node: with that node gone it can never be placed again
    pinned = deploy_hub("slow", [slow_lookup], resources={cd.TOOLS_RESOURCE: 0.01})
    # no node requirement: prefers the worker (a label selector with a fallback to any node) and
    # has restarts, so Ray can bring it back on the surviving node
    resilient = deploy_hub("resilient", [CalculatorTool()], max_restarts=5,
                           label_selector={"ray.io/node-id": WORKER}, fallback_strategy=[{"label_selector": {}}])
    remote_agent = runtime.deploy(Agent, remote=True, max_restarts=0, **cd.on_tools_node(),
                                  init_kwargs={"llm": pool, "tools": HubSet([pinned]), "max_steps": 3})
    say("PLACED", {"pool": (await pool.replica_info())["node"], "pinned": cd.actor_node(pinned),
                   "resilient": cd.actor_node(resilient), "remote_agent": cd.actor_node(remote_agent)})

    agent = Agent(pool, HubSet([pinned]), max_steps=3)  # in this process, on the head
    run = asyncio.ensure_future(agent.run('Call slow_lookup with {"key": "abc"}'))
    remote = asyncio.ensure_future(remote_agent_outcome(remote_agent.run('Call slow_lookup with {"key": "xyz"}')))
    while (await pinned.info()).in_flight < 2:  # both runs are inside the slow tool
        await asyncio.sleep(0.05)
    say("IN_FLIGHT", {})
    await asyncio.get_running_loop().run_in_executor(None, input)  # the test kills the worker node, then writes a line

    say("REMOTE_AGENT", await remote)
    result = await run
    say("RUN", {"answer": result.answer, "error": result.error, "stop_reason": result.stop_reason,
                "tool_calls": [c.model_dump() for c in result.tool_calls]})

    t0 = time.monotonic()
    while cd.actor_node(resilient) != HEAD and time.monotonic() - t0 < 60:
        await asyncio.sleep(0.2)
    back_s = time.monotonic() - t0
    answer = await asyncio.wait_for(resilient.call("calculator", {"expression": "6 * 7"}), 60)
    say("RESILIENT", {"node": cd.actor_node(resilient), "waited_s": back_s, "output": answer.output,
                      "error": answer.error, "restarts": ray._private.state.actors(
                          resilient.proxy.actor_handle._actor_id.hex())["NumRestarts"]})
    from raygent.llm_pool.pool import delete_model
    delete_model("kill-llm")


asyncio.run(main())
runtime.shutdown()
'''


class _Lines:
    """The driver's stdout, line by line, each stamped with when it arrived."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.q: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.q.put((time.monotonic(), line.rstrip("\n")))
        self.q.put((time.monotonic(), None))

    def expect(self, tag: str, timeout_s: float) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                at, line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {tag} line within {timeout_s:.0f} s; output so far:\n"
                                     + "\n".join(self.seen[-60:])) from None
            if line is None:
                raise AssertionError(f"the driver exited ({self.proc.wait()}) before {tag}:\n"
                                     + "\n".join(self.seen[-80:]))
            self.seen.append(line)
            if line.startswith(tag + " "):
                return at, json.loads(line[len(tag) + 1:])


def test_killing_the_tools_node_mid_run_ends_the_run_and_a_restartable_hub_comes_back(tmp_path):
    with two_node_cluster(tmp_path / "cluster", dashboard=False) as cluster:
        head, worker = cluster.head.node_id, cluster.worker.node_id
        script = tmp_path / "kill_driver.py"
        script.write_text(KILL_DRIVER)
        proc = subprocess.Popen([sys.executable, str(script), str(DRIVER.parent), head, worker], cwd=REPO,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=cluster.driver_env(RAYGENT_HOME=str(tmp_path / "home")))
        lines = _Lines(proc)
        try:
            _, placed = lines.expect("PLACED", 180)
            assert placed == {"pool": head, "pinned": worker, "resilient": worker, "remote_agent": worker}
            lines.expect("IN_FLIGHT", 60)

            cluster.kill(cluster.worker)  # SIGKILL the worker's raylet and agents mid-call
            killed = time.monotonic()
            proc.stdin.write("killed\n")
            proc.stdin.flush()

            # the agent that lived on the dead node: its caller gets Ray's actor error, quickly
            at, remote = lines.expect("REMOTE_AGENT", 60)
            assert remote.get("actor_error") is True, remote
            assert remote["exception"] in ("ActorDiedError", "ActorUnavailableError"), remote
            remote_s = at - killed

            # the agent on the surviving head: the run ends with a result whose tool call failed
            # clearly (the hub died; not retried, as the tool is not idempotent); the model answered
            at, run = lines.expect("RUN", 90)
            run_s = at - killed
            assert run["error"] is None and run["stop_reason"] != "error", run
            [call] = run["tool_calls"]
            assert call["name"] == "slow_lookup" and call["result"] is None
            assert "did not finish" in call["error"] and "tool hub actor died" in call["error"], call["error"]
            assert run["answer"].startswith("The slow_lookup tool returned ERROR: tool 'slow_lookup' did not finish")
            assert run_s < 60, f"the run took {run_s:.1f} s to end after the node died"

            # the hub with restarts and no node requirement is back on the head and answers
            _, back = lines.expect("RESILIENT", 150)
            assert back["node"] == head and back["restarts"] >= 1, back
            assert back["error"] is None and back["output"] == {"expression": "6 * 7", "result": 42}, back
            assert proc.wait(60) == 0
            print(f"cluster start {cluster.start_s:.1f} s; after the kill: remote agent error {remote_s:.1f} s, "
                  f"run ended {run_s:.1f} s, resilient hub back on the head (waited {back['waited_s']:.1f} s)")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
