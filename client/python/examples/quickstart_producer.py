"""Quick start, producer: queue three transcode tasks on ``video-processing``.
    python client/python/examples/quickstart_producer.py   (SYNAP_URL picks the server)"""
import os

from synap import SynapClient

with SynapClient(url=os.environ.get("SYNAP_URL", "http://127.0.0.1:15500")) as synap:
    for video_id in (1, 2, 3):
        task = {"type": "transcode", "video_id": video_id}
        queued = synap.queue.publish("video-processing", task, priority=9)
        print(f"queued video {video_id} as {queued.message_id}")
