"""Goal: the README's Python quick start runs as written. Method: a fresh server; the producer
queues three tasks, the worker takes and acks each of them and stops when the queue stays
empty; the queue's stats then show three acked and nothing left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from synap import SynapClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(name: str, url: str) -> str:
    env = dict(os.environ, SYNAP_URL=url, PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], env=env, check=True,
                          timeout=60, capture_output=True, text=True)
    return done.stdout


def test_quickstart_producer_and_worker(start_server):
    server = start_server()
    produced = run("quickstart_producer.py", server.url)
    assert sum(1 for line in produced.splitlines() if line.startswith("queued video ")) == 3, produced
    worked = run("quickstart_worker.py", server.url)
    videos = sorted(line.removeprefix("transcoding video ") for line in worked.splitlines()
                    if line.startswith("transcoding video "))
    assert videos == ["1", "2", "3"], worked
    with SynapClient(url=server.url) as synap:
        stats = synap.queue.stats("video-processing")
    assert (stats.acked_total, stats.depth, stats.in_flight) == (3, 0, 0)
