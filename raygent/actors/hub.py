"""The MessageHub: mailboxes for agents, with delivery guarantees.

Send = persist the envelope in the hub's `MessageLog` (group-committed) -> put it in the recipient's
bounded mailbox -> the recipient `receive`s it (it is now leased to that consumer) -> handles it ->
`ack`s it (the log marks it handled). What the guarantees rest on:

- **at-least-once**: an envelope leaves the log only by an ack. A lease that expires (the consumer
  died or hung past `lease_s`) puts it back at the head of the mailbox; a hub that starts reads every
  unacked envelope from the log and delivers it again.
- **handled once**: `(recipient, id)` is stored once (a retried send, or a step re-run after a crash
  that re-sends with the same derived id, is recognised and not delivered again), and an envelope is
  never handed to two consumers at once; receivers drop ids they already handled (see Coordinator).
- **per-sender FIFO** to each recipient: one queue per mailbox; a sender that awaits each send sees
  its envelopes received in that order (a redelivered envelope goes back to the head).
- **bounded mailboxes**: a send to a full mailbox waits until there is room, up to `send_timeout_s`,
  then raises MailboxFullError naming the mailbox; nothing is dropped.

The hub is a plain component: in-process, or a Ray actor through `raygent.runtime.deploy` (then Ray
restarts it after a crash and it reloads its log). Live room events (agents' step events, copies of
the room's messages) stream to subscribers of `events(room)`; they are not persisted.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from raygent.actors.log import MessageLog, SQLiteLog
from raygent.schema import Envelope, Message
from raygent.telemetry.metrics import HUB_DEPTH, HUB_REDELIVERIES

_MAILBOX_TOPIC = "__mailbox__:"  # a registration is remembered as a subscription to this topic + room
_PRIVATE_TOPIC = "__private__:"  # ... and a private mailbox's (a reply box: not a member of its room)
_REPLAY = ""  # the consumer of envelopes replayed at start-up, until claimed or their grace ends


class HubError(RuntimeError):
    """Base class of the hub's errors (each says what to do)."""


class MailboxFullError(HubError):
    """A send waited `send_timeout_s` for room in a full mailbox."""


class UnknownRecipientError(HubError):
    """A send to a name no agent registered."""


class RoomCancelledError(HubError):
    """A send into (or a receive from) a room that was cancelled."""


class EnvelopeTooLargeError(HubError):
    """An envelope over `max_envelope_bytes`: media must travel as artifact references."""


class _Mailbox:
    __slots__ = ("name", "room", "private", "ready", "leased", "has_items", "has_room", "capacity", "depth",
                 "reported", "redeliveries", "registrations")

    def __init__(self, name: str, room: str, capacity: int, private: bool = False, hub: str = "hub"):
        # metrics (raygent_hub_mailbox_depth / _redeliveries): reply boxes share the label "_private"
        # (one per coordinator: unbounded names); the depth gauge moves by deltas, so shared labels add up
        label = "_private" if private else name
        self.depth = HUB_DEPTH.labels(hub, label)
        self.redeliveries = HUB_REDELIVERIES.labels(hub, label)
        self.reported = 0
        self.name = name
        self.room = room
        self.private = private
        self.capacity = capacity
        self.ready: OrderedDict[str, Envelope] = OrderedDict()
        # id -> (envelope, consumer, lease deadline)
        self.leased: dict[str, tuple[Envelope, str, float]] = {}
        # consumer -> how many times it registered: a receive from an earlier life is stale
        self.registrations: dict[str, int] = {}
        self.has_items = asyncio.Event()
        self.has_room = asyncio.Event()
        self.has_room.set()

    def size(self) -> int:
        return len(self.ready) + len(self.leased)

    def refresh(self) -> None:
        size = len(self.ready) + len(self.leased)
        if size != self.reported:
            self.depth.inc(size - self.reported)
            self.reported = size
        if self.ready:
            self.has_items.set()
        else:
            self.has_items.clear()
        if self.size() < self.capacity:
            self.has_room.set()
        else:
            self.has_room.clear()


class _EventStream:
    """One live subscriber of a room: a bounded queue; on overflow the oldest events give way to a
    'gap' notice saying how many were skipped (a slow viewer never stalls the agents)."""

    def __init__(self, size: int):
        self.queue: asyncio.Queue[Envelope] = asyncio.Queue(size)
        self.skipped = 0

    def put(self, env: Envelope) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.skipped += 1
        self.queue.put_nowait(env)


class MessageHub:
    """Mailboxes, topics and rooms for agents. See the module docstring for the guarantees."""

    def __init__(self, log: MessageLog | str | Path | None = None, *, name: str = "hub", mailbox_size: int = 1000,
                 lease_s: float = 60.0, send_timeout_s: float = 30.0, max_envelope_bytes: int = 256 * 1024,
                 event_buffer: int = 10_000, replay_grace_s: float = 3.0):
        if mailbox_size < 1:
            raise ValueError("mailbox_size must be at least 1")
        self.name = name
        self.log: MessageLog = log if log is not None and not isinstance(log, (str, Path)) else SQLiteLog(log or ":memory:")
        self.mailbox_size = mailbox_size
        self.lease_s = lease_s
        self.send_timeout_s = send_timeout_s
        self.max_envelope_bytes = max_envelope_bytes
        self.event_buffer = event_buffer
        self.replay_grace_s = replay_grace_s
        self._mailboxes: dict[str, _Mailbox] = {}
        self._topics: dict[str, list[str]] = {}
        self._cancelled: dict[str, str] = {}
        self._cancel_events: dict[str, asyncio.Event] = {}
        self._watchers: dict[str, list[_EventStream]] = {}
        self._opened: asyncio.Future | None = None
        self._reaper: asyncio.Task | None = None
        self._counters = {"sent": 0, "duplicates": 0, "delivered": 0, "redelivered": 0, "acked": 0}

    def __getstate__(self) -> dict[str, Any]:
        return {"log": self.log, "name": self.name, "mailbox_size": self.mailbox_size, "lease_s": self.lease_s,
                "send_timeout_s": self.send_timeout_s, "max_envelope_bytes": self.max_envelope_bytes,
                "event_buffer": self.event_buffer, "replay_grace_s": self.replay_grace_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        log = state.pop("log")
        self.__init__(log, **state)  # type: ignore[misc]

    # -- start-up: the log is the truth ----------------------------------------------------------
    async def _ready(self) -> None:
        if self._opened is None:
            self._opened = asyncio.ensure_future(self._open())
        await asyncio.shield(self._opened)

    async def _open(self) -> None:
        await self.log.open()
        self._cancelled = await self.log.cancelled_rooms()
        for topic, names in (await self.log.subscriptions()).items():
            if topic.startswith((_MAILBOX_TOPIC, _PRIVATE_TOPIC)):
                private = topic.startswith(_PRIVATE_TOPIC)
                room = topic.split(":", 1)[1]
                for name in names:
                    self._mailboxes.setdefault(name, _Mailbox(name, room, self.mailbox_size, private, self.name))
            else:
                self._topics[topic] = list(names)
        # what was not acknowledged is delivered again; first it is held for `replay_grace_s`, so a
        # consumer that still holds an envelope from before the restart claims it back (see
        # `register`) before another replica of the same agent could be handed it
        grace_until = time.monotonic() + self.replay_grace_s
        for recipient, env in await self.log.unacked():
            box = self._mailboxes.get(recipient) or self._mailboxes.setdefault(
                recipient, _Mailbox(recipient, env.room, self.mailbox_size, hub=self.name))
            env.attempt += 1  # it may have reached its recipient before the restart
            if self.replay_grace_s > 0:
                box.leased[env.id] = (env, _REPLAY, grace_until)
            else:
                box.ready[env.id] = env
            self._counters["redelivered"] += 1
            box.redeliveries.inc()
        for box in self._mailboxes.values():
            box.refresh()
        self._reaper = asyncio.ensure_future(self._reap_leases())

    async def _reap_leases(self) -> None:
        """Give expired leases back: the consumer died or hung; the head of its mailbox gets them."""
        while True:
            await asyncio.sleep(max(0.05, min(self.lease_s / 4, self.replay_grace_s / 2 or 5.0, 5.0)))
            now = time.monotonic()
            for box in self._mailboxes.values():
                expired = [i for i, (_, _, deadline) in box.leased.items() if deadline <= now]
                if expired:
                    self._release(box, expired)

    def _release(self, box: _Mailbox, ids: Sequence[str]) -> int:
        released = 0
        for i in reversed(ids):  # keep their order at the head of the queue
            item = box.leased.pop(i, None)
            if item is None:
                continue
            env = item[0]
            env.attempt += 1
            box.ready[i] = env
            box.ready.move_to_end(i, last=False)
            released += 1
        self._counters["redelivered"] += released
        if released:
            box.redeliveries.inc(released)
        box.refresh()
        return released

    # -- registration and topics ----------------------------------------------------------------
    async def register(self, name: str, *, room: str = "default", consumer: str | None = None,
                       holding: Sequence[str] = (), private: bool = False) -> dict[str, Any]:
        """Open (or find) `name`'s mailbox in `room`; remembered in the log, so senders may address
        it after a hub restart. A `private` mailbox (a coordinator's reply box) is addressed by name
        only: it is no member of the room (`members`, `broadcast`).

        With `consumer`: the envelopes this consumer says it is `holding` (it received them and has
        not acknowledged them yet) are leased to it again, and everything else leased to it is given
        back to the queue. A restarted coordinator holds nothing, so it gets back what its previous
        life left unacknowledged; a live coordinator meeting a restarted hub keeps its work."""
        await self._ready()
        box = self._mailboxes.get(name)
        if box is None:
            await self.log.subscribe((_PRIVATE_TOPIC if private else _MAILBOX_TOPIC) + room, name)
            box = self._mailboxes.setdefault(name, _Mailbox(name, room, self.mailbox_size, private, self.name))
        released = claimed = 0
        if consumer is not None:
            keep = set(holding)
            until = time.monotonic() + self.lease_s
            for i in keep:
                item = box.leased.get(i)
                env = item[0] if item is not None and item[1] in (consumer, _REPLAY) else box.ready.pop(i, None)
                if env is not None:
                    box.leased[i] = (env, consumer, until)
                    claimed += 1
            released = self._release(box, [i for i, (_, c, _) in box.leased.items() if c == consumer and i not in keep])
            # a receive still waiting from the consumer's previous life (a killed actor's long poll) must
            # not take the next envelope: it would be leased to the dead until the lease ends
            box.registrations[consumer] = box.registrations.get(consumer, 0) + 1
            box.has_items.set()
        return {"mailbox": name, "room": box.room, "queued": box.size(), "released": released, "claimed": claimed,
                "lease_s": self.lease_s}

    async def subscribe(self, topic: str, name: str) -> None:
        await self._ready()
        if name not in self._mailboxes:
            raise UnknownRecipientError(f"cannot subscribe {name!r} to {topic!r}: register the mailbox first")
        await self.log.subscribe(topic, name)
        members = self._topics.setdefault(topic, [])
        if name not in members:
            members.append(name)

    async def unsubscribe(self, topic: str, name: str) -> None:
        await self._ready()
        await self.log.unsubscribe(topic, name)
        if name in self._topics.get(topic, []):
            self._topics[topic].remove(name)

    async def members(self, room: str = "default") -> list[str]:
        """The room's mailboxes (its agents and its driver), private ones aside."""
        await self._ready()
        return [b.name for b in self._mailboxes.values() if b.room == room and not b.private]

    # -- sending ---------------------------------------------------------------------------------
    async def send(self, envelope: Envelope, *, timeout_s: float | None = None) -> bool:
        """Deliver one envelope (direct, or to every subscriber when it has a topic and no
        recipient). True when stored, False when that id was already accepted for that recipient."""
        return (await self.send_many([envelope], timeout_s=timeout_s))[0]

    async def send_many(self, envelopes: Sequence[Envelope], *, timeout_s: float | None = None) -> list[bool]:
        """Send a batch in order (one log commit for all of it). One bool per envelope: True when
        at least one recipient stored it as new."""
        await self._ready()
        pairs, owners = await self._prepare(envelopes, timeout_s)
        return self._deliver(envelopes, pairs, owners, await self.log.append(pairs))

    async def complete(self, name: str, ids: Sequence[str], outgoing: Sequence[Envelope] = (), *,
                       timeout_s: float | None = None) -> list[bool]:
        """Send what handling `ids` produced and acknowledge them: one call and one log commit (the
        outgoing envelopes are written first in it, so a handled mark never goes without its reply).
        Returns `send_many`'s answer for `outgoing`."""
        await self._ready()
        pairs, owners = await self._prepare(outgoing, timeout_s)
        # submitted back to back: the log's group commit writes both in one transaction, in this order
        appended = asyncio.ensure_future(self.log.append(pairs))
        acked = asyncio.ensure_future(self._ack(name, ids))
        stored = await appended
        await acked
        return self._deliver(outgoing, pairs, owners, stored)

    async def _prepare(self, envelopes: Sequence[Envelope], timeout_s: float | None
                       ) -> tuple[list[tuple[str, Envelope]], list[int]]:
        """Check the envelopes, expand topics into addressed copies, wait for room in the mailboxes."""
        pairs: list[tuple[str, Envelope]] = []
        owners: list[int] = []
        for n, env in enumerate(envelopes):
            self._check(env)
            recipients = self._recipients(env)
            for recipient in recipients:  # a topic's subscribers each get their own addressed copy
                pairs.append((recipient, env if len(recipients) == 1 and env.recipient == recipient
                              else env.model_copy(update={"recipient": recipient})))
                owners.append(n)
        timeout = self.send_timeout_s if timeout_s is None else timeout_s
        for recipient in dict.fromkeys(r for r, _ in pairs):
            await self._wait_for_room(self._mailboxes[recipient], timeout)
        return pairs, owners

    def _deliver(self, envelopes: Sequence[Envelope], pairs: list[tuple[str, Envelope]], owners: list[int],
                 stored: list[bool]) -> list[bool]:
        """Queue what the log stored as new (a duplicate id is not delivered again)."""
        out = [False] * len(envelopes)
        touched: set[str] = set()
        for (recipient, env), new, n in zip(pairs, stored, owners):
            if not new:
                self._counters["duplicates"] += 1
                continue
            out[n] = True
            self._mailboxes[recipient].ready[env.id] = env
            touched.add(recipient)
            self._counters["sent"] += 1
        for recipient in touched:
            self._mailboxes[recipient].refresh()
        if self._watchers:
            for env, new in zip(envelopes, out):
                if new:
                    self._broadcast_event(env)
        return out

    def _check(self, env: Envelope) -> None:
        if env.kind == "event":
            raise HubError("events are not mail: use emit(room, event) for live room events")
        reason = self._cancelled.get(env.room)
        if reason is not None:
            raise RoomCancelledError(f"room {env.room!r} was cancelled ({reason}); envelope {env.id} not sent")
        size = len(env.content.content or "") + sum(len(str(v)) for v in env.content.metadata.values())
        if size > self.max_envelope_bytes:
            raise EnvelopeTooLargeError(
                f"envelope {env.id} from {env.sender!r} carries about {size} bytes inline (limit "
                f"{self.max_envelope_bytes}): write large media to an ArtifactStore and send the Artifact reference")

    def _recipients(self, env: Envelope) -> list[str]:
        if env.recipient is not None:
            if env.recipient not in self._mailboxes:
                known = ", ".join(sorted(self._mailboxes)) or "none"
                raise UnknownRecipientError(f"no mailbox {env.recipient!r} in hub {self.name!r} (registered: {known}); "
                                            f"envelope {env.id} from {env.sender!r} not sent")
            return [env.recipient]
        if env.topic is None:
            raise HubError(f"envelope {env.id} has neither a recipient nor a topic")
        return [r for r in self._topics.get(env.topic, []) if r != env.sender]

    async def _wait_for_room(self, box: _Mailbox, timeout: float) -> None:
        if box.size() < box.capacity:
            return
        deadline = time.monotonic() + timeout
        while box.size() >= box.capacity:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MailboxFullError(
                    f"mailbox {box.name!r} is full ({box.size()}/{box.capacity} waiting or in handling) and "
                    f"had no room for {timeout:.1f} s: its agent is slower than its senders (raise mailbox_size, "
                    f"add replicas, or slow the senders); nothing was sent")
            box.has_room.clear()
            try:
                await asyncio.wait_for(box.has_room.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def broadcast(self, room: str, content: Message | str, *, sender: str,
                        **fields: Any) -> list[str]:
        """Send one message to every member of `room` but the sender; returns the recipients."""
        message = Message.assistant(content) if isinstance(content, str) else content
        names = [n for n in await self.members(room) if n != sender]
        base = Envelope(sender=sender, room=room, content=message, **fields)  # pass id= for a retry-safe broadcast
        await self.send_many([base.model_copy(update={"id": f"{base.id}.{n}", "recipient": n}) for n in names])
        return names

    # -- receiving -------------------------------------------------------------------------------
    async def receive(self, name: str, *, max_items: int = 1, timeout_s: float | None = 30.0,
                      consumer: str = "default") -> list[Envelope]:
        """Up to `max_items` envelopes from `name`'s mailbox, oldest first, leased to `consumer` for
        `lease_s` (ack them, or `extend` the lease, before it ends). Waits up to `timeout_s` for the
        first one; returns [] on time-out. Raises RoomCancelledError once the room is cancelled."""
        await self._ready()
        box = self._mailboxes.get(name)
        if box is None:
            raise UnknownRecipientError(f"no mailbox {name!r} in hub {self.name!r}: register it first")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        life = box.registrations.get(consumer, 0)
        while True:
            if box.room in self._cancelled:  # a cancelled room delivers nothing more, queued or not
                raise RoomCancelledError(f"room {box.room!r} was cancelled ({self._cancelled[box.room]})")
            if box.registrations.get(consumer, 0) != life:  # the consumer registered again since: stale
                return []
            if box.ready:
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            box.has_items.clear()
            try:
                await asyncio.wait_for(box.has_items.wait(), remaining)
            except asyncio.TimeoutError:
                return []
        lease_until = time.monotonic() + self.lease_s
        out: list[Envelope] = []
        while box.ready and len(out) < max_items:
            env_id, env = box.ready.popitem(last=False)
            box.leased[env_id] = (env, consumer, lease_until)
            out.append(env)
        self._counters["delivered"] += len(out)
        box.refresh()
        return out

    async def ack(self, name: str, ids: Sequence[str]) -> int:
        """Mark envelopes handled (durably); they are never delivered again. Returns how many were
        still open in the log (0 for a repeated ack)."""
        await self._ready()
        return await self._ack(name, ids)

    async def _ack(self, name: str, ids: Sequence[str]) -> int:
        box = self._mailboxes.get(name)
        if box is not None:
            for i in ids:
                if box.leased.pop(i, None) is None:
                    box.ready.pop(i, None)  # acked before a redelivery reached anyone
            box.refresh()
        done = await self.log.ack(name, ids)
        self._counters["acked"] += done
        return done

    async def extend(self, name: str, ids: Sequence[str]) -> int:
        """Renew the lease of envelopes still being handled (a long agent run); returns how many."""
        box = self._mailboxes.get(name)
        if box is None:
            return 0
        until = time.monotonic() + self.lease_s
        n = 0
        for i in ids:
            item = box.leased.get(i)
            if item is not None:
                box.leased[i] = (item[0], item[1], until)
                n += 1
        return n

    async def nack(self, name: str, ids: Sequence[str]) -> int:
        """Give leased envelopes back now (a consumer shutting down cleanly)."""
        box = self._mailboxes.get(name)
        return self._release(box, list(ids)) if box is not None else 0

    # -- rooms: cancellation and live events -----------------------------------------------------
    async def cancel_room(self, room: str, reason: str = "cancelled") -> None:
        """Refuse new mail in `room`, wake every receiver there (they get RoomCancelledError) and
        every `wait_cancelled` watcher, and tell live subscribers. Persisted: a restarted hub keeps
        the room cancelled."""
        await self._ready()
        await self.log.cancel_room(room, reason)
        self._cancelled[room] = reason
        self._cancel_events.setdefault(room, asyncio.Event()).set()
        for box in self._mailboxes.values():
            if box.room == room:
                box.has_items.set()  # wake receivers so they see the cancellation
        self._broadcast_event(Envelope(sender=self.name, room=room, kind="control",
                                       content=Message.system(f"room cancelled: {reason}"),
                                       headers={"control": "cancel", "reason": reason}))

    async def cancelled(self, room: str) -> str | None:
        """The reason `room` was cancelled, or None."""
        await self._ready()
        return self._cancelled.get(room)

    async def wait_cancelled(self, room: str, timeout_s: float | None = None) -> str | None:
        """Wait until `room` is cancelled (its reason), or `timeout_s` passes (None)."""
        await self._ready()
        if room in self._cancelled:
            return self._cancelled[room]
        event = self._cancel_events.setdefault(room, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except asyncio.TimeoutError:
            return None
        return self._cancelled.get(room)

    async def emit(self, room: str, event: dict[str, Any] | Message | str, *, sender: str) -> None:
        """Publish a live event (e.g. an agent's step event) to the room's subscribers; not stored."""
        if not self._watchers.get(room):
            return
        if isinstance(event, dict):
            message = Message(role="assistant", content=event.get("text"), metadata=event)
        else:
            message = Message.assistant(event) if isinstance(event, str) else event
        self._broadcast_event(Envelope(sender=sender, room=room, kind="event", content=message))

    def _broadcast_event(self, env: Envelope) -> None:
        for stream in self._watchers.get(env.room, []):
            stream.put(env)

    async def events(self, room: str = "default", *, until_idle_s: float | None = None) -> AsyncIterator[Envelope]:
        """Live view of a room: every message sent in it and every emitted event, from now on.
        Ends when the room is cancelled (after the cancel notice) or after `until_idle_s` without
        an event. A subscriber too slow for `event_buffer` events gets a 'gap' event."""
        await self._ready()
        stream = _EventStream(self.event_buffer)
        self._watchers.setdefault(room, []).append(stream)
        try:
            while True:
                if stream.skipped:
                    skipped, stream.skipped = stream.skipped, 0
                    yield Envelope(sender=self.name, room=room, kind="control",
                                   content=Message.system(f"{skipped} events skipped (slow subscriber)"),
                                   headers={"control": "gap", "skipped": skipped})
                try:
                    env = await asyncio.wait_for(stream.queue.get(), until_idle_s)
                except asyncio.TimeoutError:
                    return
                yield env
                if env.kind == "control" and env.headers.get("control") == "cancel":
                    return
        finally:
            self._watchers[room].remove(stream)

    # -- inspection ------------------------------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        """Counters since start, mailbox depths, and the log's counts (appended / acked / unacked)."""
        await self._ready()
        return {"hub": self.name, **self._counters, "log": await self.log.counts(),
                "mailboxes": {n: {"ready": len(b.ready), "leased": len(b.leased), "room": b.room}
                              for n, b in self._mailboxes.items()},
                "cancelled_rooms": dict(self._cancelled)}

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for box in self._mailboxes.values():  # a closed hub queues nothing: take its depth off the gauge
            box.depth.dec(box.reported)
            box.reported = 0
        await self.log.close()
