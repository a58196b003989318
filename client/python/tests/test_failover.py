"""Goal: the Python client given a cluster's URLs finds and follows the leader: REST calls,
the sync client and a queue stream work with a follower first in the list; publishes sent
in a loop while the leader is SIGKILLed are all answered and the queue then holds each of
them exactly once (an unanswered publish is resent under its idempotency key); a stream
consumer reconnects to the new leader and receives everything published before and after
the kill. A client with one URL keeps the single-server behaviour (a follower's
``not_leader`` is its answer). Method: three real synap-server processes on loopback
(cluster_util.py), the leader killed by its PID; no timing asserts."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any, Dict, Iterator, List

import pytest

from cluster_util import Cluster, free_port
from synap import AsyncSynapClient, QueueMessage, SynapClient, SynapError
from synap._failover import Targets


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A three-node cluster of its own for each test, stopped (every PID) after it."""
    c = Cluster(3)
    try:
        yield c
    finally:
        c.stop()


async def drain(client: AsyncSynapClient, queue: str, n: int) -> List[QueueMessage]:
    """Takes ``n`` messages off ``queue`` (acking each), then checks nothing more is there."""
    got: List[QueueMessage] = []
    empty = 0
    while len(got) < n:
        batch = await client.queue.consume_batch(queue, 100, timeout=1, ack_deadline=60)
        if not batch:
            empty += 1
            assert empty < 30, f"only {len(got)} of {n} messages arrived"
            continue
        acks = [{"message_id": m.message_id, "lease": m.lease} for m in batch]
        r = await client.queue.ack_batch(queue, acks)
        assert r.failed == []
        got.extend(batch)
    assert await client.queue.consume(queue, timeout=0) is None, "no message beyond those published"
    return got


def test_follower_first_reaches_the_leader(cluster: Cluster) -> None:
    leader = cluster.leader()
    followers = [x.url for x in cluster.others(leader)]
    leader_url = cluster.node(leader).url

    async def go() -> None:
        c = AsyncSynapClient(url=[*followers, leader_url])
        assert c.urls == (*followers, leader_url)
        await c.queue.create("fo-basic", max_retries=2)
        for i in range(5):
            await c.queue.publish("fo-basic", {"i": i})
        msg = await c.queue.consume("fo-basic", timeout=1, ack_deadline=30)
        assert msg is not None and msg.message == {"i": 0}
        await c.queue.ack("fo-basic", msg.message_id, msg.lease)
        assert (await c.queue.stats("fo-basic")).depth == 4
        # A follower refuses the WebSocket with not_leader naming the leader: the stream goes there.
        s = await c.queue.stream("fo-basic", prefetch=2)
        assert c.url == leader_url, "the client moved to the leader"
        seen = []
        async for m in s:
            await s.ack(m.message_id, m.lease)
            seen.append(m.message["i"])
            if len(seen) == 4:
                break
        await s.close()
        assert seen == [1, 2, 3, 4]
        stats = await c.queue.stats("fo-basic")
        assert (stats.acked_total, stats.published_total) == (5, 5)
        assert await c.kv.incr("fo-count", 2) == 2
        # One URL behaves as against a single server: the follower's refusal is the answer.
        single = AsyncSynapClient(url=followers[0])
        with pytest.raises(SynapError) as info:
            await single.queue.stream("fo-basic")
        assert (info.value.code, info.value.leader) == ("not_leader", leader_url)
        # A follower still forwards REST calls to the leader.
        assert (await single.queue.stats("fo-basic")).acked_total == 5
        await single.aclose()
        await c.aclose()

    asyncio.run(go())
    # The blocking client takes the same list.
    with SynapClient(url=[*followers, leader_url]) as sync:
        r = sync.queue.publish("fo-sync", {"n": 1})
        got = sync.queue.consume("fo-sync", timeout=1)
        assert got is not None and got.message_id == r.message_id
        sync.queue.ack("fo-sync", got.message_id, got.lease)
        stream = sync.queue.stream("fo-sync", prefetch=1)
        assert sync.url == leader_url
        stream.close()


def test_a_stream_follows_a_leadership_transfer(cluster: Cluster) -> None:
    first = cluster.leader()

    async def go() -> None:
        c = AsyncSynapClient(url=cluster.urls)
        await c.queue.create("fo-move")
        s = await c.queue.stream("fo-move", prefetch=1)
        await c.queue.publish("fo-move", {"n": 1})
        a = await s.next()
        assert a is not None
        await s.ack(a.message_id, a.lease)
        # The deposed leader ends its sessions (with queue_not_found): the stream finds the new one.
        to = cluster.others(first)[0].id
        now = first
        for _ in range(30):
            req = urllib.request.Request(f"{cluster.node(first).url}/cluster/transfer",
                                         data=json.dumps({"to": to}).encode(), method="POST",
                                         headers={"content-type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=5).close()
            except OSError:
                pass
            now = cluster.leader()
            if now != first:
                break
            time.sleep(0.5)
        assert now != first, "leadership moved"
        await c.queue.publish("fo-move", {"n": 2})
        b = await asyncio.wait_for(s.next(), 60)
        assert b is not None and b.message == {"n": 2}
        await s.ack(b.message_id, b.lease)
        assert s.reconnects == 1
        await s.close()
        assert (await c.queue.stats("fo-move")).acked_total == 2
        await c.aclose()

    asyncio.run(go())


def test_with_no_server_answering_a_call_gives_up_with_the_last_error() -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]

    async def go() -> None:
        many = AsyncSynapClient(url=dead, failover_timeout=0.3)
        with pytest.raises(SynapError) as info:
            await many.queue.publish("q", 1)
        assert info.value.code == "transport"
        assert "answered as the leader within 0.3 s" in info.value.message
        with pytest.raises(SynapError) as info:
            await many.queue.stream("q")
        assert info.value.code == "websocket" and "answered as the leader" in info.value.message
        await many.aclose()
        # One URL fails at once, as against a single server.
        one = AsyncSynapClient(url=dead[0])
        with pytest.raises(SynapError) as info:
            await one.queue.list()
        assert info.value.code == "transport" and "answered as the leader" not in info.value.message
        await one.aclose()

    asyncio.run(go())
    for bad in ([], ["http://a:1", "ftp://b"]):
        with pytest.raises(SynapError) as info:
            Targets(bad, 1)
        assert info.value.code == "invalid_argument"
    with pytest.raises(SynapError):
        Targets(dead, -1)


def test_targets_follow_a_named_leader_else_the_next_url() -> None:
    t = Targets(["http://a:1", "http://b:2/", "http://c:3"], 10)
    assert t.urls == ("http://a:1", "http://b:2", "http://c:3")
    assert t.base == "http://a:1"
    t.moved("http://a:1", SynapError("down", "transport"))
    assert t.base == "http://b:2"
    t.moved("http://a:1", SynapError("late", "transport"))
    assert t.base == "http://b:2", "a failure at a URL already left moves nothing"
    t.moved("http://b:2", SynapError("not here", "not_leader", 503, "http://c:3"))
    assert t.base == "http://c:3"
    t.moved("http://c:3", SynapError("not here", "not_leader", 503, "http://d:4"))
    assert t.base == "http://d:4", "a leader not in the list is followed too"
    t.moved("http://d:4", SynapError("down", "transport"))
    assert t.base == "http://a:1"


def test_publishing_while_the_leader_dies_loses_and_doubles_nothing(cluster: Cluster) -> None:
    leader = cluster.leader()
    # The leader first: the publishes in flight when it dies are the ones to resend.
    urls = [cluster.node(leader).url, *(x.url for x in cluster.others(leader))]
    total = 400

    async def go() -> None:
        c = AsyncSynapClient(url=urls)
        await c.queue.create("fo-pub", max_retries=5)
        ids: Dict[int, str] = {}
        state = {"next": 0, "answered": 0, "duplicates": 0}

        async def producer() -> None:
            while state["next"] < total:
                i = state["next"]
                state["next"] += 1
                r = await c.queue.publish("fo-pub", {"i": i})
                ids[i] = r.message_id
                state["duplicates"] += int(r.duplicate)
                state["answered"] += 1
                if state["answered"] == 100:
                    cluster.kill(leader)

        # Four producers, so that several publishes are in flight at the kill.
        await asyncio.gather(*(producer() for _ in range(4)))
        assert state["answered"] == total, "every publish was answered"
        assert len(set(ids.values())) == total, "each publish has its own message"
        assert c.url != urls[0], "the client left the dead leader"
        assert cluster.leader() != leader
        got = await drain(c, "fo-pub", total)
        seen: Dict[int, str] = {}
        for m in got:
            i = m.message["i"]
            assert i not in seen, f"message {i} delivered twice"
            seen[i] = m.message_id
        assert seen == ids, "each message is the one its publish named"
        stats = await c.queue.stats("fo-pub")
        assert (stats.depth, stats.in_flight, stats.dead_letter_count) == (0, 0, 0)
        print(f"{state['duplicates']} publish(es) answered as duplicates after the failover")
        await c.aclose()

    asyncio.run(go())


def test_a_stream_consumer_keeps_receiving_after_the_leader_dies(cluster: Cluster) -> None:
    leader = cluster.leader()
    urls = [*(x.url for x in cluster.others(leader)), cluster.node(leader).url]
    total = 60

    async def go() -> None:
        c = AsyncSynapClient(url=urls)
        await c.queue.create("fo-stream", max_retries=50)
        # Short leases: what the dead leader's session held comes back soon.
        s = await c.queue.stream("fo-stream", prefetch=4, ack_deadline=2)
        acked: set[Any] = set()
        half = asyncio.Event()

        async def consume() -> None:
            async for m in s:
                try:
                    await s.ack(m.message_id, m.lease)
                    acked.add(m.message["i"])
                except SynapError as e:
                    # A delivery whose lease ended meanwhile comes back under a new lease.
                    if not e.is_lease_mismatch:
                        raise
                if len(acked) >= total // 2:
                    half.set()
                if len(acked) == total:
                    return

        consumer = asyncio.ensure_future(consume())
        for i in range(total // 2):
            await c.queue.publish("fo-stream", {"i": i})
        await asyncio.wait_for(half.wait(), 60)
        cluster.kill(leader)
        for i in range(total // 2, total):
            await c.queue.publish("fo-stream", {"i": i})
        await asyncio.wait_for(consumer, 120)
        assert len(acked) == total
        assert s.reconnects >= 1, "the stream reconnected"
        assert c.url != cluster.node(leader).url
        await s.close()
        stats = await c.queue.stats("fo-stream")
        assert (stats.depth, stats.in_flight, stats.dead_letter_count) == (0, 0, 0)
        await c.aclose()

    asyncio.run(go())
