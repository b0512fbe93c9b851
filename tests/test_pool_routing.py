"""ConversationRouter's decisions, driven through Serve's router hooks with stand-in replicas (the
pool tests run it inside Serve)."""

from __future__ import annotations

import asyncio
import pickle
from collections import Counter
from types import SimpleNamespace

import pytest

from ray.serve._private.common import DeploymentHandleSource, DeploymentID, ReplicaID

from raygent.llm_pool.pool import PooledLLM
from raygent.llm_pool.routing import ConversationRouter

DEPLOYMENT = DeploymentID(name="m", app_name="a")


def _router(**kwargs) -> ConversationRouter:
    router = ConversationRouter(deployment_id=DEPLOYMENT, handle_source=DeploymentHandleSource.UNKNOWN)
    router.initialize_state(**kwargs)
    return router


def _replicas(n: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(replica_id=ReplicaID(unique_id=f"r{i}", deployment_id=DEPLOYMENT),
                            multiplexed_model_ids=set(), max_ongoing_requests=8) for i in range(n)]


def _request(request_id: str, key: str | None, method: str = "chat") -> SimpleNamespace:
    return SimpleNamespace(metadata=SimpleNamespace(internal_request_id=request_id, multiplexed_model_id=key or "",
                                                    call_method=method),
                           routing_context=SimpleNamespace(should_backoff=False))


async def _route(router, replicas, request) -> str:
    ranks = await router.choose_replicas(replicas, request)
    assert len(ranks) == 1 and len(ranks[0]) == 1  # one replica per attempt
    return ranks[0][0].replica_id.unique_id


async def test_a_burst_of_new_conversations_is_spread_evenly():
    router, replicas = _router(), _replicas(2)
    placed = [await _route(router, replicas, _request(f"q{i}", f"conv{i}")) for i in range(8)]
    assert Counter(placed) == {"r0": 4, "r1": 4}
    # requests without a conversation go to the least loaded replica too
    [(freed, _)] = router._routed["q0"]
    router.on_request_completed(freed, "q0")
    assert await _route(router, replicas, _request("loose", None)) == freed.unique_id


async def test_quick_calls_in_flight_do_not_skew_the_placement_of_chats():
    # 8 agent runs started together: each asks for the model name, then chats. Before, the name
    # requests still in flight counted as load and the chats were measured splitting 5 / 3.
    router, replicas = _router(), _replicas(2)
    for i in range(3):  # three quick calls, all still in flight
        assert await _route(router, replicas, _request(f"name{i}", None, "get_model_name"))
    assert not router._routed  # they add no load
    placed = [await _route(router, replicas, _request(f"q{i}", f"conv{i}", "stream")) for i in range(8)]
    assert Counter(placed) == {"r0": 4, "r1": 4}


async def test_a_conversation_returns_home_until_home_is_much_busier():
    router, replicas = _router(imbalance_threshold=2), _replicas(2)
    home = await _route(router, replicas, _request("a1", "alpha"))
    router.on_request_completed(replicas[int(home[1])].replica_id, "a1")
    # load the home replica with two other conversations' requests: within the threshold, stay
    other = [await _route(router, replicas, _request(f"x{i}", f"x{i}")) for i in range(2)]
    assert other.count(home) == 1  # the burst was spread
    assert await _route(router, replicas, _request("a2", "alpha")) == home
    # now make home busier than the other replica by more than 2 requests: the conversation moves
    for i in range(3):
        router._routed[f"pin{i}"] = [(replicas[int(home[1])].replica_id, router._routed["a2"][0][1])]
    moved = await _route(router, replicas, _request("a3", "alpha"))
    assert moved != home
    router.on_request_completed(replicas[int(moved[1])].replica_id, "a3")
    assert await _route(router, replicas, _request("a4", "alpha")) == moved  # its new home


async def test_a_key_announced_by_a_replica_is_honoured():
    router, replicas = _router(), _replicas(3)
    replicas[2].multiplexed_model_ids.add("routed-elsewhere")  # another process sent it there before
    assert await _route(router, replicas, _request("q", "routed-elsewhere")) == "r2"


async def test_a_full_replica_is_skipped_then_serve_backs_off():
    router, replicas = _router(), _replicas(2)
    request = _request("q", "conv")
    first = await _route(router, replicas, request)
    second = await _route(router, replicas, request)  # Serve asks again: the first one was full
    assert {first, second} == {"r0", "r1"} and not request.routing_context.should_backoff
    third = await _route(router, replicas, request)  # every replica tried: a new round, with backoff
    assert request.routing_context.should_backoff
    [(where, _)] = router._routed["q"]  # counted once, where it went last
    assert where.unique_id == third


async def test_concurrent_calls_sharing_a_request_id_are_each_counted():
    """Calls made from inside a Serve replica can carry their parent request's id: two such calls
    in flight count twice, and each completion takes one away."""
    router, replicas = _router(), _replicas(2)
    first = await _route(router, replicas, _request("parent", "c1"))
    second = await _route(router, replicas, _request("parent", "c2"))
    assert {first, second} == {"r0", "r1"}  # the second saw the first's load
    assert sorted(r.unique_id for r, _ in router._routed["parent"]) == ["r0", "r1"]
    router.on_request_completed(replicas[int(first[1])].replica_id, "parent")
    assert [r.unique_id for r, _ in router._routed["parent"]] == [second]
    router.on_request_completed(replicas[int(second[1])].replica_id, "parent")
    assert "parent" not in router._routed


async def test_a_dead_replica_loses_its_conversations():
    router, replicas = _router(), _replicas(2)
    home = await _route(router, replicas, _request("a1", "alpha"))
    dead = replicas[int(home[1])]
    router.on_replica_actor_died(dead.replica_id)
    survivors = [r for r in replicas if r is not dead]
    assert await _route(router, survivors, _request("a2", "alpha")) != home
    assert all(r != dead.replica_id for entries in router._routed.values() for r, _ in entries)
    assert router._homes_per_replica[dead.replica_id] == 0


async def test_conversation_counts_follow_moves_and_eviction():
    router, replicas = _router(max_conversations=3), _replicas(2)
    for i in range(5):  # two conversations are evicted (least recently used first)
        await _route(router, replicas, _request(f"q{i}", f"c{i}"))
    assert len(router._homes) == 3 and sum(router._homes_per_replica.values()) == 3
    counted = {r: n for r, n in router._homes_per_replica.items() if n}
    assert counted == dict(Counter(router._homes.values()))


class _CountingHandle:
    """A stand-in DeploymentHandle: counts `get_model_name` requests; each takes a moment."""

    def __init__(self, fail_first: bool = False):
        self.requests = 0
        self.fail_first = fail_first
        self.get_model_name = SimpleNamespace(remote=self._remote)

    def options(self, **_):
        return self

    async def _remote(self):
        self.requests += 1
        await asyncio.sleep(0.01)
        if self.fail_first and self.requests == 1:
            raise ValueError("replica busy starting")
        return "qwen-test"


async def test_pooled_llm_asks_a_replica_for_the_model_name_once():
    handle = _CountingHandle()
    llm = PooledLLM(handle, name="m")
    # 8 agent runs starting together each ask first; one request goes out, and none later
    assert await asyncio.gather(*(llm.get_model_name() for _ in range(8))) == ["qwen-test"] * 8
    assert await llm.get_model_name() == "qwen-test" and handle.requests == 1
    copy = pickle.loads(pickle.dumps(llm))  # travels to actors without its task
    assert await copy.get_model_name() == "qwen-test"


async def test_a_failed_model_name_request_is_asked_again():
    handle = _CountingHandle(fail_first=True)
    llm = PooledLLM(handle, name="m")
    with pytest.raises(ValueError, match="busy starting"):  # the caller sees the replica's error
        await llm.get_model_name()
    assert await llm.get_model_name() == "qwen-test" and handle.requests == 2


def test_a_finished_conversations_request_is_not_kept_by_the_router():
    """Regression (benchmarks/load.py's soak): Ray's router kept each multiplexed id's last pending request
    (its prompt included) until a later request of the same id came, which an ended conversation never
    sends: ~15 MiB per 1,000 conversations in an agent replica. Fulfilled or cancelled, it goes at once."""
    router = _router()
    requests = [_request(f"q{i}", f"conv{i // 2}") for i in range(6)]  # three conversations, two calls each
    for request in requests:
        router._add_pending_request_to_indices(request)
    assert len(router._pending_requests_by_model_id) == 3
    for request in requests[:3]:
        router._remove_pending_request_from_indices(request)
    assert set(router._pending_requests_by_model_id) == {"conv1", "conv2"}
    assert list(router._pending_requests_by_model_id["conv1"]) == [requests[3]]
    for request in requests[3:]:
        router._remove_pending_request_from_indices(request)
    assert not router._pending_requests_by_model_id and not router._pending_requests_by_id
