"""MessageHub guarantees, each with a test: per-sender FIFO, at-least-once with leases and acks,
dedupe by id, bounded mailboxes with back-pressure, persistence across a restart, topics, rooms
(cancel, live events), shards; and Coordinators handling each message once."""

from __future__ import annotations

import asyncio

import pytest

from raygent.actors.coordinator import Coordinator
from raygent.actors.hub import (
    EnvelopeTooLargeError,
    MailboxFullError,
    MessageHub,
    RoomCancelledError,
    UnknownRecipientError,
)
from raygent.actors.log import SQLiteLog
from raygent.actors.team import HubShards
from raygent.schema import Envelope, Message


def env(sender: str, recipient: str | None, text: str, **fields) -> Envelope:
    return Envelope(sender=sender, recipient=recipient, content=Message.user(text), **fields)


async def drain(hub: MessageHub, name: str, *, ack: bool = True, timeout_s: float = 0.2) -> list[Envelope]:
    out = []
    while True:
        batch = await hub.receive(name, max_items=100, timeout_s=timeout_s)
        if not batch:
            return out
        out.extend(batch)
        if ack:
            await hub.ack(name, [e.id for e in batch])


async def test_per_sender_fifo_with_interleaved_senders():
    hub = MessageHub()
    for name in ("a", "b", "c"):
        await hub.register(name)

    async def sender(name: str) -> None:
        for i in range(200):
            await hub.send(env(name, "c", f"{name}-{i}"))

    await asyncio.gather(sender("a"), sender("b"))
    got = await drain(hub, "c")
    assert len(got) == 400
    for name in ("a", "b"):
        mine = [int(e.content.content.split("-")[1]) for e in got if e.sender == name]
        assert mine == list(range(200)), f"{name}'s messages arrived out of order"


async def test_duplicate_id_is_stored_and_delivered_once():
    hub = MessageHub()
    await hub.register("b")
    first = env("a", "b", "hello")
    assert await hub.send(first) is True
    assert await hub.send(first.model_copy()) is False  # a retry of the same message
    got = await drain(hub, "b")
    assert [e.id for e in got] == [first.id]
    assert (await hub.stats())["duplicates"] == 1


async def test_unacked_envelope_is_redelivered_after_its_lease_with_attempt_count():
    hub = MessageHub(lease_s=0.2)
    await hub.register("b")
    sent = env("a", "b", "work")
    await hub.send(sent)
    (first,) = await hub.receive("b", timeout_s=1)
    assert first.attempt == 1
    # no ack: the consumer "died"; the lease runs out and the envelope comes back
    (again,) = await hub.receive("b", timeout_s=3)
    assert again.id == sent.id and again.attempt == 2
    assert await hub.ack("b", [again.id]) == 1
    assert await hub.receive("b", timeout_s=0.5) == []
    assert await hub.ack("b", [again.id]) == 0  # a repeated ack is harmless


async def test_a_killed_consumers_waiting_receive_does_not_take_the_next_envelope():
    """A coordinator killed while its long poll waits in the hub comes back and registers again: the
    dead life's receive returns empty and the next envelope goes to the new life at once (before, it
    could be leased to the dead until the lease ran out: a team's ask timed out in CI)."""
    hub = MessageHub(lease_s=60)
    await hub.register("member", consumer="member")
    zombie = asyncio.ensure_future(hub.receive("member", timeout_s=30, consumer="member"))
    await asyncio.sleep(0.05)  # the killed life's long poll is waiting
    await hub.register("member", consumer="member")  # the restarted life
    fresh = asyncio.ensure_future(hub.receive("member", timeout_s=30, consumer="member"))
    await asyncio.sleep(0.05)
    sent = env("driver", "member", "after the restart")
    await hub.send(sent)
    (got,) = await asyncio.wait_for(fresh, 5)
    assert got.id == sent.id
    assert await asyncio.wait_for(zombie, 5) == []


async def test_extend_keeps_a_long_running_envelope_from_redelivery():
    hub = MessageHub(lease_s=0.3)
    await hub.register("b")
    await hub.send(env("a", "b", "long job"))
    (got,) = await hub.receive("b", timeout_s=1)
    for _ in range(4):
        await asyncio.sleep(0.15)
        assert await hub.extend("b", [got.id]) == 1
    assert await hub.receive("b", timeout_s=0.1) == []


async def test_full_mailbox_makes_the_sender_wait_then_fail_clearly_and_drops_nothing():
    hub = MessageHub(mailbox_size=3)
    await hub.register("b")
    for i in range(3):
        await hub.send(env("a", "b", f"m{i}"))
    with pytest.raises(MailboxFullError, match=r"mailbox 'b' is full \(3/3.*nothing was sent"):
        await hub.send(env("a", "b", "m3"), timeout_s=0.2)
    assert (await hub.stats())["log"]["appended"] == 3

    # a waiting sender goes on as soon as the receiver makes room
    waiting = asyncio.ensure_future(hub.send(env("a", "b", "m3"), timeout_s=5))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    (first,) = await hub.receive("b", timeout_s=1)
    await hub.ack("b", [first.id])
    assert await asyncio.wait_for(waiting, 2) is True
    assert [e.content.content for e in await drain(hub, "b")] == ["m1", "m2", "m3"]


async def test_a_restarted_hub_replays_exactly_what_was_not_acknowledged(tmp_path):
    path = tmp_path / "hub.db"
    hub = MessageHub(SQLiteLog(path))
    await hub.register("b", room="r1")
    sent = [env("a", "b", f"m{i}", room="r1") for i in range(5)]
    for e in sent:
        await hub.send(e)
    got = await hub.receive("b", max_items=2, timeout_s=1)
    await hub.ack("b", [got[0].id])  # m0 handled, m1 leased but never acked
    await hub.close()  # the hub process "dies"

    hub2 = MessageHub(SQLiteLog(path), replay_grace_s=0)
    # the registration survived: senders may address b before b comes back
    await hub2.send(env("a", "b", "m5", room="r1"))
    replay = await drain(hub2, "b")
    assert [e.content.content for e in replay] == ["m1", "m2", "m3", "m4", "m5"]
    assert [e.attempt for e in replay] == [2, 2, 2, 2, 1]
    assert replay[0] == sent[1].model_copy(update={"attempt": 2})
    counts = (await hub2.stats())["log"]
    assert counts == {"appended": 6, "acked": 6, "unacked": 0}
    await hub2.close()


async def test_after_a_hub_restart_a_live_consumer_claims_back_what_it_holds(tmp_path):
    """Two replicas share a mailbox; the hub restarts while replica 0 holds m0. Replayed envelopes
    wait `replay_grace_s` for their holders: replica 0 claims m0 back, replica 1 never gets it."""
    path = tmp_path / "hub.db"
    hub = MessageHub(SQLiteLog(path))
    await hub.register("w")
    for i in range(3):
        await hub.send(env("a", "w", f"m{i}"))
    (held,) = await hub.receive("w", consumer="w#0", timeout_s=1)
    await hub.close()

    hub2 = MessageHub(SQLiteLog(path), replay_grace_s=0.5)
    info = await hub2.register("w", consumer="w#0", holding=[held.id])
    assert info["claimed"] == 1
    other = await hub2.receive("w", consumer="w#1", max_items=10, timeout_s=3)
    assert [e.content.content for e in other] == ["m1", "m2"]  # after the grace, not m0
    assert await hub2.ack("w", [held.id] + [e.id for e in other]) == 3
    await hub2.close()


async def test_topics_fan_out_to_subscribers_but_not_the_publisher():
    hub = MessageHub()
    for name in ("a", "b", "c"):
        await hub.register(name)
        await hub.subscribe("news", name)
    await hub.send(Envelope(sender="a", topic="news", content=Message.user("extra!")))
    assert await drain(hub, "a") == []
    for name in ("b", "c"):
        (got,) = await drain(hub, name)
        assert got.recipient == name and got.content.content == "extra!"


async def test_unknown_recipient_and_oversized_envelope_are_refused_with_clear_errors():
    hub = MessageHub(max_envelope_bytes=1000)
    await hub.register("b")
    with pytest.raises(UnknownRecipientError, match=r"no mailbox 'bob'.*registered: b"):
        await hub.send(env("a", "bob", "hi"))
    with pytest.raises(EnvelopeTooLargeError, match="ArtifactStore"):
        await hub.send(env("a", "b", "x" * 5000))
    assert (await hub.stats())["log"]["appended"] == 0


async def test_cancelling_a_room_wakes_receivers_refuses_mail_and_survives_restart(tmp_path):
    path = tmp_path / "hub.db"
    hub = MessageHub(SQLiteLog(path))
    await hub.register("b", room="story")
    await hub.register("x", room="other")
    blocked = asyncio.ensure_future(hub.receive("b", timeout_s=10))
    watcher = asyncio.ensure_future(hub.wait_cancelled("story", timeout_s=10))
    await asyncio.sleep(0.05)
    await hub.cancel_room("story", "user pressed stop")
    with pytest.raises(RoomCancelledError, match="user pressed stop"):
        await asyncio.wait_for(blocked, 2)
    assert await asyncio.wait_for(watcher, 2) == "user pressed stop"
    with pytest.raises(RoomCancelledError):
        await hub.send(env("a", "b", "late", room="story"))
    await hub.send(env("a", "x", "elsewhere", room="other"))  # other rooms go on
    await hub.close()
    hub2 = MessageHub(SQLiteLog(path))
    assert await hub2.cancelled("story") == "user pressed stop"
    await hub2.close()


async def test_room_events_stream_messages_and_agent_events_live():
    hub = MessageHub()
    await hub.register("b", room="r")
    seen: list[Envelope] = []

    async def watch():
        async for e in hub.events("r", until_idle_s=2):
            seen.append(e)

    task = asyncio.ensure_future(watch())
    await asyncio.sleep(0.05)
    await hub.send(env("a", "b", "hello", room="r"))
    await hub.emit("r", {"type": "tool_call", "text": "calling calculator"}, sender="b")
    await hub.cancel_room("r", "done")
    await asyncio.wait_for(task, 3)
    assert [(e.kind, e.content.content) for e in seen] == [
        ("message", "hello"), ("event", "calling calculator"), ("control", "room cancelled: done")]


async def test_shards_own_their_rooms():
    shards = HubShards([MessageHub(name="s0"), MessageHub(name="s1")])
    rooms = [f"room-{i}" for i in range(20)]
    owners = {r: shards.for_room(r).name for r in rooms}
    assert set(owners.values()) == {"s0", "s1"}
    assert all(shards.for_room(r).name == owners[r] for r in rooms)  # stable
    for r in rooms:
        hub = shards.for_room(r)
        await hub.register(f"{r}-agent", room=r)
        await hub.send(env("x", f"{r}-agent", r, room=r))
    for hub in shards.hubs:
        stats = await hub.stats()
        assert stats["log"]["appended"] == sum(1 for o in owners.values() if o == hub.name)


# -- coordinators -------------------------------------------------------------------------------------
async def test_coordinator_replies_and_handles_each_message_once():
    hub = MessageHub()
    handled: list[str] = []

    async def echo(e: Envelope, ctx) -> str:
        handled.append(e.content.content)
        return e.content.content.upper()

    c = Coordinator("echo", echo, hub)
    await c.start()
    await hub.register("me")
    for i in range(5):
        await hub.send(env("me", "echo", f"m{i}", reply_to="me"))
    replies = []
    while len(replies) < 5:
        batch = await hub.receive("me", max_items=10, timeout_s=2)
        assert batch, "no reply"
        replies.extend(batch)
        await hub.ack("me", [e.id for e in batch])
    assert [e.content.content for e in replies] == [f"M{i}" for i in range(5)]
    assert handled == [f"m{i}" for i in range(5)]
    assert all(r.correlation_id == r.id.rsplit(".r", 1)[0] for r in replies)
    await c.stop()


async def test_a_coordinator_that_dies_mid_message_is_replaced_and_the_reply_appears_once():
    hub = MessageHub(lease_s=30)
    started = asyncio.Event()
    calls: list[str] = []

    async def slow(e: Envelope, ctx) -> str:
        calls.append(e.id)
        started.set()
        await asyncio.sleep(3600)
        return "never"

    async def quick(e: Envelope, ctx) -> str:
        calls.append(e.id)
        return "done: " + e.content.content

    first = Coordinator("worker", slow, hub, consumer="worker#0")
    await first.start()
    await hub.register("me")
    job = env("me", "worker", "job", reply_to="me")
    await hub.send(job)
    await asyncio.wait_for(started.wait(), 2)
    await first.stop()  # its "process" dies with the job leased (not acked)

    second = Coordinator("worker", quick, hub, consumer="worker#0")  # Ray's restart of the same actor
    await second.start()  # registering as the same consumer takes back the lease at once
    (reply,) = await hub.receive("me", timeout_s=3)
    assert reply.content.content == "done: job" and reply.correlation_id == job.id
    await hub.ack("me", [reply.id])
    assert calls == [job.id, job.id]
    assert await hub.receive("me", timeout_s=0.3) == []
    # re-handling the same envelope again would send the same reply id: stored once
    assert await hub.send(job.reply("done: job", sender="worker")) is False
    await second.stop()


async def test_handler_error_is_replied_not_lost():
    hub = MessageHub()

    async def broken(e: Envelope, ctx) -> str:
        raise ValueError("bad input: no page number")

    c = Coordinator("w", broken, hub)
    await c.start()
    await hub.register("me")
    await hub.send(env("me", "w", "x", reply_to="me"))
    (reply,) = await hub.receive("me", timeout_s=2)
    assert reply.headers["error"] == "ValueError: bad input: no page number"
    assert "ERROR from w" in reply.content.content
    stats = await c.stats()
    assert stats.failed == 1 and stats.last_error.startswith("ValueError")
    await c.stop()


async def test_request_reply_between_coordinators_and_timeout():
    hub = MessageHub()

    async def adder(e: Envelope, ctx) -> str:
        a, b = map(int, e.content.content.split("+"))
        return str(a + b)

    async def asker(e: Envelope, ctx) -> str:
        reply = await ctx.request("adder", e.content.content, timeout_s=5)
        return f"the sum is {reply.content.content}"

    async def silent(e: Envelope, ctx) -> None:
        await asyncio.sleep(10)

    async def impatient(e: Envelope, ctx) -> str:
        await ctx.request("silent", "hello?", timeout_s=0.3)
        return "unreachable"

    cs = [Coordinator(n, h, hub) for n, h in
          (("adder", adder), ("asker", asker), ("silent", silent), ("impatient", impatient))]
    for c in cs:
        await c.start()
    await hub.register("me")
    await hub.send(env("me", "asker", "2+40", reply_to="me"))
    (reply,) = await hub.receive("me", timeout_s=3)
    assert reply.content.content == "the sum is 42"
    await hub.send(env("me", "impatient", "go", reply_to="me"))
    (reply,) = await hub.receive("me", timeout_s=3)
    assert "no reply from 'silent' within 0 s" in reply.headers["error"] or "silent" in reply.headers["error"]
    for c in cs:
        await c.stop()


async def test_cancel_stops_a_running_handler():
    hub = MessageHub()
    running = asyncio.Event()

    async def long(e: Envelope, ctx) -> str:
        running.set()
        await asyncio.sleep(3600)
        return "never"

    c = Coordinator("w", long, hub, room="r", poll_s=0.5)
    await c.start()
    await hub.register("me", room="r")
    await hub.send(env("me", "w", "go", room="r", reply_to="me"))
    await asyncio.wait_for(running.wait(), 2)
    await hub.cancel_room("r", "stop now")
    for _ in range(40):
        stats = await c.stats()
        if stats.in_flight == 0 and not stats.running:
            break
        await asyncio.sleep(0.05)
    assert stats.cancelled and stats.in_flight == 0 and not stats.running


async def test_a_long_handler_keeps_its_lease_short_leases_do_not_double_handle():
    hub = MessageHub(lease_s=0.3)
    calls: list[str] = []

    async def slow(e: Envelope, ctx) -> str:
        calls.append(e.id)
        await asyncio.sleep(1.2)  # four leases long
        return "done"

    c1 = Coordinator("w", slow, hub, consumer="w#0")
    c2 = Coordinator("w", slow, hub, consumer="w#1")  # a replica that would take an expired lease
    await c1.start()
    await c2.start()
    await hub.register("me")
    job = env("me", "w", "job", reply_to="me")
    await hub.send(job)
    (reply,) = await hub.receive("me", timeout_s=5)
    await hub.ack("me", [reply.id])
    await asyncio.sleep(0.5)
    assert calls == [job.id] and reply.content.content == "done"
    assert (await hub.stats())["redelivered"] == 0
    await c1.stop()
    await c2.stop()


async def test_a_cancelled_room_delivers_nothing_more_even_what_was_queued():
    hub = MessageHub()
    await hub.register("b", room="r")
    await hub.send(env("a", "b", "queued before the cancel", room="r"))
    await hub.cancel_room("r", "stop")
    with pytest.raises(RoomCancelledError, match="stop"):
        await hub.receive("b", timeout_s=1)
    assert (await hub.stats())["log"]["unacked"] == 1  # kept, not dropped: the log still has it


async def test_broadcast_reaches_the_room_members_but_not_the_sender_or_private_reply_boxes():
    hub = MessageHub()
    for name in ("a", "b", "c"):
        await hub.register(name, room="r")
    await hub.register("x", room="elsewhere")
    await hub.register("a@a#0", room="r", consumer="a#0", private=True)  # a coordinator's reply box
    assert await hub.members("r") == ["a", "b", "c"]
    assert await hub.broadcast("r", "hello room", sender="a") == ["b", "c"]
    for name in ("b", "c"):
        (got,) = await drain(hub, name)
        assert got.content.content == "hello room" and got.sender == "a"
    for name in ("a", "x", "a@a#0"):
        assert await drain(hub, name) == []
