"""The sample's monitoring: queue metrics and a dead-letter watch. Every SYNAP_MONITOR_SECS
(the sample's 60 s) it prints the queue's stats and, when the DLQ holds tasks, an alert with
the newest dead letters. SYNAP_MONITOR_ONCE=1 checks once and exits (status 3 when the DLQ is
not empty), for scripts and tests.

    SYNAP_URL=http://127.0.0.1:15500 python client/python/examples/dlq_monitor.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from common import API_KEY, QUEUE, URL

from synap import AsyncSynapClient


async def monitor_queue(client: AsyncSynapClient, queue_name: str) -> None:
    stats = await client.queue.stats(queue_name)
    print(f"Queue: {queue_name}")
    print(f"  Depth: {stats.depth}")
    print(f"  Consumers: {stats.consumers}")
    print(f"  Published: {stats.published_total}")
    print(f"  Consumed: {stats.consumed_total}")
    print(f"  Acked: {stats.acked_total}")
    print(f"  Dead Lettered: {stats.dead_lettered_total}")
    print(f"  Avg Wait Time: {stats.avg_wait_time_ms}ms", flush=True)


def send_alert(alert: dict) -> None:
    """The sample's alert hook: a JSON line on stderr for an operator's tooling."""
    print(f"ALERT {json.dumps(alert)}", file=sys.stderr, flush=True)


async def check_dead_letter_queue(client: AsyncSynapClient) -> int:
    stats = await client.queue.stats(QUEUE)
    if stats.dead_letter_count > 0:
        print(f"{stats.dead_letter_count} tasks in dead letter queue", flush=True)
        page = await client.queue.dlq_list(QUEUE, limit=10)
        send_alert({
            "type": "dead_letter_queue", "queue": QUEUE, "count": stats.dead_letter_count,
            "recent": [{"message_id": d.message_id, "reason": d.reason, "last_error": d.last_error}
                       for d in page.messages],
        })
    return stats.dead_letter_count


async def main() -> int:
    async with AsyncSynapClient(url=URL, api_key=API_KEY) as client:
        if os.getenv("SYNAP_MONITOR_ONCE") == "1":
            await monitor_queue(client, QUEUE)
            return 3 if await check_dead_letter_queue(client) else 0
        every = float(os.getenv("SYNAP_MONITOR_SECS") or 60)
        while True:
            try:
                await monitor_queue(client, QUEUE)
                await check_dead_letter_queue(client)
            except Exception as e:
                print(f"monitor check failed: {e}", file=sys.stderr, flush=True)
            await asyncio.sleep(every)


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        pass
