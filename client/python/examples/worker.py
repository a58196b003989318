"""The sample's Python worker, several in one process (SYNAP_WORKERS, default 3, as the
sample's ``run_workers(count=3)``). Each long-polls ``video-processing`` (30 s wait, 300 s
lease), runs transcode, thumbnail, upload_cdn and notify_user tasks, reports a transcode's
progress on the job (a cancelled job is nacked and so settled as cancelled), keeps status,
progress and heartbeat keys in KV with TTLs, queues each task's follow-up, publishes a
notification for notify_user, nacks on error (with the error text, under the delivery's
lease), and stops gracefully on SIGINT.

    SYNAP_URL=http://127.0.0.1:15500 python client/python/examples/worker.py
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Optional

from common import (API_KEY, FAIL_RATE, HEARTBEAT_SECS, QUEUE, SEED, URL, WAIT_SECS, TaskType,
                    chance, work)

from synap import AsyncSynapClient, QueueMessage

KNOWN_TYPES = {t.value for t in TaskType}


async def update_progress(client: AsyncSynapClient, video_id: str, progress: int, status: str) -> None:
    """The sample's progress tracking: ``video:{id}:progress`` with a 5 minute TTL."""
    await client.kv.set(f"video:{video_id}:progress",
                        {"progress": progress, "status": status, "updated_at": time.time()}, ttl=300)


class VideoWorker:
    def __init__(self, synap_url: str, api_key: Optional[str], queue_name: str, worker_id: str = ""):
        self.client = AsyncSynapClient(url=synap_url, api_key=api_key)
        self.queue_name = queue_name
        self.running = False
        self.worker_id = worker_id or f"worker-{os.getpid()}"
        self.processed = 0
        self.last_task: Optional[float] = None
        self.rng = chance(SEED + sum(map(ord, self.worker_id)))

    async def start(self) -> None:
        self.running = True
        print(f"{self.worker_id} started, waiting for tasks...", flush=True)
        beats = asyncio.ensure_future(self.heartbeat())
        while self.running:
            msg: Optional[QueueMessage] = None
            try:
                # Wait for task
                msg = await self.client.queue.consume(
                    self.queue_name, timeout=WAIT_SECS, ack_deadline=300, consumer_id=self.worker_id)
                if not msg:
                    continue
                print(f"{self.worker_id} processing {msg.message_id}", flush=True)
                await self.process_task(msg)
                # Acknowledge completion
                await self.client.queue.ack(self.queue_name, msg.message_id, msg.lease)
                self.processed += 1
                self.last_task = time.time()
                print(f"{self.worker_id} completed {msg.message_id} {msg.message['type']}", flush=True)
            except Exception as e:  # the sample's catch-all: nack and go on
                print(f"{self.worker_id} error: {e}", flush=True)
                if msg:
                    try:
                        await self.client.queue.nack(self.queue_name, msg.message_id, requeue=True,
                                                     error=str(e), lease=msg.lease)
                    except Exception as nack_error:
                        print(f"{self.worker_id} nack failed: {nack_error}", flush=True)
                await work(1)
        beats.cancel()
        await asyncio.gather(beats, return_exceptions=True)
        print(f"{self.worker_id} stopped after {self.processed} tasks", flush=True)
        await self.client.aclose()

    async def heartbeat(self) -> None:
        """The sample's worker health report: ``worker:{id}:heartbeat`` with a 1 minute TTL."""
        while True:
            try:
                await self.client.kv.set(
                    f"worker:{self.worker_id}:heartbeat",
                    {"status": "healthy", "tasks_processed": self.processed, "last_task": self.last_task},
                    ttl=max(60, HEARTBEAT_SECS * 2))
            except Exception as e:
                print(f"{self.worker_id} heartbeat failed: {e}", flush=True)
            await asyncio.sleep(HEARTBEAT_SECS)

    async def process_task(self, msg: QueueMessage) -> None:
        task = msg.message
        task_type = task["type"]
        if task_type not in KNOWN_TYPES:
            raise ValueError(f"Unknown task type: {task_type}")
        # Injected failures hit real tasks only, so a poison task always fails for its type.
        if self.rng.random() < FAIL_RATE:
            raise RuntimeError(f"injected failure in {task_type} of {task.get('video_id')}")
        if task_type == TaskType.TRANSCODE:
            await self.transcode_video(task, msg)
        elif task_type == TaskType.THUMBNAIL:
            await self.generate_thumbnail(task)
        elif task_type == TaskType.UPLOAD_CDN:
            await self.upload_to_cdn(task)
        else:
            await self.notify_user(task)

    async def follow_up(self, task: dict, task_type: TaskType, priority: int = 5) -> None:
        await self.client.queue.publish(
            self.queue_name,
            {"type": task_type.value, "video_id": task["video_id"], "user_id": task["user_id"]},
            priority=priority)

    async def transcode_video(self, task: dict, msg: QueueMessage) -> None:
        video_id = task["video_id"]
        print(f"Transcoding video {video_id}", flush=True)
        # Simulate transcoding, reporting progress
        for progress in (25, 50, 75, 100):
            await work(1.25)
            status = "transcoding" if progress < 100 else "transcoded"
            # KV progress stays for readers of video:{id}:progress; the job keeps it too.
            await update_progress(self.client, video_id, progress, status)
            reported = await self.client.queue.progress(
                self.queue_name, msg.message_id, {"progress": progress, "status": status},
                lease=msg.lease)
            if reported.cancelled:
                # The nack that follows settles the job as cancelled; it is never retried.
                raise RuntimeError(f"transcode of {video_id} cancelled")
        # Update status
        await self.client.kv.set(f"video:{video_id}:status",
                                 {"status": "transcoded", "completed_at": time.time()}, ttl=3600)
        await self.follow_up(task, TaskType.THUMBNAIL, priority=7)

    async def generate_thumbnail(self, task: dict) -> None:
        video_id = task["video_id"]
        print(f"Generating thumbnail for {video_id}", flush=True)
        await work(2)
        await self.client.kv.set(f"video:{video_id}:thumbnail",
                                 {"url": f"https://cdn.example.com/thumb/{video_id}.jpg"}, ttl=86400)
        await self.follow_up(task, TaskType.UPLOAD_CDN)

    async def upload_to_cdn(self, task: dict) -> None:
        video_id = task["video_id"]
        print(f"Uploading {video_id} to CDN", flush=True)
        await work(3)
        await self.client.kv.set(f"video:{video_id}:status",
                                 {"status": "published", "completed_at": time.time()}, ttl=3600)
        await self.follow_up(task, TaskType.NOTIFY_USER)

    async def notify_user(self, task: dict) -> None:
        print(f"Notifying user {task['user_id']} about video {task['video_id']}", flush=True)
        await self.client.pubsub.publish(
            f"notifications.user.{task['user_id']}",
            {"type": "video_ready", "video_id": task["video_id"], "message": "Your video is ready!"})

    def stop(self) -> None:
        self.running = False


# Run multiple workers
async def run_workers(count: int) -> None:
    workers = [VideoWorker(URL, API_KEY, QUEUE, f"worker-{os.getpid()}-{i + 1}") for i in range(count)]
    tasks = [asyncio.create_task(w.start()) for w in workers]

    # Graceful shutdown
    def signal_handler() -> None:
        print("Shutting down gracefully...", flush=True)
        for worker in workers:
            worker.stop()

    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, signal_handler)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(run_workers(count=int(os.getenv("SYNAP_WORKERS") or 3)))
