"""The sample's integration test, run by pytest against SYNAP_URL: publish a task, consume
it, ack it, and the queue is empty.

    SYNAP_URL=http://127.0.0.1:15500 python -m pytest client/python/examples/integration_test.py
"""

from __future__ import annotations

import asyncio
import os

from synap import AsyncSynapClient


def test_process_task_end_to_end():
    async def go():
        synap = AsyncSynapClient(url=os.getenv("SYNAP_URL") or "http://localhost:15500",
                                 api_key=os.getenv("SYNAP_API_KEY") or None)
        # Publish task
        result = await synap.queue.publish("test-queue", {"type": "test_task", "data": "test"})
        assert result.message_id
        # Consume task
        msg = await synap.queue.consume("test-queue")
        assert msg is not None
        assert msg.message["type"] == "test_task"
        # Acknowledge
        await synap.queue.ack("test-queue", msg.message_id)
        # Queue should be empty
        stats = await synap.queue.stats("test-queue")
        assert stats.depth == 0
        await synap.aclose()
    asyncio.run(go())
