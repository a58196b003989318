"""Synap's official Python SDK with a scoped API key (docs/securing.md), over both transports.

One server has a full-access key and a `worker` key stored as an argon2id hash that may
publish to and consume from queues `jobs-*` and read KV keys `cfg:*`. The worker's allowed
flows pass; everything else fails with the SDK's `SynapException` carrying "forbidden", and
changes nothing.
"""

from __future__ import annotations

import uuid

import pytest
from conftest import _hash_password, _run_server, _url
from synap_sdk import SynapException
from test_sdk_compat import run

ADMIN = "perm-admin-key"
WORKER = "perm-worker-key"


@pytest.fixture(scope="session")
def perm_server(tmp_path_factory):
    config = tmp_path_factory.mktemp("perm") / "synap.yaml"
    config.write_text(
        "server:\n  api_keys:\n"
        f"    - {ADMIN}\n"
        f"    - {{ name: worker, key_hash: '{_hash_password(WORKER)}', permissions: "
        '["queue:jobs-*:publish", "queue:jobs-*:consume", "kv:cfg:*:read"] }\n'
    )
    yield from _run_server(extra_args=["--config", str(config)])


@pytest.fixture
def perm_url(perm_server, transport):
    return _url(perm_server, transport)


def test_a_scoped_key_does_what_it_is_granted(perm_url: str) -> None:
    queue = f"jobs-{uuid.uuid4().hex[:8]}"

    async def admin(c):
        await c.queue.create_queue(queue)
        await c.kv.set("cfg:mode", "fast")

    run(perm_url, admin, auth_token=ADMIN)

    async def worker(c):
        message_id = await c.queue.publish(queue, "job-1")
        msg = await c.queue.consume(queue, "w1")
        assert msg is not None and msg.id == message_id
        await c.queue.ack(queue, msg.id)
        assert await c.kv.get("cfg:mode") == "fast"
        assert queue in await c.queue.list()

    run(perm_url, worker, auth_token=WORKER)


def test_a_scoped_key_is_refused_the_rest(perm_url: str) -> None:
    queue = f"jobs-{uuid.uuid4().hex[:8]}"
    other = f"other-{uuid.uuid4().hex[:8]}"

    async def admin(c):
        await c.queue.create_queue(queue)
        await c.queue.create_queue(other)
        await c.kv.set("cfg:mode", "fast")

    run(perm_url, admin, auth_token=ADMIN)

    async def worker(c):
        refused = [
            lambda: c.queue.publish(other, "x"),
            lambda: c.queue.stats(queue),
            lambda: c.queue.delete_queue(queue),
            lambda: c.queue.create_queue("jobs-new"),
            lambda: c.kv.set("cfg:mode", "slow"),
            lambda: c.kv.get("secret"),
            lambda: c.pubsub.publish("news.a", {"x": 1}),
        ]
        for call in refused:
            with pytest.raises(SynapException, match="(?i)forbidden"):
                await call()
        assert other not in await c.queue.list()

    run(perm_url, worker, auth_token=WORKER)

    async def check(c):
        assert await c.kv.get("cfg:mode") == "fast"
        stats = await c.queue.stats(other)
        assert stats["published"] == 0
        assert queue in await c.queue.list()

    run(perm_url, check, auth_token=ADMIN)
