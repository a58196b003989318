"""Goal: the job lifecycle of the Python client (docs/tracking-jobs.md) against the real server,
async and blocking: lookup and wait_for, progress with its cancelled flag, ack with a result,
cancel, schedules, and the dedup / debounce publish options. Method: one in-memory synap-server
per module (stopped by PID); each test has its own queues and runs its coroutine with
asyncio.run."""

from __future__ import annotations

import asyncio

import pytest

from synap import AsyncSynapClient, Job, SynapClient, SynapError


def run(coro):
    return asyncio.run(coro)


async def refused(aw, code: str, status: int) -> SynapError:
    with pytest.raises(SynapError) as info:
        await aw
    assert info.value.code == code, info.value
    assert info.value.status == status
    return info.value


def test_wait_for_the_result_a_worker_reports_progress_on(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            r = await c.queue.publish("py-jobs", {"video": 7}, priority=8)
            job = await c.queue.job("py-jobs", r.message_id)
            assert isinstance(job, Job)
            assert (job.state, job.priority, job.attempts, job.finished) == ("ready", 8, 0, False)
            assert (job.message, job.progress, job.result, job.started_at) == ({"video": 7}, None, None, None)
            assert job.cancel_requested is False

            waiting = asyncio.ensure_future(c.queue.wait_for("py-jobs", r.message_id, timeout=20))
            msg = await c.queue.consume("py-jobs", ack_deadline=30)
            assert msg is not None and msg.message_id == r.message_id
            p = await c.queue.progress("py-jobs", msg.message_id, {"pct": 40, "stage": "1080p"},
                                       lease=msg.lease, extend=120)
            assert p.cancelled is False
            assert p.lease_deadline > msg.lease_deadline + 60_000, "extend moved the lease"
            job = await c.queue.job("py-jobs", r.message_id)
            assert (job.state, job.progress, job.attempts) == ("in_flight", {"pct": 40, "stage": "1080p"}, 1)
            assert isinstance(job.started_at, int)
            await refused(c.queue.progress("py-jobs", msg.message_id, 1, lease=msg.lease + 1),
                          "lease_mismatch", 409)

            await c.queue.ack("py-jobs", msg.message_id, msg.lease, result={"url": "s3://v/7.mp4"})
            done = await waiting
            assert (done.state, done.finished, done.result) == ("completed", True, {"url": "s3://v/7.mp4"})
            assert isinstance(done.finished_at, int)
            assert await c.queue.job("py-jobs", r.message_id) == done

            # A wait that ends first answers the job as it is.
            later = await c.queue.publish("py-jobs", {"video": 8})
            assert (await c.queue.wait_for("py-jobs", later.message_id, timeout=0.2)).state == "ready"
            await refused(c.queue.job("py-jobs", "00000000-0000-0000-0000-000000000000"),
                          "message_not_found", 404)
    run(go())


def test_cancel_ready_and_in_flight_jobs(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            ready = await c.queue.publish("py-cancel", 1)
            assert await c.queue.cancel("py-cancel", ready.message_id) == "cancelled"
            await refused(c.queue.cancel("py-cancel", ready.message_id), "already_finished", 409)

            running = await c.queue.publish("py-cancel", 2)
            msg = await c.queue.consume("py-cancel")
            assert msg is not None and msg.message_id == running.message_id, "the cancelled job was skipped"
            assert await c.queue.cancel("py-cancel", msg.message_id) == "in_flight"
            assert (await c.queue.job("py-cancel", msg.message_id)).cancel_requested is True
            p = await c.queue.progress("py-cancel", msg.message_id, {"pct": 10}, lease=msg.lease)
            assert p.cancelled is True
            assert await c.queue.nack("py-cancel", msg.message_id, lease=msg.lease) == "cancelled"
            assert (await c.queue.job("py-cancel", msg.message_id)).state == "cancelled"
            assert await c.queue.consume("py-cancel") is None, "never retried"
            stats = await c.queue.stats("py-cancel")
            assert (stats.cancelled_total, stats.kept_jobs) == (2, 2)
    run(go())


def test_until_finished_keys_and_debounced_publishes(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            first = await c.queue.publish("py-dedup", 1, idempotency_key="render-7", dedup="until_finished")
            again = await c.queue.publish("py-dedup", 1, idempotency_key="render-7", dedup="until_finished")
            assert again.duplicate and again.message_id == first.message_id
            msg = await c.queue.consume("py-dedup")
            assert msg is not None
            await c.queue.ack("py-dedup", msg.message_id, msg.lease)
            nxt = await c.queue.publish("py-dedup", 1, idempotency_key="render-7", dedup="until_finished")
            assert not nxt.duplicate and nxt.message_id != first.message_id

            a = await c.queue.publish("py-debounce", {"n": 1}, idempotency_key="reindex", debounce=True, delay=60)
            b = await c.queue.publish("py-debounce", {"n": 2}, idempotency_key="reindex", debounce=True, delay=60)
            assert (a.replaced, b.replaced, b.message_id) == (False, True, a.message_id)
            job = await c.queue.job("py-debounce", a.message_id)
            assert (job.state, job.message) == ("delayed", {"n": 2})
            assert (await c.queue.stats("py-debounce")).delayed == 1
    run(go())


def test_schedules(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            s = await c.queue.schedule_put("py-reports", "nightly", {"report": "daily"},
                                           cron="0 3 * * *", priority=7)
            assert (s.id, s.created) == ("nightly", True) and isinstance(s.next_run_at, int)
            await c.queue.schedule_put("py-reports", "hourly", {"report": "hourly"}, every_secs=3600,
                                       max_runs=10)
            again = await c.queue.schedule_put("py-reports", "nightly", {"report": "daily"},
                                               cron="0 3 * * *", priority=7)
            assert again.created is False

            listed = await c.queue.schedule_list("py-reports")
            assert [x.id for x in listed] == ["hourly", "nightly"]
            assert (listed[0].every_secs, listed[0].max_runs, listed[0].cron) == (3600.0, 10, None)
            assert (listed[1].cron, listed[1].priority, listed[1].runs) == ("0 3 * * *", 7, 0)

            run_ = await c.queue.schedule_run("py-reports", "nightly")
            job = await c.queue.job("py-reports", run_.message_id)
            assert (job.message, job.priority) == ({"report": "daily"}, 7)
            listed = await c.queue.schedule_list("py-reports")
            assert (listed[1].runs, listed[1].last_message_id) == (1, run_.message_id)
            assert isinstance(listed[1].last_run_at, int)

            assert await c.queue.schedule_delete("py-reports", "nightly") is True
            assert await c.queue.schedule_delete("py-reports", "nightly") is False
            await refused(c.queue.schedule_run("py-reports", "nightly"), "schedule_not_found", 404)
            await refused(c.queue.schedule_put("py-reports", "bad", 1), "invalid_argument", 400)
            assert len(await c.queue.schedule_list("py-reports")) == 1
    run(go())


def test_the_blocking_client_has_the_same_calls(server):
    with SynapClient(url=server.url) as synap:
        r = synap.queue.publish("py-sync-jobs", {"n": 1}, idempotency_key="k1", dedup="until_finished")
        assert synap.queue.publish("py-sync-jobs", {"n": 1}, idempotency_key="k1",
                                   dedup="until_finished").duplicate
        assert synap.queue.job("py-sync-jobs", r.message_id).state == "ready"
        msg = synap.queue.consume("py-sync-jobs", ack_deadline=30)
        assert msg is not None
        p = synap.queue.progress("py-sync-jobs", msg.message_id, {"pct": 50}, lease=msg.lease, extend=60)
        assert p.cancelled is False
        synap.queue.ack("py-sync-jobs", msg.message_id, msg.lease, result={"ok": True})
        done = synap.queue.wait_for("py-sync-jobs", r.message_id, timeout=5)
        assert (done.state, done.progress, done.result) == ("completed", {"pct": 50}, {"ok": True})

        other = synap.queue.publish("py-sync-jobs", {"n": 2})
        assert synap.queue.cancel("py-sync-jobs", other.message_id) == "cancelled"

        assert synap.queue.schedule_put("py-sync-jobs", "tick", {"tick": True}, every_secs=600).created
        assert [s.id for s in synap.queue.schedule_list("py-sync-jobs")] == ["tick"]
        ran = synap.queue.schedule_run("py-sync-jobs", "tick")
        assert synap.queue.job("py-sync-jobs", ran.message_id).message == {"tick": True}
        assert synap.queue.schedule_delete("py-sync-jobs", "tick") is True
