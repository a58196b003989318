"""Quick start, worker: take tasks from ``video-processing`` under a 300 s lease and ack each;
stops when the queue stays empty for 2 s (a real worker loops for ever).
    python client/python/examples/quickstart_worker.py   (SYNAP_URL picks the server)"""
import os

from synap import SynapClient

with SynapClient(url=os.environ.get("SYNAP_URL", "http://127.0.0.1:15500")) as synap:
    while (task := synap.queue.consume("video-processing", timeout=2, ack_deadline=300)) is not None:
        print(f"transcoding video {task.message['video_id']}")
        synap.queue.ack("video-processing", task.message_id, task.lease)
