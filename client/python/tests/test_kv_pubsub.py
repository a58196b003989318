"""Goal: AsyncSynapClient's KV and pub/sub methods against the real server: TTLs, counters,
prefixes, bulk calls, their error codes, and subscriptions with ``*`` and ``#`` as async
iterators. Method: one in-memory synap-server per module, stopped by PID."""

from __future__ import annotations

import asyncio

import pytest

from synap import AsyncSynapClient, SynapError


def test_kv_values_and_ttls(server):
    async def go():
        c = AsyncSynapClient(url=server.url)
        await c.kv.set("video:1:status", {"status": "transcoded"}, ttl=3600)
        r = await c.kv.get("video:1:status")
        assert r.found and r.value == {"status": "transcoded"} and 3500 < r.ttl <= 3600
        await c.kv.set("plain", "v")
        r = await c.kv.get("plain")
        assert (r.found, r.value, r.ttl) == (True, "v", None)
        assert not (await c.kv.get("nope")).found
        assert await c.kv.exists("plain")
        assert await c.kv.delete("plain") is True
        assert await c.kv.delete("plain") is False
        odd = "odd key/with?chars#and%"
        await c.kv.set(odd, 1)
        assert (await c.kv.get(odd)).value == 1
        assert await c.kv.ttl("video:1:status") > 3500
        assert await c.kv.expire("video:1:status", 100) is True
        assert await c.kv.persist("video:1:status") is True
        assert await c.kv.ttl("video:1:status") is None
        with pytest.raises(SynapError) as info:
            await c.kv.ttl("missing")
        assert (info.value.code, info.value.status) == ("key_not_found", 404)
        await c.kv.set("short", 1, ttl=0.2)
        await asyncio.sleep(0.4)
        assert not (await c.kv.exists("short"))
        await c.aclose()
    asyncio.run(go())


def test_kv_counters_and_bulk(server):
    async def go():
        c = AsyncSynapClient(url=server.url)
        assert await c.kv.incr("n") == 1
        assert await c.kv.incr("n", 10) == 11
        assert await c.kv.decr("n", 2) == 9
        await c.kv.set("text", "abc")
        with pytest.raises(SynapError) as info:
            await c.kv.incr("text")
        assert (info.value.code, info.value.status) == ("not_an_integer", 400)
        await c.kv.mset([{"key": "p:a", "value": 1}, {"key": "p:b", "value": {"x": 2}, "ttl": 60}])
        assert await c.kv.keys("p:") == ["p:a", "p:b"]
        assert await c.kv.keys("p:", limit=1) == ["p:a"]
        assert await c.kv.mget(["p:a", "p:b", "p:zz"]) == [1, {"x": 2}, None]
        assert (await c.kv.stats())["total_keys"] >= 2
        await c.aclose()
    asyncio.run(go())


def test_pubsub_patterns(server):
    async def go():
        c = AsyncSynapClient(url=server.url)
        one = await c.pubsub.subscribe("notifications.user.*")
        every = await c.pubsub.subscribe(["notifications.#"])
        assert one.subscriber_id
        r = await c.pubsub.publish("notifications.user.42", {"type": "video_ready"}, {"k": "v"})
        assert (r.subscribers_matched, r.topic) == (2, "notifications.user.42")
        assert (await c.pubsub.publish("notifications.system", "x")).subscribers_matched == 1
        got = await one.next()
        assert (got.topic, got.message, got.headers, got.message_id) == (
            "notifications.user.42", {"type": "video_ready"}, {"k": "v"}, r.message_id)
        seen = []
        async for m in every:
            seen.append(m.topic)
            if len(seen) == 2:
                break
        assert seen == ["notifications.user.42", "notifications.system"]
        await one.close()
        await every.close()
        assert await one.next() is None
        for _ in range(100):
            if (await c.pubsub.publish("notifications.user.1", "y")).subscribers_matched == 0:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("closed subscriptions still matched")
        assert "messages_published" in await c.pubsub.stats()
        with pytest.raises(SynapError) as info:
            await c.pubsub.subscribe([])
        assert info.value.code == "invalid_argument"
        await c.aclose()
    asyncio.run(go())
