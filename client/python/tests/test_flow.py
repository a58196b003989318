"""Goal: the flow-control API of the Python client (docs/controlling-throughput.md) against the
real server, async and blocking: publishing with a ``group``, pause and resume, a worker's
``rate_limit``, a snoozing nack, the flow settings of ``queue.create`` (``max_in_flight``,
``group_concurrency``, ``ordered_groups``, ``fair_groups``, ``rate_limit``, ``max_snoozes``),
the groups listing and the flow fields of the stats; and that the client refuses bad
arguments before sending. Method: one in-memory synap-server per module (stopped by PID);
each test has its own queues and runs its coroutine with asyncio.run. Nothing depends on
timing except waits that must end with a delivery (a long-poll answered by a resume or by the
end of a rate limit)."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from synap import AsyncSynapClient, GroupInfo, SynapClient, SynapError


def run(coro):
    return asyncio.run(coro)


async def refused(aw, code: str, status: int) -> SynapError:
    with pytest.raises(SynapError) as info:
        await aw
    assert info.value.code == code, info.value
    assert info.value.status == status
    return info.value


def test_plain_queue_has_no_flow_state(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            await c.queue.publish("py-flow-plain", 1)
            s = await c.queue.stats("py-flow-plain")
            assert (s.paused, s.rate_limited_until_ms, s.groups, s.held_back) == (False, None, 0, 0)
            assert await c.queue.groups("py-flow-plain") == []
            msg = await c.queue.consume("py-flow-plain")
            assert msg is not None and msg.group is None
    run(go())


def test_pause_holds_deliveries_and_resume_serves_a_waiting_consumer(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            q = "py-flow-pause"
            await c.queue.create(q)
            assert await c.queue.pause(q) is True
            assert await c.queue.pause(q) is True  # twice is harmless
            r = await c.queue.publish(q, {"video": 1})
            assert await c.queue.consume(q) is None
            s = await c.queue.stats(q)
            assert (s.paused, s.ready, s.held_back) == (True, 1, 1)

            waiting = asyncio.ensure_future(c.queue.consume(q, timeout=20))
            # The long-poll is parked before the resume, so it is the resume that serves it.
            for _ in range(400):
                if (await c.queue.stats(q)).waiters > 0:
                    break
                await asyncio.sleep(0.025)
            else:
                pytest.fail("the consume never parked")
            assert await c.queue.resume(q) is False
            msg = await waiting
            assert msg is not None and msg.message_id == r.message_id
            s = await c.queue.stats(q)
            assert (s.paused, s.held_back) == (False, 0)

            await refused(c.queue.pause("py-flow-no-such-queue"), "queue_not_found", 404)
            await refused(c.queue.resume("py-flow-no-such-queue"), "queue_not_found", 404)
    run(go())


def test_group_concurrency_holds_a_second_message_of_a_group(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            q = "py-flow-gc"
            await c.queue.create(q, group_concurrency=1)
            a1 = await c.queue.publish(q, "a1", group="user-alice")
            a2 = await c.queue.publish(q, "a2", group="user-alice")
            b1 = await c.queue.publish(q, "b1", group="user-bob")
            got = await c.queue.consume_batch(q, 10)
            assert [(m.message_id, m.group) for m in got] == [
                (a1.message_id, "user-alice"), (b1.message_id, "user-bob")]
            assert await c.queue.consume(q) is None
            s = await c.queue.stats(q)
            assert (s.groups, s.held_back, s.in_flight) == (2, 1, 2)
            assert s.config["group_concurrency"] == 1
            await c.queue.ack(q, got[0].message_id, got[0].lease)
            nxt = await c.queue.consume(q)
            assert nxt is not None and (nxt.message_id, nxt.group) == (a2.message_id, "user-alice")
            assert (await c.queue.job(q, a2.message_id)).group == "user-alice"
    run(go())


def test_max_in_flight_caps_leases_across_consumers(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            q = "py-flow-mif"
            await c.queue.create(q, max_in_flight=2)
            await c.queue.publish_batch(q, [{"message": i} for i in range(5)])
            first = await c.queue.consume_batch(q, 10, consumer_id="w1")
            assert len(first) == 2
            assert await c.queue.consume_batch(q, 10, consumer_id="w2") == []
            s = await c.queue.stats(q)
            assert (s.in_flight, s.held_back) == (2, 3)
            await c.queue.ack(q, first[0].message_id, first[0].lease)
            assert len(await c.queue.consume_batch(q, 10, consumer_id="w2")) == 1
            assert (await c.queue.stats(q)).in_flight == 2
    run(go())


def test_rate_limit_holds_deliveries_until_it_ends_and_never_shortens(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            q = "py-flow-rl-long"
            await c.queue.publish(q, "x")
            before = int(time.time() * 1000)
            until = await c.queue.rate_limit(q, 30)
            assert until >= before + 29_000
            assert await c.queue.consume(q) is None
            s = await c.queue.stats(q)
            assert (s.rate_limited_until_ms, s.held_back) == (until, 1)
            assert await c.queue.rate_limit(q, 0.5) == until  # a shorter one changes nothing

            q = "py-flow-rl-short"
            await c.queue.publish(q, "y")
            end = await c.queue.rate_limit(q, 0.3)
            assert await c.queue.consume(q) is None
            msg = await c.queue.consume(q, timeout=20)
            assert msg is not None and msg.message == "y"
            assert time.time() * 1000 >= end - 5
            assert (await c.queue.stats(q)).rate_limited_until_ms is None
    run(go())


def test_rate_limit_setting_and_fair_and_ordered_groups(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            q = "py-flow-rate"
            assert await c.queue.create(q, rate_limit={"max": 2, "per_secs": 60},
                                        group_rate_limit={"max": 5, "per_secs": 1.5}) is True
            await c.queue.publish_batch(q, [{"message": i} for i in range(3)])
            assert len(await c.queue.consume_batch(q, 10)) == 2
            s = await c.queue.stats(q)
            assert s.config["rate_limit"] == {"max": 2, "per_secs": 60}
            assert s.config["group_rate_limit"] == {"max": 5, "per_secs": 1.5}
            assert isinstance(s.rate_limited_until_ms, int) and s.held_back == 1

            q = "py-flow-fair"
            await c.queue.create(q, fair_groups=True)
            for body, group in (("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b")):
                await c.queue.publish(q, body, group=group)
            order = []
            while (m := await c.queue.consume(q)) is not None:
                order.append(m.message)
            assert order == ["a1", "b1", "a2", "a3"]

            q = "py-flow-ordered"
            await c.queue.create(q, ordered_groups=True, group_concurrency=1)
            await c.queue.publish(q, "low", group="g", priority=1)
            await c.queue.publish(q, "high", group="g", priority=9)
            first = await c.queue.consume(q)
            assert first is not None and first.message == "low"
            await c.queue.nack(q, first.message_id, lease=first.lease)
            again = await c.queue.consume(q, timeout=20)
            assert again is not None and again.message == "low"
            assert (await c.queue.stats(q)).config["ordered_groups"] is True
    run(go())


def test_snooze_spends_no_attempt_up_to_max_snoozes(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            q = "py-flow-snooze"
            await c.queue.create(q, max_retries=0, max_snoozes=1)
            r = await c.queue.publish(q, {"task": 1})
            m1 = await c.queue.consume(q)
            assert m1 is not None and m1.retry_count == 0
            assert await c.queue.nack(q, r.message_id, lease=m1.lease, snooze=True) == "snoozed"
            m2 = await c.queue.consume(q)
            # max_retries=0 would have dead-lettered a retry.
            assert m2 is not None and (m2.message_id, m2.retry_count) == (r.message_id, 0)
            action = await c.queue.nack(q, r.message_id, lease=m2.lease, snooze=True, delay=0.1)
            assert action == "dead_lettered"
            page = await c.queue.dlq_list(q)
            assert [(d.message_id, d.reason) for d in page.messages] == [(r.message_id, "snoozed_out")]
            assert (await c.queue.stats(q)).config["max_snoozes"] == 1

            q = "py-flow-snooze2"
            await c.queue.publish(q, "later")
            d1 = await c.queue.consume(q)
            assert d1 is not None
            assert await c.queue.nack(q, d1.message_id, lease=d1.lease, snooze=True,
                                      delay=0.2) == "snoozed"
            assert (await c.queue.stats(q)).delayed == 1
            d2 = await c.queue.consume(q, timeout=20)
            assert d2 is not None and (d2.message_id, d2.retry_count) == (d1.message_id, 0)
    run(go())


def test_a_stream_publishes_with_a_group_and_snoozes(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            q = "py-flow-stream"
            await c.queue.create(q, max_retries=0, group_concurrency=1)
            stream = await c.queue.stream(q, prefetch=4)
            try:
                # Straight after opening: the call goes to the connection just made.
                p1 = await stream.publish("s1", group="tenant-1")
                await stream.publish("s2", group="tenant-1")
                first = await stream.next()
                assert first is not None and (first.message_id, first.group) == (p1.message_id, "tenant-1")
                s = await c.queue.stats(q)
                assert (s.in_flight, s.held_back) == (1, 1), "the group is at its limit"
                assert await stream.nack(first.message_id, lease=first.lease, snooze=True) == "snoozed"
                # Without ordered_groups the group's next message goes first.
                second = await stream.next()
                assert second is not None and (second.message, second.group) == ("s2", "tenant-1")
                await stream.ack(second.message_id, second.lease)
                again = await stream.next()
                # max_retries=0 would have dead-lettered a retry.
                assert again is not None and (again.message_id, again.retry_count) == (p1.message_id, 0)
                with pytest.raises(SynapError) as info:
                    await stream.nack(again.message_id, requeue=False, snooze=True)
                assert info.value.code == "invalid_argument"
                await stream.ack(again.message_id, again.lease)
            finally:
                await stream.close()
    run(go())


def test_groups_lists_largest_first_then_by_name(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            q = "py-flow-groups"
            for group, n in (("g-b", 1), ("g-a", 3), ("g-c", 2), ("g-d", 2)):
                for i in range(n):
                    await c.queue.publish(q, i, group=group)
            await c.queue.publish(q, "ungrouped")
            await c.queue.publish(q, "later", group="g-b", delay=60)
            assert await c.queue.groups(q) == [
                GroupInfo("g-a", 3, 0, 0), GroupInfo("g-b", 1, 0, 1),
                GroupInfo("g-c", 2, 0, 0), GroupInfo("g-d", 2, 0, 0)]
            assert (await c.queue.stats(q)).groups == 4
            m = await c.queue.consume(q)
            assert m is not None and m.group == "g-b"
            got = await c.queue.groups(q, limit=2)
            assert got == [GroupInfo("g-a", 3, 0, 0), GroupInfo("g-b", 0, 1, 1)]
            assert (got[1].ready, got[1].in_flight, got[1].delayed) == (0, 1, 1)
            await refused(c.queue.groups("py-flow-no-such-queue"), "queue_not_found", 404)
    run(go())


def test_bad_flow_arguments_are_refused_before_sending(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            q = "py-flow-args"
            for group in ("", "x" * 256, "é" * 128, "a\nb", "tab\there", "del\x7f", 7):
                await refused(c.queue.publish(q, 1, group=group), "invalid_argument", 0)
                await refused(c.queue.publish_batch(q, [{"message": 1}, {"message": 2, "group": group}]),
                              "invalid_argument", 0)
            assert (await c.queue.publish(q, 1, group="é" * 127)).position == 1  # 254 bytes
            assert (await c.queue.publish(q, 2, group="x" * 255)).position == 2
            await refused(c.queue.nack(q, "00000000-0000-0000-0000-000000000000", False, snooze=True),
                          "invalid_argument", 0)
            for for_secs in (0, -1, math.nan, math.inf, "5", True):
                await refused(c.queue.rate_limit(q, for_secs), "invalid_argument", 0)
            for limit in (0, 1001, 1.5, True):
                await refused(c.queue.groups(q, limit), "invalid_argument", 0)
            # The server's own checks still answer for the settings.
            await refused(c.queue.create(q, max_in_flight=0), "invalid_argument", 400)
            await refused(c.queue.create(q, ordered_groups=True, group_concurrency=2),
                          "invalid_argument", 400)
            s = await c.queue.stats(q)
            assert (s.depth, s.groups) == (2, 2)
    run(go())


def test_blocking_client_has_the_flow_api(server):
    with SynapClient(url=server.url) as c:
        q = "py-flow-sync"
        c.queue.create(q, group_concurrency=1, max_snoozes=5)
        assert c.queue.pause(q) is True
        r1 = c.queue.publish(q, "s1", group="tenant-1")
        c.queue.publish(q, "s2", group="tenant-1")
        assert c.queue.consume(q) is None
        s = c.queue.stats(q)
        assert (s.paused, s.held_back, s.groups) == (True, 2, 1)
        assert c.queue.resume(q) is False
        m = c.queue.consume(q)
        assert m is not None and (m.message_id, m.group) == (r1.message_id, "tenant-1")
        assert c.queue.consume(q) is None  # the group is at its limit
        assert c.queue.groups(q, 10) == [GroupInfo("tenant-1", 1, 1, 0)]
        assert c.queue.nack(q, m.message_id, lease=m.lease, snooze=True) == "snoozed"
        # The snoozed message goes behind the group's other one (retry_position `back`, the default).
        other = c.queue.consume(q)
        assert other is not None and other.message == "s2"
        c.queue.ack(q, other.message_id, other.lease)
        again = c.queue.consume(q)
        assert again is not None and (again.message_id, again.retry_count) == (r1.message_id, 0)
        until = c.queue.rate_limit(q, 30)
        assert c.queue.stats(q).rate_limited_until_ms == until
        with pytest.raises(SynapError) as info:
            c.queue.groups(q, 0)
        assert (info.value.code, info.value.status) == ("invalid_argument", 0)
