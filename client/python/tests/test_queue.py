"""Goal: every queue method of AsyncSynapClient against the real server, with the sample's
snake_case results, and refusals raised as SynapError with the server's code and status.
Method: one in-memory synap-server per module (stopped by PID); each test has its own queues
and runs its coroutine with asyncio.run."""

from __future__ import annotations

import asyncio
import time

import pytest

from synap import AsyncSynapClient, QueueMessage, SynapError


def run(coro):
    return asyncio.run(coro)


async def refused(aw, code: str, status: int) -> SynapError:
    with pytest.raises(SynapError) as info:
        await aw
    assert info.value.code == code, info.value
    assert info.value.status == status
    return info.value


def test_publish_consume_ack(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            r = await c.queue.publish("py-basic", {"type": "test_task"}, priority=7,
                                      headers={"source": "api"}, max_retries=2)
            assert len(r.message_id) == 36 and r.position == 1
            msg = await c.queue.consume("py-basic", timeout=1, ack_deadline=30, consumer_id="c1")
            assert isinstance(msg, QueueMessage)
            assert (msg.message_id, msg.message, msg.priority) == (r.message_id, {"type": "test_task"}, 7)
            assert (msg.retry_count, msg.max_retries, msg.headers) == (0, 2, {"source": "api"})
            assert isinstance(msg.lease, int) and msg.lease_deadline > msg.published_at
            await c.queue.ack("py-basic", msg.message_id, msg.lease)
            s = await c.queue.stats("py-basic")
            assert (s.depth, s.acked_total, s.published_total, s.consumed_total, s.consumers) == (0, 1, 1, 1, 1)
            assert isinstance(s.avg_wait_time_ms, float) and s.dead_letter_count == 0
    run(go())


def test_consume_ends_empty(server):
    async def go():
        c = AsyncSynapClient(url=server.url)
        await c.queue.create("py-empty")
        assert await c.queue.consume("py-empty") is None
        t0 = time.monotonic()
        assert await c.queue.consume("py-empty", timeout=0.3) is None
        assert time.monotonic() - t0 >= 0.25
        await c.aclose()
    run(go())


def test_priorities_delay_batches(server):
    async def go():
        c = AsyncSynapClient(url=server.url)
        await c.queue.publish("py-prio", "low", priority=1)
        await c.queue.publish("py-prio", "high", priority=9)
        assert (await c.queue.publish("py-prio", "later", delay=60)).position is None
        got = await c.queue.consume_batch("py-prio", 10)
        assert [m.message for m in got] == ["high", "low"]
        rs = await c.queue.publish_batch("py-batch", [{"message": 1}, {"message": 2, "priority": 9}])
        assert len(rs) == 2
        msgs = await c.queue.consume_batch("py-batch", 5)
        result = await c.queue.ack_batch("py-batch", [{"message_id": m.message_id, "lease": m.lease} for m in msgs]
                                         + [{"message_id": msgs[0].message_id}])
        assert result.acked == 2 and len(result.failed) == 1
        assert result.failed[0]["message_id"] == msgs[0].message_id
        assert (await c.queue.stats("py-prio")).delayed == 1
        await c.aclose()
    run(go())


def test_nack_dlq(server):
    async def go():
        c = AsyncSynapClient(url=server.url)
        await c.queue.create("py-dlq", max_retries=1)
        await c.queue.publish("py-dlq", {"n": 1})
        m = await c.queue.consume("py-dlq")
        assert await c.queue.nack("py-dlq", m.message_id, requeue=True, error="boom", lease=m.lease) == "requeued"
        m2 = await c.queue.consume("py-dlq")
        assert m2.retry_count == 1
        assert await c.queue.nack("py-dlq", m2.message_id) == "dead_lettered"
        page = await c.queue.dlq_list("py-dlq", limit=10)
        assert page.total == 1 and page.messages[0].message_id == m.message_id
        assert page.messages[0].origin_queue == "py-dlq" and page.messages[0].reason == "max_retries_exceeded"
        assert (await c.queue.stats("py-dlq")).dead_letter_count == 1
        assert await c.queue.dlq_retry("py-dlq") == 1
        m3 = await c.queue.consume("py-dlq")
        assert await c.queue.nack("py-dlq", m3.message_id, requeue=False, error="poison") == "dead_lettered"
        assert (await c.queue.dlq_list("py-dlq")).messages[0].last_error == "poison"
        assert await c.queue.dlq_purge("py-dlq") == 1
        await c.aclose()
    run(go())


def test_extend_and_lease_mismatch(server):
    async def go():
        c = AsyncSynapClient(url=server.url)
        await c.queue.publish("py-lease", "x")
        m = await c.queue.consume("py-lease", ack_deadline=5)
        assert await c.queue.extend("py-lease", m.message_id, 60, m.lease) > m.lease_deadline + 50_000
        e = await refused(c.queue.ack("py-lease", m.message_id, m.lease + 1), "lease_mismatch", 409)
        assert e.is_lease_mismatch
        assert await c.queue.nack("py-lease", m.message_id, delay=30, lease=m.lease) == "delayed"
        await c.aclose()
    run(go())


def test_admin_and_errors(server):
    async def go():
        c = AsyncSynapClient(url=server.url)
        assert await c.queue.create("py-admin", ack_deadline_secs=12) is True
        assert await c.queue.create("py-admin") is False
        assert "py-admin" in await c.queue.list()
        await c.queue.publish_batch("py-admin", [{"message": 1}, {"message": 2}])
        assert await c.queue.purge("py-admin") == 2
        assert await c.queue.delete("py-admin") is True
        assert await c.queue.delete("py-admin") is False
        e = await refused(c.queue.stats("py-missing"), "queue_not_found", 404)
        assert e.is_not_found
        await refused(c.queue.publish("bad name!", 1), "invalid_argument", 400)
        await refused(c.queue.publish("py-x", 1, priority=12), "invalid_argument", 400)
        await c.queue.create("py-full", max_depth=1)
        await refused(c.queue.publish_batch("py-full", [{"message": 1}, {"message": 2}]), "queue_full", 507)
        gone = AsyncSynapClient(url="http://127.0.0.1:1")
        await refused(gone.queue.list(), "transport", 0)
        await gone.aclose()
        with pytest.raises(SynapError) as info:
            AsyncSynapClient(url="ftp://x")
        assert info.value.code == "invalid_argument"
        assert (await c.health())["status"] == "healthy"
        await c.aclose()
    run(go())
