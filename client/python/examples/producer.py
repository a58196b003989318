"""The sample's producer: one transcode task per upload (priority 9 for premium users, 5 for
others, with headers) and a thumbnail task (priority 7). Creates ``video-processing`` with the
sample's retry settings unless it exists.

    SYNAP_URL=http://127.0.0.1:15500 python client/python/examples/producer.py

SYNAP_UPLOADS uploads (default 3); SYNAP_POISON=1 adds a task of an unknown type that every
worker fails on, so it ends in the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import Optional

from common import API_KEY, QUEUE, URL, TaskType, is_premium_user

from synap import AsyncSynapClient


@dataclass
class VideoTask:
    type: TaskType
    video_id: str
    user_id: str
    settings: Optional[dict] = None


class VideoTaskProducer:
    def __init__(self, synap_url: str, api_key: Optional[str]):
        self.client = AsyncSynapClient(url=synap_url, api_key=api_key)

    async def ensure_queue(self) -> None:
        if QUEUE not in await self.client.queue.list():
            await self.client.queue.create(QUEUE, max_retries=3, ack_deadline_secs=300,
                                           retry_delays=[10, 60, 300])

    async def queue_transcoding(self, video_id: str, user_id: str, settings: dict) -> str:
        task = VideoTask(type=TaskType.TRANSCODE, video_id=video_id, user_id=user_id, settings=settings)
        result = await self.client.queue.publish(
            QUEUE,
            {**task.__dict__, "type": task.type.value},
            priority=self._calculate_priority(user_id),
            headers={"source": "api", "user_id": user_id, "video_id": video_id},
        )
        print(f"Task {result.message_id} queued at position {result.position}")
        return result.message_id

    async def queue_thumbnail(self, video_id: str, user_id: str) -> str:
        result = await self.client.queue.publish(
            QUEUE, {"type": TaskType.THUMBNAIL.value, "video_id": video_id, "user_id": user_id},
            priority=7)
        return result.message_id

    async def queue_poison(self, video_id: str) -> str:
        """A task no worker knows: it fails on every delivery and is dead-lettered."""
        result = await self.client.queue.publish(
            QUEUE, {"type": "corrupt_upload", "video_id": video_id, "user_id": "user-0"})
        print(f"Poison task {result.message_id} queued")
        return result.message_id

    def _calculate_priority(self, user_id: str) -> int:
        return 9 if is_premium_user(user_id) else 5


async def main() -> None:
    producer = VideoTaskProducer(URL, API_KEY)
    await producer.ensure_queue()
    for n in range(1, int(os.getenv("SYNAP_UPLOADS") or 3) + 1):
        task_id = await producer.queue_transcoding(
            video_id=f"vid-{n}", user_id=f"user-{n}",
            settings={"resolution": "1080p", "format": "mp4"})
        await producer.queue_thumbnail(f"vid-{n}", f"user-{n}")
        print(json.dumps({"success": True, "taskId": task_id, "status": "queued"}))
    if os.getenv("SYNAP_POISON") == "1":
        await producer.queue_poison("vid-poison")
    await producer.client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
