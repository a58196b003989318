"""Goal: the Python client drives flows (docs/pipelines-with-flows.md) against the real server,
async and blocking: ``flows.add`` answers every job it made, ``flows.get`` shows each job's
state at every step, a parent's delivery (REST consume and a queue stream) carries its
children's states and results, a job lookup names its flow, parent and children; a failing
child under ``fail`` dead-letters its parent and cancels its siblings, ``continue`` and
``ignore`` deliver the parent with and without the failed child; bad trees are refused (by the
client before sending, or by the server) and create nothing; an unanswered ``flows.add`` is
never resent to another node while ``flows.get`` is; and the sample as a flow
(examples/video_flow.py) takes two uploads to completed flows. Method: one in-memory
synap-server per module (stopped by PID), the test acting as the workers; a local socket that
hangs up on every request stands for a node that fails mid-request. Each test has its own
queues."""

from __future__ import annotations

import asyncio
import math
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from synap import AsyncSynapClient, Flow, FlowChild, FlowCreated, SynapClient, SynapError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RENDITIONS = ("480p", "720p", "1080p")


def run(coro):
    return asyncio.run(coro)


async def refused(aw, code: str, status: int, text: str = "") -> SynapError:
    with pytest.raises(SynapError) as info:
        await aw
    assert (info.value.code, info.value.status) == (code, status), info.value
    assert text in info.value.message, info.value
    return info.value


def pipeline(p: str, video: int) -> dict:
    """The video pipeline on queues prefixed by ``p``: notify <- package <- three transcodes."""
    return {
        "queue": f"{p}-notify", "message": {"video": video, "step": "notify"},
        "children": [{
            "queue": f"{p}-package", "message": {"video": video, "step": "package"},
            "children": [{"queue": f"{p}-transcode", "message": {"video": video, "rendition": r}}
                         for r in RENDITIONS],
        }],
    }


def states(flow: Flow) -> list:
    """Every job below the root, depth first: (message_id, state)."""
    out = []

    def walk(nodes):
        for n in nodes:
            out.append((n.message_id, n.state))
            walk(n.children)
    walk(flow.children)
    return out


def url(r: str) -> dict:
    return {"url": f"s3://videos/7/{r}.mp4"}


async def take(c: AsyncSynapClient, queue: str, n: int):
    got = await c.queue.consume_batch(queue, 10, timeout=10, ack_deadline=300)
    assert len(got) == n, (queue, got)
    return got


def test_the_video_pipeline_runs_step_by_step_to_a_completed_tree(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            created = await c.flows.add(pipeline("py", 7))
            assert isinstance(created, FlowCreated) and created.queue == "py-notify"
            [pkg] = created.children
            assert pkg.queue == "py-package"
            transcodes = [t.message_id for t in pkg.children]
            assert [(t.queue, t.children) for t in pkg.children] == [("py-transcode", [])] * 3
            root = created.message_id

            flow = await c.flows.get(created.flow_id)
            assert (flow.flow_id, flow.message_id) == (created.flow_id, root)
            assert (flow.state, flow.finished_at, flow.result, flow.finished) == ("waiting_children", None, None, False)
            assert flow.on_child_failure == "fail" and flow.created_at > 0
            assert states(flow) == [(pkg.message_id, "waiting_children")] + [(t, "ready") for t in transcodes]

            job = await c.queue.job("py-package", pkg.message_id)
            assert (job.state, job.flow_id, job.parent_id, job.children) == (
                "waiting_children", created.flow_id, root, transcodes)
            assert job.finished is False
            job = await c.queue.job("py-notify", root)
            assert (job.parent_id, job.children) == (None, [pkg.message_id])
            job = await c.queue.job("py-transcode", transcodes[0])
            assert (job.state, job.parent_id, job.children) == ("ready", pkg.message_id, [])
            stats = await c.queue.stats("py-package")
            assert (stats.waiting_children, stats.depth) == (1, 0)
            assert await c.queue.consume("py-package") is None

            # The transcode workers: two finish, one is still at work.
            msgs = sorted(await take(c, "py-transcode", 3), key=lambda m: transcodes.index(m.message_id))
            assert [m.message["rendition"] for m in msgs] == list(RENDITIONS)
            assert all(m.children is None for m in msgs)
            for m, r in zip(msgs[:2], RENDITIONS):
                await c.queue.ack("py-transcode", m.message_id, m.lease, result=url(r))
            flow = await c.flows.get(created.flow_id)
            assert [s for _, s in states(flow)] == ["waiting_children", "completed", "completed", "in_flight"]
            assert flow.children[0].children[1].result == url("720p")
            assert await c.queue.consume("py-package") is None
            await c.queue.ack("py-transcode", msgs[2].message_id, msgs[2].lease, result=url("1080p"))

            # The package worker gets the renditions' results, in the order given.
            [delivery] = await take(c, "py-package", 1)
            assert (delivery.message_id, delivery.message) == (pkg.message_id, {"video": 7, "step": "package"})
            assert delivery.children == [FlowChild(t, "py-transcode", "completed", url(r))
                                         for t, r in zip(transcodes, RENDITIONS)]
            flow = await c.flows.get(created.flow_id)
            assert (flow.state, flow.children[0].state) == ("waiting_children", "in_flight")
            manifest = {"manifest": "s3://videos/7/master.m3u8"}
            await c.queue.ack("py-package", delivery.message_id, delivery.lease, result=manifest)

            # The notify worker streams: its delivery carries the package and its manifest.
            stream = await c.queue.stream("py-notify", prefetch=1)
            try:
                note = await asyncio.wait_for(stream.next(), 10)
                assert note is not None and note.message_id == root
                assert note.children == [FlowChild(pkg.message_id, "py-package", "completed", manifest)]
                await stream.ack(note.message_id, note.lease)
            finally:
                await stream.close()

            flow = await c.flows.get(created.flow_id)
            assert (flow.state, flow.finished) == ("completed", True)
            assert flow.finished_at is not None and flow.finished_at >= flow.created_at
            assert all(s == "completed" for _, s in states(flow)), flow
            assert flow.children[0].result == manifest
            assert [n.result for n in flow.children[0].children] == [url(r) for r in RENDITIONS]
            assert (await c.queue.job("py-notify", root)).state == "completed"

            # A message outside any flow has no children and no flow.
            plain = await c.queue.publish("py-transcode", {"video": 8})
            [m] = await take(c, "py-transcode", 1)
            assert m.children is None
            job = await c.queue.job("py-transcode", plain.message_id)
            assert (job.flow_id, job.parent_id, job.children) == (None, None, [])
    run(go())


def test_a_failing_child_under_fail_dead_letters_its_parent_and_cancels_the_rest(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            def leaf(q):
                return {"queue": q, "message": {"part": q}}
            created = await c.flows.add({
                "queue": "py-assemble", "message": {"step": "assemble"}, "on_child_failure": "fail",
                "children": [leaf("py-part-a"), leaf("py-part-b"),
                             dict(leaf("py-part-c"), children=[leaf("py-part-g")])],
            })
            a, b, cc = (j.message_id for j in created.children)
            g = created.children[2].children[0].message_id
            [b_msg] = await take(c, "py-part-b", 1)
            [a_msg] = await take(c, "py-part-a", 1)
            action = await c.queue.nack("py-part-a", a, requeue=False, lease=a_msg.lease, error="corrupt input")
            assert action == "dead_lettered"

            flow = await c.flows.get(created.flow_id)
            assert (flow.state, flow.reason, flow.finished) == ("dead_lettered", "child_failed", True)
            assert states(flow) == [(a, "dead_lettered"), (b, "in_flight"), (cc, "cancelled"), (g, "cancelled")]
            assert (flow.children[0].reason, flow.children[1].reason) == ("rejected", None)

            p = await c.queue.progress("py-part-b", b, {"pct": 50}, lease=b_msg.lease)
            assert p.cancelled is True, "b's worker learns that its job was cancelled"
            await c.queue.ack("py-part-b", b, b_msg.lease)
            assert (await c.flows.get(created.flow_id)).children[1].state == "cancelled"

            job = await c.queue.job("py-assemble", created.message_id)
            assert (job.state, job.dead_letter_reason) == ("dead_lettered", "child_failed")
            dlq = await c.queue.dlq_list("py-assemble")
            assert [(d.message_id, d.reason) for d in dlq.messages] == [(created.message_id, "child_failed")]
            for q in ("py-assemble", "py-part-c", "py-part-g"):
                assert await c.queue.consume(q) is None, q
    run(go())


def test_continue_and_ignore_blocking(server):
    """The blocking client: continue delivers the parent with every child, ignore without the
    failed one."""
    with SynapClient(url=server.url) as c:
        for mode in ("continue", "ignore"):
            created = c.flows.add({
                "queue": f"py-report-{mode}", "message": {"mode": mode}, "on_child_failure": mode,
                "children": [{"queue": f"py-ok-{mode}", "message": {"n": 1}},
                             {"queue": f"py-bad-{mode}", "message": {"n": 2}, "max_retries": 0}],
            })
            ok, bad = (j.message_id for j in created.children)
            [bad_msg] = c.queue.consume_batch(f"py-bad-{mode}", 10, timeout=10)
            c.queue.nack(f"py-bad-{mode}", bad, requeue=False, lease=bad_msg.lease)
            assert c.flows.get(created.flow_id).state == "waiting_children", f"{mode}: waits for ok"
            [ok_msg] = c.queue.consume_batch(f"py-ok-{mode}", 10, timeout=10)
            c.queue.ack(f"py-ok-{mode}", ok, ok_msg.lease, result={"rows": 3})

            parent = c.queue.consume(f"py-report-{mode}", timeout=10)
            assert parent is not None
            want = [FlowChild(ok, f"py-ok-{mode}", "completed", {"rows": 3})]
            if mode == "continue":
                want.append(FlowChild(bad, f"py-bad-{mode}", "dead_lettered", None, "rejected"))
            assert parent.children == want, mode
            c.queue.ack(f"py-report-{mode}", parent.message_id, parent.lease)
            flow = c.flows.get(created.flow_id)
            assert (flow.state, flow.on_child_failure, flow.children[1].reason) == ("completed", mode, "rejected")


def test_bad_trees_are_refused_and_create_nothing(server):
    async def go():
        async with AsyncSynapClient(url=server.url) as c:
            before = await c.queue.list()
            add = c.flows.add
            # Refused by the client (status 0), named by their path.
            await refused(add({"queue": "py-bad-a", "message": 1, "children": [5]}),
                          "invalid_argument", 0, "children[0]: a flow node must be a dict")
            await refused(add({"queue": "py-bad-a", "message": 1,
                               "children": [{"queue": "py-bad-b", "message": 1, "children": ["x"]}]}),
                          "invalid_argument", 0, "children[0].children[0]")
            await refused(add(["not", "a", "node"]), "invalid_argument", 0, "the flow")
            await refused(add({"queue": "py-bad-a", "message": 1, "children": {"queue": "x"}}),
                          "invalid_argument", 0, "children: must be a list")
            await refused(add({"queue": "py-bad-a"}), "invalid_argument", 0, "message: missing")
            await refused(add({"message": 1}), "invalid_argument", 0, "queue")
            await refused(add({"queue": "py-bad-a", "message": 1,
                               "children": [{"queue": "py-bad-b", "message": 1, "delay": 5}]}),
                          "invalid_argument", 0, "children[0].delay: unknown field")
            await refused(add({"queue": "py-bad-a", "message": 1, "ttl": math.nan}),
                          "invalid_argument", 0, "ttl: must be a finite number")
            await refused(add({"queue": "py-bad-a", "message": 1, "priority": True}),
                          "invalid_argument", 0, "priority")
            await refused(add({"queue": "py-bad-a", "message": 1, "on_child_failure": "retry"}),
                          "invalid_argument", 0, "on_child_failure")
            await refused(add({"queue": "py-bad-a", "message": 1, "group": ""}), "invalid_argument", 0, "group")
            cycle: dict = {"queue": "py-bad-a", "message": 1, "children": []}
            cycle["children"].append(cycle)
            await refused(add(cycle), "limit_exceeded", 0, "flow depth")

            # Refused by the server, named by their path; the whole tree or nothing.
            await refused(add({"queue": "py-bad-a", "message": 1,
                               "children": [{"queue": "py-bad-b", "message": None}]}),
                          "invalid_argument", 400, "children[0].message")
            bad_priority = pipeline("py-bad", 1)
            bad_priority["children"][0]["children"][2]["priority"] = 10
            await refused(add(bad_priority), "invalid_argument", 400, "children[0].children[2].priority")
            deep: dict = {"queue": "py-bad-deep", "message": 9}
            for level in range(8, 0, -1):
                deep = {"queue": "py-bad-deep", "message": level, "children": [deep]}
            await refused(add(deep), "limit_exceeded", 429, "flow depth (limit 8)")
            wide = {"queue": "py-bad-wide", "message": 0,
                    "children": [{"queue": "py-bad-wide", "message": i} for i in range(1000)]}
            await refused(add(wide), "limit_exceeded", 429, "jobs per flow")
            assert await c.queue.list() == before, "no queue was created"

            await refused(c.flows.get("not-a-flow"), "invalid_argument", 400, "flow_id")
            e = await refused(c.flows.get("00000000-0000-0000-0000-000000000000"), "flow_not_found", 404)
            assert e.is_not_found
    run(go())


def test_an_unanswered_add_is_not_resent_and_a_get_is(server):
    """A node that reads each request and hangs up without answering, first in the list."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    got = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(65536)
                got.append(data.split(b"\r\n", 1)[0].decode())

    threading.Thread(target=serve, daemon=True).start()
    hangs_up = f"http://127.0.0.1:{listener.getsockname()[1]}"

    async def go():
        async with AsyncSynapClient(url=[hangs_up, server.url]) as nodes, \
                AsyncSynapClient(url=server.url) as c:
            await refused(nodes.flows.add(pipeline("py-once", 3)), "transport", 0)
            assert got == ["POST /flows HTTP/1.1"]
            assert "py-once-notify" not in await c.queue.list(), "the real node never saw it"
            # A read is resent: the hung-up GET goes on to the next node, which answers it.
            created = await c.flows.add(pipeline("py-once", 3))
            flow = await nodes.flows.get(created.flow_id)
            assert flow.message_id == created.message_id
            assert got == ["POST /flows HTTP/1.1", f"GET /flows/{created.flow_id} HTTP/1.1"]
    try:
        run(go())
    finally:
        listener.close()


def test_the_sample_as_a_flow(server):
    """examples/video_flow.py: two uploads, each a completed flow and a notification."""
    async def subscribe_and_run():
        async with AsyncSynapClient(url=server.url) as c:
            sub = await c.pubsub.subscribe("notifications.user.*")
            env = dict(os.environ, SYNAP_URL=server.url, SYNAP_UPLOADS="2", SYNAP_WORK_SCALE="0.01",
                       PYTHONUNBUFFERED="1")
            env.pop("SYNAP_API_KEY", None)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(EXAMPLES / "video_flow.py"), env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), 60)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            notes = [await asyncio.wait_for(sub.next(), 10) for _ in range(2)]
            await sub.close()
            return proc.returncode, out.decode(), notes

    code, out, notes = run(subscribe_and_run())
    assert code == 0, out
    flows = re.findall(r"^flow (\S+) (\S+)$", out, re.M)
    assert [state for _, state in flows] == ["completed", "completed"], out
    assert len(re.findall(r'^ {6}transcode \S+ completed \{"resolution"', out, re.M)) == 6, out
    with SynapClient(url=server.url) as c:
        for i, (flow_id, _) in enumerate(flows, start=1):
            flow = c.flows.get(flow_id)
            assert (flow.state, flow.result) == ("completed", {"topic": f"notifications.user.user-{i}"})
            [pkg] = flow.children
            assert pkg.result == {"manifest": f"s3://videos/vid-{i}/master.m3u8",
                                  "renditions": [f"s3://videos/vid-{i}/{r}.mp4" for r in RENDITIONS]}
            assert [(t.queue, t.state, t.result["resolution"]) for t in pkg.children] == [
                ("transcode", "completed", r) for r in RENDITIONS]
        for queue, acked in (("transcode", 6), ("package", 2), ("notify", 2)):
            s = c.queue.stats(queue)
            assert (s.acked_total, s.depth, s.in_flight, s.waiting_children) == (acked, 0, 0, 0), queue
    assert sorted((n.topic, n.message["manifest"]) for n in notes) == [
        (f"notifications.user.user-{i}", f"s3://videos/vid-{i}/master.m3u8") for i in (1, 2)]
