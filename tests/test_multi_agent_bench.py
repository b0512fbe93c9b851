"""Short versions of benchmarks/multi_agent.py (the full runs are benchmarks): the hub's workloads
deliver every message once, and many agents in many rooms lose and duplicate nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import multi_agent  # noqa: E402


async def test_hub_workloads_deliver_everything_once():
    one = await multi_agent.one_to_one(multi_agent.hub_in("process", "t11", mailbox_size=10_000), 2_000, 200)
    assert one["msgs_per_s"] > 0 and one["p50_ms"] <= one["p99_ms"]
    everyone = await multi_agent.all_to_all(multi_agent.hub_in("process", "tall", mailbox_size=10_000), 20, 2)
    assert everyone["msgs_per_s"] > 0  # the function asserts that the log acked every message
    rr = await multi_agent.raygent_request_reply("process", 10, 500, 100)
    assert rr["requests_per_s"] > 0


async def test_many_agents_in_many_rooms_lose_and_duplicate_nothing():
    args = argparse.Namespace(shards=2, scale_rounds=2, scale_rooms=10, scale_per_room=5)
    out = await multi_agent.part_scale(args)
    assert out["agents"] == 50 and out["expected"] == 10 * 5 * 4 * 2
    assert out["lost"] == 0 and out["duplicated"] == 0
    assert out["log_appended"] == out["log_acked"] == out["expected"]
