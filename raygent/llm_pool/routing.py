"""Conversation-aware request routing for the pool: keep a conversation where its KV cache is,
and spread new conversations evenly.

Serve's default router (power of two choices with multiplexing) knows which replica holds a
conversation only after the replica announces it through the controller, and places a burst of
new conversations by stale queue lengths: 8 agent sessions started together on 2 replicas were
measured landing 6 / 2, and the pool then ran at 0.78 of two plain processes. This router decides
in the caller's process, from what the caller itself sent:

* load of a replica = generation requests (`chat`, `stream`) this router has routed to it that have
  not finished (counted the moment a replica is chosen, so a burst routed in one tick is spread
  too). Quick calls (`get_model_name`, `count_tokens`, ...) go to the least loaded replica but add
  no load: 8 sessions started together each asked for the model name first, those calls were
  still in flight when the sessions' first chats were placed, and the chats split 5 / 3;
* a conversation (the handle's `multiplexed_model_id`, see `PooledLLM`) goes back to its home
  replica, the one that served its previous request here or that announces the key; unless that
  replica is busier than the least loaded one by more than `imbalance_threshold` requests, where
  re-evaluating the prompt elsewhere is cheaper than waiting; then the conversation moves;
* a new conversation, or a request without one, goes to the least loaded replica (ties: the one
  with fewer conversations, then at random).

Each attempt offers Serve one replica; if it is full (max_ongoing_requests) the next call offers
the next best, and once every replica was tried Serve's backoff applies, so back-pressure and the
bounded queue behave as with the default router.
"""

from __future__ import annotations

import random
import time
from collections import Counter, OrderedDict
from typing import Any

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

#: `RequestRouterConfig.request_router_class` for a pool deployment
ROUTER_PATH = "raygent.llm_pool.routing.ConversationRouter"

#: the replica methods whose requests count as load (they hold the model for seconds)
GENERATION_METHODS = frozenset({"chat", "stream"})


class ConversationRouter(RequestRouter):
    """Conversation affinity with load balancing, decided from the caller's own routing."""

    def initialize_state(self, imbalance_threshold: int = 2, max_conversations: int = 65536,
                         stale_after_s: float = 3600.0, **_: Any) -> None:
        self.imbalance_threshold = imbalance_threshold
        self.max_conversations = max_conversations
        self.stale_after_s = stale_after_s
        self._homes: OrderedDict[str, ReplicaID] = OrderedDict()  # conversation key -> replica (LRU)
        self._homes_per_replica: Counter[ReplicaID] = Counter()  # kept with _homes: no scan per request
        # internal request id -> [(replica, when)] of generation requests in flight. A list: calls
        # made from inside a Serve replica all carry their parent request's internal id, so one id
        # can stand for many concurrent requests (an agent replica's concurrent model calls)
        self._routed: dict[str, list[tuple[ReplicaID, float]]] = {}

    # -- state (Serve calls initialize_state right after constructing the router) ---------------
    def _loads(self) -> Counter[ReplicaID]:
        loads: Counter[ReplicaID] = Counter()
        oldest = time.monotonic() - self.stale_after_s
        for rid, entries in list(self._routed.items()):
            # drop requests whose completion never came back (cancelled before sending)
            fresh = [(replica, when) for replica, when in entries if when >= oldest]
            if not fresh:
                del self._routed[rid]
                continue
            self._routed[rid] = fresh
            for replica, _ in fresh:
                loads[replica] += 1
        return loads

    def _home_of(self, key: str, candidates: list[RunningReplica]) -> RunningReplica | None:
        by_id = {r.replica_id: r for r in candidates}
        home = self._homes.get(key)
        if home in by_id:
            self._homes.move_to_end(key)
            return by_id[home]
        for r in candidates:  # announced by the replica (e.g. routed by another process before)
            if key in r.multiplexed_model_ids:
                return r
        return None

    def _remember(self, key: str, replica: ReplicaID) -> None:
        previous = self._homes.get(key)
        if previous != replica:
            if previous is not None:
                self._homes_per_replica[previous] -= 1
            self._homes_per_replica[replica] += 1
        self._homes[key] = replica
        self._homes.move_to_end(key)
        while len(self._homes) > self.max_conversations:
            _, evicted = self._homes.popitem(last=False)
            self._homes_per_replica[evicted] -= 1

    def _remove_pending_request_from_indices(self, pending_request: PendingRequest) -> None:
        """Also drop the request from Ray's per-multiplexed-id index at once. Ray (2.60) leaves it
        there until a later request with the same id looks it up, which a conversation that has ended
        never sends: every conversation kept its last request (its prompt included) in the caller's
        router for good, ~15 MiB per 1,000 conversations in an agent replica (benchmarks/load.py's
        soak). An id has a request or two pending at a time, so the removal is cheap."""
        super()._remove_pending_request_from_indices(pending_request)
        index = getattr(self, "_pending_requests_by_model_id", None)
        model_id = pending_request.metadata.multiplexed_model_id
        if not model_id or index is None:
            return
        queue = index.get(model_id)
        if queue is None:
            return
        try:
            queue.remove(pending_request)
        except ValueError:
            pass
        if not queue:
            index.pop(model_id, None)

    # -- Serve's hooks -----------------------------------------------------------------------
    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        loads = self._loads()
        homes = self._homes_per_replica

        def rank(r: RunningReplica) -> tuple[int, int, float]:
            return loads[r.replica_id], homes[r.replica_id], random.random()

        if pending_request is None:
            return [sorted(candidate_replicas, key=rank)]
        request_id = pending_request.metadata.internal_request_id
        # replicas already offered for this very request: kept on the request's own routing context,
        # not by request id (shared by concurrent calls from one replica, see _routed)
        tried: set[ReplicaID] = pending_request.routing_context.__dict__.setdefault("raygent_tried", set())
        fresh = [r for r in candidate_replicas if r.replica_id not in tried]
        if not fresh:  # every replica was full: start over, with Serve's backoff between rounds
            tried.clear()
            fresh = list(candidate_replicas)
            pending_request.routing_context.should_backoff = True
        key = pending_request.metadata.multiplexed_model_id
        least = min(fresh, key=rank)
        chosen = least
        if key:
            home = self._home_of(key, fresh)
            if home is not None and loads[home.replica_id] - loads[least.replica_id] <= self.imbalance_threshold:
                chosen = home
            self._remember(key, chosen.replica_id)
        tried.add(chosen.replica_id)
        if pending_request.metadata.call_method in GENERATION_METHODS:
            # Serve asks again for the same request when the chosen replica was full: it then counts
            # where it went last only (its previous entry, kept on its routing context, is replaced)
            context = pending_request.routing_context.__dict__
            entries = self._routed.setdefault(request_id, [])
            previous = context.get("raygent_routed")
            if previous is not None and previous in entries:
                entries.remove(previous)
            context["raygent_routed"] = entry = (chosen.replica_id, time.monotonic())
            entries.append(entry)
        return [[chosen]]

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        entries = self._routed.get(internal_request_id)
        if not entries:
            return
        for i, (replica, _) in enumerate(entries):
            if replica == replica_id:
                del entries[i]
                break
        if not entries:
            del self._routed[internal_request_id]

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        for key in [k for k, r in self._homes.items() if r == replica_id]:
            del self._homes[key]
        self._homes_per_replica.pop(replica_id, None)
        for rid in list(self._routed):
            self._routed[rid] = [(r, when) for r, when in self._routed[rid] if r != replica_id]
            if not self._routed[rid]:
                del self._routed[rid]
