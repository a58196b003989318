"""Goal: the sample's Python programs, run as written against the real server, process the
workload: every task ends acked exactly once or in the DLQ (the poison task among them), the
KV status, progress and heartbeat keys exist, and a subscriber gets one notification per
notify_user task done. Method: a server whose config gives ``video-processing`` two retries
50 ms apart; examples/producer.py queues 4 uploads and a poison task; examples/worker.py runs
three workers in one process with 30% injected failures and work shortened 100-fold; the test
waits until nothing is ready, delayed or in flight, checks the ledger against the workers'
``completed`` lines and the DLQ, runs the DLQ monitor, progress check and the sample's
integration test, then stops the workers with SIGINT. Every process is stopped by its PID."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from synap import AsyncSynapClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIG = """
queues:
  video-processing:
    max_retries: 2
    retry_delays: [0.05]
"""
UPLOADS = 4


def example_env(url: str, **extra: str) -> dict:
    env = dict(os.environ, SYNAP_URL=url, PYTHONUNBUFFERED="1")
    env.pop("SYNAP_API_KEY", None)
    env.update(extra)
    return env


async def settled(c: AsyncSynapClient):
    for _ in range(1200):
        s = await c.queue.stats("video-processing")
        if s.depth == 0 and s.in_flight == 0 and s.acked_total + s.dead_letter_count == s.published_total:
            return s
        await asyncio.sleep(0.05)
    raise AssertionError(f"workload did not settle: {s}")


def test_sample_programs(start_server, tmp_path):
    server = start_server(config=CONFIG)
    out = open(tmp_path / "workers.log", "w+")
    workers = None
    try:
        async def go():
            nonlocal workers
            c = AsyncSynapClient(url=server.url)
            sub = await c.pubsub.subscribe("notifications.user.*")
            subprocess.run([sys.executable, str(EXAMPLES / "producer.py")], check=True, timeout=60,
                           env=example_env(server.url, SYNAP_UPLOADS=str(UPLOADS), SYNAP_POISON="1"),
                           stdout=subprocess.DEVNULL)
            assert (await c.queue.stats("video-processing")).published_total == 2 * UPLOADS + 1
            workers = subprocess.Popen(
                [sys.executable, str(EXAMPLES / "worker.py")], stdout=out, stderr=subprocess.STDOUT,
                env=example_env(server.url, SYNAP_WORKERS="3", SYNAP_WORK_SCALE="0.01",
                                SYNAP_FAIL_RATE="0.3", SYNAP_SEED="7", SYNAP_WAIT_SECS="0.5",
                                SYNAP_HEARTBEAT_SECS="0.5"))
            stats = await settled(c)
            beats = [k for k in await c.kv.keys("worker:") if k.endswith(":heartbeat")]
            assert len(beats) == 3, beats
            dlq = await c.queue.dlq_list("video-processing", limit=1000)
            received = []
            while True:
                try:
                    received.append(await asyncio.wait_for(sub.next(), 0.5))
                except asyncio.TimeoutError:
                    break
            await sub.close()
            await c.aclose()
            return stats, dlq, received

        stats, dlq, received = asyncio.run(go())
        monitor = subprocess.run([sys.executable, str(EXAMPLES / "dlq_monitor.py")], timeout=60,
                                 env=example_env(server.url, SYNAP_MONITOR_ONCE="1"),
                                 capture_output=True, text=True)
        assert monitor.returncode == 3, monitor
        assert f"{stats.dead_letter_count} tasks in dead letter queue" in monitor.stdout
        integration = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                      str(EXAMPLES / "integration_test.py")], timeout=120,
                                     env=example_env(server.url), capture_output=True, text=True)
        assert integration.returncode == 0, integration.stdout
        workers.send_signal(signal.SIGINT)
        assert workers.wait(timeout=30) == 0
        out.seek(0)
        log = out.read()
    finally:
        if workers is not None and workers.poll() is None:
            os.kill(workers.pid, signal.SIGKILL)
            workers.wait()
        out.close()

    completed = re.findall(r"completed (\S+) (\S+)", log)
    ids = [mid for mid, _ in completed]
    assert len(ids) == len(set(ids)), "a task was acked twice"
    assert len(ids) == stats.acked_total
    dead = {d.message_id: d for d in dlq.messages}
    assert not set(ids) & set(dead), "a task was both acked and dead-lettered"
    assert len(ids) + len(dead) == stats.published_total
    poison = [d for d in dead.values() if d.message["type"] == "corrupt_upload"]
    assert len(poison) == 1 and "Unknown task type" in (poison[0].last_error or "")
    assert "error: injected failure" in log, "failures were injected"
    notified = sum(1 for _, kind in completed if kind == "notify_user")
    assert notified >= 1 and len(received) == notified
    assert all(m.topic.startswith("notifications.user.") for m in received)
    assert log.count("Shutting down gracefully") == 1 and log.count("stopped after") == 3

    dead_transcodes = {d.message["video_id"] for d in dead.values() if d.message["type"] == "transcode"}

    async def keys():
        c = AsyncSynapClient(url=server.url)
        for n in range(1, UPLOADS + 1):
            if f"vid-{n}" not in dead_transcodes:
                assert (await c.kv.get(f"video:vid-{n}:status")).found
                assert (await c.kv.get(f"video:vid-{n}:progress")).value["progress"] == 100
        await c.aclose()
    asyncio.run(keys())
    progress = subprocess.run([sys.executable, str(EXAMPLES / "progress.py"), "vid-1", "vid-none"],
                              env=example_env(server.url), capture_output=True, text=True, timeout=60)
    assert progress.returncode == 1 and "vid-none Video not found" in progress.stdout
