"""Goal: the streaming consumer keeps the server's credit rules and answers ack/nack/extend/
publish; API keys work on REST and WebSockets and are refused with ``unauthorized``; a stream
and a subscription that lose their connection raise ``closed`` instead of hanging; the sync
SynapClient does the same calls without await. Method: real in-memory servers, one stopped
mid-stream by its PID."""

from __future__ import annotations

import asyncio

import pytest

from synap import AsyncSynapClient, SynapClient, SynapError


async def until(check, seconds: float = 5.0):
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def test_stream_credit_and_frames(server):
    async def go():
        c = AsyncSynapClient(url=server.url)
        for i in range(5):
            await c.queue.publish("py-st", {"i": i})
        s = await c.queue.stream("py-st", consumer_id="st-1", prefetch=2, ack_deadline=30)
        assert (s.consumer_id, s.prefetch) == ("st-1", 2)
        a, b = await s.next(), await s.next()
        assert [a.message["i"], b.message["i"]] == [0, 1]
        await asyncio.sleep(0.2)
        assert (await c.queue.stats("py-st")).in_flight == 2
        await s.ack(a.message_id, a.lease)
        third = await s.next()
        assert third.message["i"] == 2
        assert await s.nack(b.message_id, requeue=False, error="bad", lease=b.lease) == "dead_lettered"
        assert await s.extend(third.message_id, 120, third.lease) > third.lease_deadline
        assert (await s.publish({"i": 99}, priority=9)).message_id
        with pytest.raises(SynapError) as info:
            await s.ack(third.message_id, third.lease + 7)
        assert info.value.code == "lease_mismatch"
        await s.close()
        assert await s.next() is None
        with pytest.raises(SynapError) as info:
            await s.ack(third.message_id)
        assert info.value.code == "closed"

        async def given_back():
            return (await c.queue.stats("py-st")).in_flight == 0
        await until(given_back)
        await c.aclose()
    asyncio.run(go())


def test_lost_connection_raises_closed(start_server):
    doomed = start_server()

    async def go():
        c = AsyncSynapClient(url=doomed.url)
        await c.queue.publish("py-lost", "x")
        s = await c.queue.stream("py-lost", prefetch=1)
        sub = await c.pubsub.subscribe("a.#")
        msg = await s.next()
        waiting = asyncio.ensure_future(s.next())
        sub_waiting = asyncio.ensure_future(sub.next())
        await asyncio.sleep(0.1)
        await asyncio.get_running_loop().run_in_executor(None, doomed.stop)
        for fut in (waiting, sub_waiting):
            with pytest.raises(SynapError) as info:
                await asyncio.wait_for(fut, 10)
            assert info.value.code == "closed"
        with pytest.raises(SynapError) as info:
            await s.ack(msg.message_id, msg.lease)
        assert info.value.code == "closed"
        with pytest.raises(SynapError) as info:
            await c.queue.list()
        assert info.value.code == "transport"
        await c.aclose()
    asyncio.run(go())


def test_api_key(start_server):
    key = "py-secret-key"
    guarded = start_server(env={"SYNAP_API_KEY": key})

    async def go():
        for c in (AsyncSynapClient(url=guarded.url), AsyncSynapClient(url=guarded.url, api_key="nope")):
            for aw in (c.queue.list(), c.kv.get("k"), c.queue.stream("q"), c.pubsub.subscribe("a")):
                with pytest.raises(SynapError) as info:
                    await aw
                assert (info.value.code, info.value.status) == ("unauthorized", 401)
            assert (await c.health())["status"] == "healthy"
            await c.aclose()
        good = AsyncSynapClient(url=guarded.url, api_key=key)
        await good.queue.publish("guarded", "ok")
        s = await good.queue.stream("guarded")
        m = await s.next()
        await s.ack(m.message_id, m.lease)
        await s.close()
        sub = await good.pubsub.subscribe("g.*")
        assert (await good.pubsub.publish("g.1", 1)).subscribers_matched == 1
        assert (await sub.next()).message == 1
        await sub.close()
        await good.aclose()
    asyncio.run(go())


def test_sync_client(server):
    with SynapClient(url=server.url) as c:
        r = c.queue.publish("py-sync", {"type": "t"}, priority=9, headers={"h": "1"})
        msg = c.queue.consume("py-sync", timeout=1, ack_deadline=30)
        assert msg is not None and msg.message_id == r.message_id and msg.headers == {"h": "1"}
        assert c.queue.extend("py-sync", msg.message_id, 60, msg.lease) > 0
        assert c.queue.nack("py-sync", msg.message_id, requeue=True, lease=msg.lease) == "requeued"
        again = c.queue.consume("py-sync")
        c.queue.ack("py-sync", again.message_id, again.lease)
        assert c.queue.consume("py-sync", timeout=0.1) is None
        assert c.queue.stats("py-sync").acked_total == 1
        c.kv.set("sync:k", [1, 2], ttl=60)
        assert c.kv.get("sync:k").value == [1, 2]
        sub = c.pubsub.subscribe("sync.*")
        assert c.pubsub.publish("sync.a", "hi").subscribers_matched == 1
        assert sub.next().message == "hi"
        sub.close()
        c.queue.publish("py-sync", 1)
        stream = c.queue.stream("py-sync", prefetch=1)
        for m in stream:
            stream.ack(m.message_id, m.lease)
            break
        stream.close()
        with pytest.raises(SynapError) as info:
            c.queue.stats("nope")
        assert info.value.code == "queue_not_found"
