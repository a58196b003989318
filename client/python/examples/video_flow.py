"""The sample as a flow: each upload becomes three transcode renditions run in parallel, then a
package job that receives their results, then the user's notification, all added at once with
``flows.add`` (docs/pipelines-with-flows.md). The sample's worker loop (long-poll, 300 s lease,
ack with a result, nack a failure with its error under the delivery's lease) runs on each
queue: three on ``transcode``, one on ``package``, one on ``notify``. The program waits for
each flow's root job, prints the final flow, and exits 0 when every flow completed.

    SYNAP_URL=http://127.0.0.1:15500 python client/python/examples/video_flow.py

SYNAP_UPLOADS uploads (default 1); SYNAP_WORK_SCALE shortens the simulated work (0.01 for
tests); SYNAP_API_KEY is sent when set.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any, Awaitable, Callable, Dict, List, Optional

from common import API_KEY, URL, WAIT_SECS, TaskType, work

from synap import AsyncSynapClient, Flow, FlowNode, QueueMessage

QUEUES = {"transcode": "transcode", "package": "package", "notify": "notify"}
RENDITIONS = ("480p", "720p", "1080p")
#: Each worker's long-poll, short so the workers stop soon after the last flow finished.
POLL_SECS = min(WAIT_SECS, 1)

Handler = Callable[[QueueMessage], Awaitable[Any]]


def upload_flow(video_id: str, user_id: str) -> Dict[str, Any]:
    """One upload's pipeline as a flow: notify waits for package, which waits for the
    renditions."""
    def transcode(resolution: str) -> Dict[str, Any]:
        return {"queue": QUEUES["transcode"],
                "message": {"type": TaskType.TRANSCODE.value, "video_id": video_id, "user_id": user_id,
                            "settings": {"resolution": resolution, "format": "mp4"}}}
    return {
        "queue": QUEUES["notify"],
        "message": {"type": TaskType.NOTIFY_USER.value, "video_id": video_id, "user_id": user_id},
        "children": [{
            "queue": QUEUES["package"],
            "message": {"type": "package", "video_id": video_id, "user_id": user_id},
            "children": [transcode(r) for r in RENDITIONS],
        }],
    }


class FlowWorker:
    """The sample's worker loop on one queue; ``handle`` does the work and returns the job's
    result."""

    def __init__(self, client: AsyncSynapClient, queue_name: str, worker_id: str, handle: Handler):
        self.client = client
        self.queue_name = queue_name
        self.worker_id = worker_id
        self.handle = handle
        self.running = False

    async def start(self) -> None:
        self.running = True
        while self.running:
            msg: Optional[QueueMessage] = None
            try:
                msg = await self.client.queue.consume(
                    self.queue_name, timeout=POLL_SECS, ack_deadline=300, consumer_id=self.worker_id)
                if not msg:
                    continue
                result = await self.handle(msg)
                # The result is kept with the job, and its parent's delivery carries it.
                await self.client.queue.ack(self.queue_name, msg.message_id, msg.lease, result=result)
                print(f"{self.worker_id} completed {msg.message_id}", flush=True)
            except Exception as e:  # the sample's catch-all: nack and go on
                print(f"{self.worker_id} error: {e}", flush=True)
                if msg:
                    try:
                        await self.client.queue.nack(self.queue_name, msg.message_id, requeue=True,
                                                     error=str(e), lease=msg.lease)
                    except Exception as nack_error:
                        print(f"{self.worker_id} nack failed: {nack_error}", flush=True)
                await work(1)

    def stop(self) -> None:
        self.running = False


async def transcode(msg: QueueMessage) -> Dict[str, Any]:
    video_id = msg.message["video_id"]
    resolution = (msg.message.get("settings") or {}).get("resolution", "source")
    print(f"Transcoding video {video_id} to {resolution}", flush=True)
    await work(5)
    return {"resolution": resolution, "url": f"s3://videos/{video_id}/{resolution}.mp4"}


async def package(msg: QueueMessage) -> Dict[str, Any]:
    video_id = msg.message["video_id"]
    # The renditions' results arrive with the package job itself.
    urls = [c.result["url"] for c in msg.children or [] if c.state == "completed"]
    if len(urls) != len(RENDITIONS):
        raise RuntimeError(f"package of {video_id}: {len(urls)} renditions")
    print(f"Packaging video {video_id}: {', '.join(urls)}", flush=True)
    await work(3)
    return {"manifest": f"s3://videos/{video_id}/master.m3u8", "renditions": urls}


def notifier(client: AsyncSynapClient) -> Handler:
    async def notify(msg: QueueMessage) -> Dict[str, Any]:
        video_id, user_id = msg.message["video_id"], msg.message["user_id"]
        children = msg.children or []
        manifest = (children[0].result or {}).get("manifest") if children else None
        print(f"Notifying user {user_id} about video {video_id}", flush=True)
        topic = f"notifications.user.{user_id}"
        await client.pubsub.publish(topic, {"type": "video_ready", "video_id": video_id,
                                            "manifest": manifest, "message": "Your video is ready!"})
        return {"topic": topic}
    return notify


def print_flow(flow: Flow) -> None:
    """Prints a flow: its state, then one line per job, children indented under their
    parent."""
    print(f"flow {flow.flow_id} {flow.state}")

    def line(queue: str, message_id: str, state: str, reason: Optional[str], result: Any,
             depth: int) -> None:
        why = "" if reason is None else f" ({reason})"
        print(f"{'  ' * depth}{queue} {message_id} {state}{why} "
              f"{json.dumps(result, separators=(',', ':'))}")

    def walk(nodes: List[FlowNode], depth: int) -> None:
        for n in nodes:
            line(n.queue, n.message_id, n.state, n.reason, n.result, depth)
            walk(n.children, depth + 1)

    line(flow.queue, flow.message_id, flow.state, flow.reason, flow.result, 1)
    walk(flow.children, 2)
    sys.stdout.flush()


async def main() -> bool:
    async with AsyncSynapClient(url=URL, api_key=API_KEY) as client:
        added = []
        for n in range(1, int(os.getenv("SYNAP_UPLOADS") or 1) + 1):
            created = await client.flows.add(upload_flow(f"vid-{n}", f"user-{n}"))
            print(f"upload vid-{n}: flow {created.flow_id}, notify {created.message_id}", flush=True)
            added.append(created)

        def wid(queue: str, i: int) -> str:
            return f"{queue}-worker-{os.getpid()}-{i}"

        workers = [FlowWorker(client, QUEUES["transcode"], wid("transcode", i), transcode)
                   for i in (1, 2, 3)]
        workers.append(FlowWorker(client, QUEUES["package"], wid("package", 1), package))
        workers.append(FlowWorker(client, QUEUES["notify"], wid("notify", 1), notifier(client)))
        running = [asyncio.create_task(w.start()) for w in workers]

        ok = True
        for created in added:
            # The root job finishes last: completed, or dead-lettered when a job below it failed.
            job = await client.queue.wait_for(QUEUES["notify"], created.message_id, timeout=30)
            while not job.finished:
                job = await client.queue.wait_for(QUEUES["notify"], created.message_id, timeout=30)
            flow = await client.flows.get(created.flow_id)
            print_flow(flow)
            ok = ok and flow.state == "completed"
        for w in workers:
            w.stop()
        await asyncio.gather(*running)
        return ok


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main()) else 1)
