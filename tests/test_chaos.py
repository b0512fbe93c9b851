"""The short chaos run (benchmarks/chaos.py): a mixed workload on a two-raylet cluster of this host
while a killer SIGKILLs a random raygent actor every 2.5 s (LLM replicas, the tool hub, the retriever,
the memory store, coordinators, the message hub, Serve replicas).

Nothing may hang, no message may be lost or handled twice, no acknowledged session message may be
missing from the store, and at least 90 % of the runs must complete (first time or resumed after a
retry). The benchmark starts and stops its own cluster (never the session's shared Ray).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _ray_cluster import HEAD_IP, WORKER_IP, two_loopback_nodes_possible

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.skipif(not two_loopback_nodes_possible(),
                                reason=f"needs the loopback addresses {HEAD_IP} and {WORKER_IP} (Linux)")


def test_short_chaos_run_loses_nothing_and_nothing_hangs(tmp_path):
    out_file = tmp_path / "chaos.json"
    proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "chaos.py"), "--minutes", "0.58",
                             "--kill-every", "2.5", "--seed", "3", "--hang-s", "60", "--drain-s", "15",
                             "--json", str(out_file)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the benchmark stops its cluster on SIGTERM
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
    log = stdout[-6000:] + "\n" + stderr[-3000:]
    assert out_file.exists(), f"no totals (rc {proc.returncode}):\n{log}"
    out = json.loads(out_file.read_text())
    summary = {k: out[k] for k in ("runs", "completed", "resumed", "failed_clear", "failed_unclear", "hung",
                                   "messages_lost", "handled_twice", "session_messages_lost", "kills",
                                   "kills_by_kind", "ok_ratio")}
    print(summary)
    assert out["kills"] >= 10, summary  # the killer did its work
    assert out["hung"] == 0, (summary, out["stalls"], out["failures"])
    assert out["messages_lost"] == 0, (summary, out["team"])
    assert out["handled_twice"] == 0, (summary, out["team"])
    assert out["session_messages_lost"] == 0, (summary, out["sessions"])
    # retried turns carry their run id: a retry goes on from the stored turn instead of storing it again
    assert out["sessions"]["user_messages_stored_twice"] == 0, (summary, out["sessions"])
    assert out["failed_unclear"] == 0, (summary, out["failures"])
    assert out["ok_ratio"] >= 0.90, (summary, out["failures"])
    assert {k for k in ("single", "session", "team", "http") if out["per_kind"].get(k)} == \
        {"single", "session", "team", "http"}, out["per_kind"]
    assert proc.returncode == 0, f"the benchmark exited with {proc.returncode} after its totals:\n{log}"
