"""A MessageLog on Redis Streams: the cluster backend of a MessageHub (see raygent.actors.log).

Each recipient's mailbox is one stream with one consumer group. `append` adds an entry (XADD) and
reads it into the group for this hub's consumer (XREADGROUP), so a delivered envelope sits in the
group's pending-entries list (PEL) until `ack` acknowledges it (XACK, then XDEL: the stream keeps
only what is unacked). A hub that starts, on this node or another, calls `unacked()`: it takes over
what is pending on any other consumer (XAUTOCLAIM; its predecessor is dead, since one hub owns a
shard), reads what was never read into the group, and returns it all in append order.

Keys, all under `{prefix}:{{shard}}` (the braces are a Redis Cluster hash tag: one shard's keys
live in one slot, so its scripts may touch several keys):

    :mb:<recipient>    stream; entry fields id (envelope id), seq (global append number), body (JSON)
    :ids:<recipient>   hash envelope id -> stream entry id, or "acked" once acknowledged (the dedupe
                       key of (recipient, id), kept after the ack like SQLiteLog's row)
    :mailboxes         sorted set of recipients (score: seq of their first envelope)
    :counts            hash: appended, acked
    :subs              sorted set of JSON [topic, recipient], scored in subscription order
    :rooms             hash room -> cancellation reason; :rooms:order its first-cancelled order
    :order             counter giving :subs and :rooms:order their scores

`append` and `ack` are Lua scripts (each entry's dedupe check, XADD, mapping and counter are one
atomic step); concurrent calls are coalesced like SQLiteLog's group commit and sent as one pipeline
of EVALSHA (chunks of 500 entries), so a batch of 1,000 is one round trip. Durability is the
server's: run it with `appendonly yes` (a warning is logged when the server persists nothing).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

from raygent.actors.log import GroupCommit
from raygent.redis_support import redis_asyncio
from raygent.redis_support import safe_url as _safe_url
from raygent.schema import Envelope

log = logging.getLogger(__name__)

GROUP = "hub"
_CHUNK = 500  # entries (or ids) per script call
_READ = 1000  # entries per XAUTOCLAIM / XREADGROUP in unacked()
_ACKED = "acked"


# KEYS: counts, mailboxes, then (stream, ids) per recipient of the call.
# ARGV: group, consumer, n recipients, their names, then (recipient index, envelope id, body) triples.
_APPEND = """
local group, consumer = ARGV[1], ARGV[2]
local nrec = tonumber(ARGV[3])
local added = {}
for r = 1, nrec do
  added[r] = 0
  if redis.call('EXISTS', KEYS[1 + 2 * r]) == 0 then
    redis.call('XGROUP', 'CREATE', KEYS[1 + 2 * r], group, '0', 'MKSTREAM')
  end
end
local out = {}
local n = 0
for i = 4 + nrec, #ARGV, 3 do
  local r = tonumber(ARGV[i])
  local stream, ids, eid = KEYS[1 + 2 * r], KEYS[2 + 2 * r], ARGV[i + 1]
  n = n + 1
  if redis.call('HEXISTS', ids, eid) == 1 then
    out[n] = 0
  else
    local seq = redis.call('HINCRBY', KEYS[1], 'appended', 1)
    local sid = redis.call('XADD', stream, '*', 'id', eid, 'seq', seq, 'body', ARGV[i + 2])
    redis.call('HSET', ids, eid, sid)
    if added[r] == 0 then
      redis.call('ZADD', KEYS[2], 'NX', seq, ARGV[3 + r])
    end
    added[r] = added[r] + 1
    out[n] = 1
  end
end
for r = 1, nrec do
  if added[r] > 0 then
    redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', added[r], 'STREAMS', KEYS[1 + 2 * r], '>')
  end
end
return out
"""

# KEYS: counts, stream, ids. ARGV: group, then envelope ids. Returns how many were unacked.
_ACK = """
local sids, fields, seen = {}, {}, {}
for i = 2, #ARGV do
  local eid = ARGV[i]
  if not seen[eid] then
    seen[eid] = true
    local sid = redis.call('HGET', KEYS[3], eid)
    if sid and sid ~= 'acked' then
      sids[#sids + 1] = sid
      fields[#fields + 1] = eid
      fields[#fields + 1] = 'acked'
    end
  end
end
if #sids > 0 then
  redis.call('XACK', KEYS[2], ARGV[1], unpack(sids))
  redis.call('XDEL', KEYS[2], unpack(sids))
  redis.call('HSET', KEYS[3], unpack(fields))
  redis.call('HINCRBY', KEYS[1], 'acked', #sids)
end
return #sids
"""

# KEYS: order zset, counter[, hash]. ARGV: member[, value]. Adds member once, in first-put order.
_PUT_ORDERED = """
if #KEYS == 3 then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[1])
end
return 1
"""


def _redis_module() -> Any:
    return redis_asyncio("RedisStreamsLog")


class RedisStreamsLog:
    """The cluster log: Redis Streams with one consumer group per mailbox.

    `url` is a redis:// (or rediss://, unix://) URL; `prefix` and `shard` name the keys (one hub
    per shard: hubs that shard by room use one shard each); `consumer` names this hub in the
    consumer groups (default: host-pid-random, new in every process, so a hub unpickled into a Ray
    actor is a new consumer and takes over its predecessor's pending entries in `unacked()`).
    Picklable by configuration.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "raygent:hub",
                 shard: str = "default", consumer: str | None = None, connect_timeout: float = 5.0):
        self.url = url
        self.prefix = prefix
        self.shard = shard
        self._consumer_arg = consumer
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.connect_timeout = connect_timeout
        self.base = f"{prefix}:{{{shard}}}"
        self._client: Any = None
        self._exceptions: Any = None
        self._shas: dict[str, str] = {}
        self._commits = GroupCommit(self._apply_batch)

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "prefix": self.prefix, "shard": self.shard, "consumer": self._consumer_arg,
                "connect_timeout": self.connect_timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], prefix=state["prefix"], shard=state["shard"],  # type: ignore[misc]
                      consumer=state["consumer"], connect_timeout=state["connect_timeout"])

    def __repr__(self) -> str:
        return f"RedisStreamsLog({_safe_url(self.url)!r}, prefix={self.prefix!r}, shard={self.shard!r})"

    # -- keys ----------------------------------------------------------------------------------
    def _key(self, name: str) -> str:
        return f"{self.base}:{name}"

    def stream_key(self, recipient: str) -> str:
        return f"{self.base}:mb:{recipient}"

    def ids_key(self, recipient: str) -> str:
        return f"{self.base}:ids:{recipient}"

    # -- connection ----------------------------------------------------------------------------
    @property
    def redis(self) -> Any:
        if self._client is None:
            raise RuntimeError("RedisStreamsLog used before open()")
        return self._client

    async def open(self) -> None:
        if self._client is not None:
            return
        aioredis = _redis_module()
        from redis import exceptions

        client = aioredis.Redis.from_url(self.url, decode_responses=True,
                                         socket_connect_timeout=self.connect_timeout)
        try:
            await client.ping()
            self._shas = {name: await client.script_load(src)
                          for name, src in (("append", _APPEND), ("ack", _ACK), ("put", _PUT_ORDERED))}
        except (exceptions.ConnectionError, exceptions.TimeoutError, OSError) as exc:
            await _close_client(client)
            raise ConnectionError(
                f"RedisStreamsLog: no Redis server answers at {_safe_url(self.url)} ({exc}). Start one "
                "(Debian/Ubuntu: apt-get install redis-server; then redis-server --port 6379 --appendonly yes) "
                "or pass RedisStreamsLog(url='redis://HOST:PORT/DB').") from exc
        except Exception:
            await _close_client(client)
            raise
        self._client, self._exceptions = client, exceptions
        await self._check_persistence()

    async def _check_persistence(self) -> None:
        """Warn when the server would lose acknowledged appends on its own restart (no AOF)."""
        try:
            info = await self._client.info("persistence")
            if int(info.get("aof_enabled", 0)):
                return
            save = (await self._client.config_get("save")).get("save", "")
        except Exception:  # INFO / CONFIG may be restricted on managed servers
            return
        lost = f"since its last snapshot (save {save!r})" if save else "(it persists nothing)"
        log.warning("the Redis server at %s runs without appendonly: what the hub's log accepted %s is lost if "
                    "Redis restarts; run it with --appendonly yes", _safe_url(self.url), lost)

    async def close(self) -> None:
        await self._commits.drain()
        if self._client is not None:
            client, self._client = self._client, None
            await _close_client(client)

    # -- coalesced writes (one pipeline of script calls per flush) ----------------------------------
    async def _submit(self, op: str, payload: Any) -> Any:
        return await self._commits.submit(op, payload)

    async def _apply_batch(self, batch: list[tuple[str, Any]]) -> list[Any]:
        calls: list[tuple[str, list[str], list[Any]]] = []
        spans: list[tuple[int, int]] = []
        for op, payload in batch:
            start = len(calls)
            calls.extend(self._append_calls(payload) if op == "append" else self._ack_calls(*payload))
            spans.append((start, len(calls)))
        replies = await self._run_scripts(calls)
        results: list[Any] = []
        for (op, _), (start, end) in zip(batch, spans):
            mine = replies[start:end]
            error = next((r for r in mine if isinstance(r, Exception)), None)
            if error is not None:
                results.append(error)
            elif op == "append":
                results.append([bool(flag) for reply in mine for flag in reply])
            else:
                results.append(sum(int(n) for n in mine))
        return results

    async def _run_scripts(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """EVALSHA each (script, keys, args) in one pipeline; reload scripts once if Redis lost them."""
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for i in todo:
                name, keys, args = calls[i]
                pipe.evalsha(self._shas[name], len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
            missing = []
            for i, result in zip(todo, results):
                if isinstance(result, self._exceptions.NoScriptError) and attempt == 0:
                    missing.append(i)
                else:
                    replies[i] = result
            if not missing:
                break
            for name, src in (("append", _APPEND), ("ack", _ACK), ("put", _PUT_ORDERED)):
                self._shas[name] = await self.redis.script_load(src)
            todo = missing
        for reply in replies:
            if isinstance(reply, self._exceptions.ConnectionError):
                raise reply
        return replies

    def _append_calls(self, rows: list[tuple[str, str, str]]) -> list[tuple[str, list[str], list[Any]]]:
        calls = []
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start:start + _CHUNK]
            index: dict[str, int] = {}
            keys = [self._key("counts"), self._key("mailboxes")]
            triples: list[Any] = []
            for recipient, eid, body in chunk:
                r = index.get(recipient)
                if r is None:
                    r = index[recipient] = len(index) + 1
                    keys += [self.stream_key(recipient), self.ids_key(recipient)]
                triples += [r, eid, body]
            args = [GROUP, self.consumer, len(index), *index, *triples]
            calls.append(("append", keys, args))
        return calls

    def _ack_calls(self, recipient: str, ids: list[str]) -> list[tuple[str, list[str], list[Any]]]:
        keys = [self._key("counts"), self.stream_key(recipient), self.ids_key(recipient)]
        return [("ack", keys, [GROUP, *ids[start:start + _CHUNK]]) for start in range(0, len(ids), _CHUNK)]

    async def append(self, entries: Sequence[tuple[str, Envelope]]) -> list[bool]:
        if not entries:
            return []
        rows = [(recipient, env.id, env.model_dump_json()) for recipient, env in entries]
        return await self._submit("append", rows)

    async def ack(self, recipient: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return await self._submit("ack", (recipient, list(ids)))

    # -- recovery ------------------------------------------------------------------------------
    async def unacked(self) -> list[tuple[str, Envelope]]:
        """Everything appended and not acked: what is pending on any consumer (taken over by this
        one with XAUTOCLAIM), then what was never read into the group (read now), in append order."""
        r = self.redis
        recipients: list[str] = await r.zrange(self._key("mailboxes"), 0, -1)
        found: list[tuple[int, str, Envelope]] = []

        def collect(recipient: str, entries: Any) -> None:
            for _sid, fields in entries or ():
                if fields:  # None / empty: an entry deleted while pending (pre-7 servers)
                    found.append((int(fields["seq"]), recipient, Envelope.model_validate_json(fields["body"])))

        cursors = {rec: "0-0" for rec in recipients}
        while cursors:  # 1. pending on any consumer (this one included): take over
            pipe = r.pipeline(transaction=False)
            for rec, cursor in cursors.items():
                pipe.xautoclaim(self.stream_key(rec), GROUP, self.consumer, 0, cursor, count=_READ)
            replies = await pipe.execute()
            following = {}
            for rec, reply in zip(cursors, replies):
                collect(rec, reply[1])
                if reply[0] not in ("0-0", b"0-0"):
                    following[rec] = reply[0]
            cursors = following

        todo = list(recipients)
        while todo:  # 2. never read into the group: read now (they become pending on this consumer)
            pipe = r.pipeline(transaction=False)
            for rec in todo:
                pipe.xreadgroup(GROUP, self.consumer, {self.stream_key(rec): ">"}, count=_READ)
            replies = await pipe.execute()
            following = []
            for rec, reply in zip(todo, replies):
                if isinstance(reply, dict):  # RESP3: {stream: [entries]}
                    entries = next(iter(reply.values()), [[]])[0]
                else:  # RESP2: [[stream, entries]]
                    entries = reply[0][1] if reply else []
                collect(rec, entries)
                if len(entries) >= _READ:
                    following.append(rec)
            todo = following

        await self._forget_idle_consumers(recipients)
        found.sort(key=lambda item: item[0])
        return [(recipient, env) for _, recipient, env in found]

    async def _forget_idle_consumers(self, recipients: list[str]) -> None:
        """Delete other consumers with nothing pending (dead hubs whose entries were taken over)."""
        if not recipients:
            return
        pipe = self.redis.pipeline(transaction=False)
        for rec in recipients:
            pipe.xinfo_consumers(self.stream_key(rec), GROUP)
        infos = await pipe.execute(raise_on_error=False)
        pipe = self.redis.pipeline(transaction=False)
        stale = 0
        for rec, consumers in zip(recipients, infos):
            if isinstance(consumers, Exception):
                continue
            for info in consumers:
                if info.get("name") != self.consumer and int(info.get("pending", 0)) == 0:
                    pipe.xgroup_delconsumer(self.stream_key(rec), GROUP, info["name"])
                    stale += 1
        if stale:
            await pipe.execute(raise_on_error=False)

    # -- subscriptions, rooms, counts ----------------------------------------------------------
    async def subscribe(self, topic: str, recipient: str) -> None:
        await self._put_ordered([self._key("subs"), self._key("order")], [json.dumps([topic, recipient])])

    async def unsubscribe(self, topic: str, recipient: str) -> None:
        await self.redis.zrem(self._key("subs"), json.dumps([topic, recipient]))

    async def subscriptions(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for member in await self.redis.zrange(self._key("subs"), 0, -1):
            topic, recipient = json.loads(member)
            out.setdefault(topic, []).append(recipient)
        return out

    async def cancel_room(self, room: str, reason: str) -> None:
        await self._put_ordered([self._key("rooms:order"), self._key("order"), self._key("rooms")], [room, reason])

    async def cancelled_rooms(self) -> dict[str, str]:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrange(self._key("rooms:order"), 0, -1)
        pipe.hgetall(self._key("rooms"))
        order, reasons = await pipe.execute()
        return {room: reasons[room] for room in order if room in reasons}

    async def counts(self) -> dict[str, int]:
        appended, acked = await self.redis.hmget(self._key("counts"), ["appended", "acked"])
        appended, acked = int(appended or 0), int(acked or 0)
        return {"appended": appended, "acked": acked, "unacked": appended - acked}

    async def _put_ordered(self, keys: list[str], args: list[Any]) -> None:
        (reply,) = await self._run_scripts([("put", keys, args)])
        if isinstance(reply, Exception):
            raise reply


async def _close_client(client: Any) -> None:
    closer = getattr(client, "aclose", None) or client.close
    await closer()
