"""Synap's official Python SDK (`synap_sdk` 1.4.0) against synap-server over both transports.

The SDK is used the way its users use it: `SynapClient(SynapConfig("http://…"))` or
`SynapClient(SynapConfig("synap://…"))` and its `queue`, `kv` and `pubsub` managers, which
send every operation to `POST /api/v1/command` or as SynapRPC frames. Tests taking
`server_url` run once per transport (see conftest.py); where the SDK itself behaves
differently on the two (it sends priority "0" for "none" over SynapRPC; its `observe()` only
receives over SynapRPC; `health()` is HTTP only), the test says so.
The SDK is async; each test runs its body with `asyncio.run` on a fresh client. Every test
uses names of its own (a random suffix), so tests sharing the session's server do not meet.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from synap_sdk import QueueMessage, SynapClient, SynapConfig, SynapException

# Generous limits for anything that waits on the server's clock (TTL, ack deadlines).
WAIT_LIMIT_S = 15.0


def run(url: str, body: Callable[[SynapClient], Awaitable[Any]], **config: Any) -> Any:
    """Runs `body(client)` with a client for `url`, closing the client afterwards."""

    async def main() -> Any:
        async with SynapClient(SynapConfig(url, **config)) as client:
            return await body(client)

    return asyncio.run(main())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def is_rpc(url: str) -> bool:
    return url.startswith("synap://")


def default_priority(url: str) -> int:
    """What a message published without a priority gets: the queue's default (5) over HTTP;
    over SynapRPC the SDK always sends a priority, "0" when none is given."""
    return 0 if is_rpc(url) else 5


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


async def wait_until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Polls `check` until it returns something truthy, failing after WAIT_LIMIT_S."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_LIMIT_S} s waiting for {what}")
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# health


def test_health(http_url: str) -> None:
    # The SDK's health() is an HTTP GET whatever the transport.
    health = run(http_url, lambda c: c.health())
    assert isinstance(health, dict)
    assert health["status"] == "healthy"
    assert health["service"] == "synap"
    assert isinstance(health["version"], str) and health["version"]


# ---------------------------------------------------------------------------------------------
# queues


def test_queue_create_list_delete(server_url: str) -> None:
    name = unique("py-q")

    async def body(c: SynapClient) -> None:
        assert name not in await c.queue.list()
        await c.queue.create_queue(name)
        # create is get-or-create: a second call does not fail and keeps the messages.
        await c.queue.publish(name, b"kept")
        await c.queue.create_queue(name)
        queues = await c.queue.list()
        assert isinstance(queues, list)
        assert name in queues
        assert (await c.queue.stats(name))["depth"] == 1

        await c.queue.delete_queue(name)
        assert name not in await c.queue.list()
        # Deleting a queue that no longer exists is not an error.
        await c.queue.delete_queue(name)
        # Consuming from a missing queue gives nothing rather than an error.
        assert await c.queue.consume(name, "worker-1") is None

    run(server_url, body)


def test_queue_publish_consume_ack_and_stats(server_url: str) -> None:
    name = unique("py-q")

    async def body(c: SynapClient) -> None:
        await c.queue.create_queue(name)
        message_id = await c.queue.publish(name, b"job-1")
        assert is_uuid(message_id), message_id

        stats = await c.queue.stats(name)
        for field in ("depth", "consumers", "published", "consumed", "acked", "nacked",
                      "dead_lettered"):
            assert isinstance(stats[field], int), (field, stats)
        assert stats["depth"] == 1
        assert stats["published"] == 1
        assert stats["consumed"] == 0

        msg = await c.queue.consume(name, "worker-1")
        assert isinstance(msg, QueueMessage)
        assert msg.id == message_id
        assert msg.payload == "job-1"  # the SDK decodes UTF-8 bytes that are not JSON to str
        assert msg.retries == 0
        assert msg.priority == default_priority(server_url)
        assert msg.max_retries == 3  # the server's default, sent by the server

        stats = await c.queue.stats(name)
        assert stats["depth"] == 0
        assert stats["consumed"] == 1
        assert stats["consumers"] == 1  # worker-1, the only consumer seen so far

        # Nothing else is ready.
        assert await c.queue.consume(name, "worker-2") is None

        await c.queue.ack(name, msg.id)
        stats = await c.queue.stats(name)
        assert stats["acked"] == 1
        assert stats["depth"] == 0
        assert stats["consumed"] == 1

        # A second ack of the same message is an error the SDK raises.
        with pytest.raises(SynapException, match="Message not found"):
            await c.queue.ack(name, msg.id)
        assert await c.queue.consume(name, "worker-1") is None

    run(server_url, body)


def test_queue_payload_types_round_trip(server_url: str) -> None:
    name = unique("py-q")
    binary = bytes([0, 1, 127, 128, 200, 254, 255])  # not UTF-8
    text = "héllo wörld ✓"
    document = {"task": "resize", "sizes": [64, 128], "nested": {"ok": True, "n": None}}

    async def body(c: SynapClient) -> None:
        await c.queue.create_queue(name)
        ids = [
            await c.queue.publish(name, binary),
            await c.queue.publish(name, text),
            await c.queue.publish(name, document),
            await c.queue.publish(name, ["a", 1, 2.5]),
            await c.queue.publish(name, b""),
        ]
        assert len(set(ids)) == len(ids)

        got = []
        for _ in ids:
            msg = await c.queue.consume(name, "worker-1")
            assert msg is not None
            got.append(msg)
            await c.queue.ack(name, msg.id)

        # Same priority: first in, first out.
        assert [m.id for m in got] == ids
        assert got[0].payload == binary and isinstance(got[0].payload, bytes)
        assert got[1].payload == text
        assert got[2].payload == document
        assert got[3].payload == ["a", 1, 2.5]
        assert got[4].payload in (b"", "")
        assert await c.queue.consume(name, "worker-1") is None

    run(server_url, body)


def test_queue_priority_order(server_url: str) -> None:
    name = unique("py-q")

    async def body(c: SynapClient) -> None:
        await c.queue.create_queue(name)
        low = await c.queue.publish(name, "low", priority=5)
        high = await c.queue.publish(name, "high", priority=9)
        low_2 = await c.queue.publish(name, "low-2", priority=5)
        lowest = await c.queue.publish(name, "lowest", priority=0)
        default = await c.queue.publish(name, "default")

        order = []
        for _ in range(5):
            msg = await c.queue.consume(name, "worker-1")
            assert msg is not None
            order.append((msg.id, msg.payload, msg.priority))
            await c.queue.ack(name, msg.id)

        if is_rpc(server_url):
            # Sent as priority "0": behind everything, after the message published before it.
            tail = [(lowest, "lowest", 0), (default, "default", 0)]
        else:
            tail = [(default, "default", 5), (lowest, "lowest", 0)]
        assert order == [(high, "high", 9), (low, "low", 5), (low_2, "low-2", 5), *tail]

    run(server_url, body)


def test_queue_nack_redelivers_then_dead_letters(server_url: str) -> None:
    name = unique("py-q")

    async def body(c: SynapClient) -> None:
        await c.queue.create_queue(name)
        message_id = await c.queue.publish(name, {"n": 1}, max_retries=1)

        first = await c.queue.consume(name, "worker-1")
        assert first is not None and first.id == message_id
        assert first.retries == 0 and first.max_retries == 1
        await c.queue.nack(name, first.id)

        stats = await c.queue.stats(name)
        assert stats["nacked"] == 1
        assert stats["depth"] == 1

        # Redelivered: same id, one retry counted.
        second = await c.queue.consume(name, "worker-2")
        assert second is not None
        assert second.id == message_id
        assert second.payload == {"n": 1}
        assert second.retries == 1

        # max_retries=1 allows two deliveries: this nack dead-letters it.
        await c.queue.nack(name, second.id)
        stats = await c.queue.stats(name)
        assert stats["nacked"] == 2
        assert stats["dead_lettered"] == 1
        assert stats["depth"] == 0
        assert stats["consumed"] == 2
        assert await c.queue.consume(name, "worker-1") is None

        # Nack of a message that is no longer leased (here: dead-lettered) is an error.
        with pytest.raises(SynapException, match=message_id):
            await c.queue.nack(name, message_id)

    run(server_url, body)


def test_queue_create_options_are_applied(server_url: str) -> None:
    """`create_queue(max_size=…, message_ttl=…)` sends `max_depth`/`ack_deadline_secs` at the
    payload's top level; the server accepts them there too."""
    full = unique("py-q-full")
    short = unique("py-q-deadline")

    async def body(c: SynapClient) -> None:
        await c.queue.create_queue(full, max_size=2)
        await c.queue.publish(full, "1")
        await c.queue.publish(full, "2")
        with pytest.raises(SynapException, match="Queue is full"):
            await c.queue.publish(full, "3")
        assert (await c.queue.stats(full))["depth"] == 2

        # message_ttl is the ack deadline: an unacked message comes back after it.
        await c.queue.create_queue(short, message_ttl=1)
        message_id = await c.queue.publish(short, "lease me")
        first = await c.queue.consume(short, "worker-1")
        assert first is not None and first.id == message_id and first.retries == 0

        async def redelivered() -> QueueMessage | None:
            return await c.queue.consume(short, "worker-2")

        again = await wait_until(redelivered, "the message to come back after its deadline")
        assert again.id == message_id
        assert again.retries == 1
        await c.queue.ack(short, again.id)
        stats = await c.queue.stats(short)
        # Synap counts an ended lease apart from nacks (the reference server adds it to
        # `nacked`); the SDK passes the whole stats object through.
        assert stats["lease_expired_total"] == 1
        assert stats["acked"] == 1
        assert stats["consumed"] == 2

    run(server_url, body)


def test_queue_errors_are_raised(server_url: str) -> None:
    missing = unique("py-q-missing")
    name = unique("py-q")

    async def body(c: SynapClient) -> None:
        with pytest.raises(SynapException, match=f"Queue not found: {missing}"):
            await c.queue.stats(missing)
        with pytest.raises(SynapException, match="Queue not found"):
            await c.queue.ack(missing, str(uuid.uuid4()))
        await c.queue.create_queue(name)
        with pytest.raises(SynapException, match="Message not found"):
            await c.queue.ack(name, str(uuid.uuid4()))

    run(server_url, body)


# ---------------------------------------------------------------------------------------------
# KV


def test_kv_set_get_exists_delete(server_url: str) -> None:
    p = unique("py-kv")

    async def body(c: SynapClient) -> None:
        assert await c.kv.get(f"{p}:missing") is None
        assert await c.kv.exists(f"{p}:missing") is False

        await c.kv.set(f"{p}:str", "hello wörld")
        await c.kv.set(f"{p}:dict", {"a": 1, "b": [1, 2], "c": {"d": None}})
        await c.kv.set(f"{p}:list", [1, "two", 3.5])
        await c.kv.set(f"{p}:int", 42)
        await c.kv.set(f"{p}:bool", True)

        assert await c.kv.get(f"{p}:str") == "hello wörld"
        assert await c.kv.get(f"{p}:dict") == {"a": 1, "b": [1, 2], "c": {"d": None}}
        assert await c.kv.get(f"{p}:list") == [1, "two", 3.5]
        assert await c.kv.get(f"{p}:int") == 42
        assert await c.kv.get(f"{p}:bool") is True
        assert await c.kv.exists(f"{p}:str") is True

        # Overwrite.
        await c.kv.set(f"{p}:str", "second")
        assert await c.kv.get(f"{p}:str") == "second"

        await c.kv.delete(f"{p}:str")
        assert await c.kv.get(f"{p}:str") is None
        assert await c.kv.exists(f"{p}:str") is False
        # Deleting a missing key is not an error.
        await c.kv.delete(f"{p}:str")

        stats = await c.kv.stats()
        assert isinstance(stats["total_keys"], int) and stats["total_keys"] >= 4
        assert "hit_rate" in stats

    run(server_url, body)


def test_kv_incr_decr(server_url: str) -> None:
    p = unique("py-kv")

    async def body(c: SynapClient) -> None:
        assert await c.kv.incr(f"{p}:new") == 1  # a missing key counts from 0
        assert await c.kv.incr(f"{p}:new") == 2
        assert await c.kv.incr(f"{p}:new", 10) == 12
        assert await c.kv.decr(f"{p}:new") == 11
        assert await c.kv.decr(f"{p}:new", 20) == -9
        assert await c.kv.get(f"{p}:new") == -9
        assert await c.kv.exists(f"{p}:new") is True

        await c.kv.set(f"{p}:text", "not a number")
        with pytest.raises(SynapException):
            await c.kv.incr(f"{p}:text")
        assert await c.kv.get(f"{p}:text") == "not a number"

    run(server_url, body)


def test_kv_ttl_expiry(server_url: str) -> None:
    p = unique("py-kv")

    async def body(c: SynapClient) -> None:
        await c.kv.set(f"{p}:short", "gone soon", ttl=1)
        await c.kv.set(f"{p}:dict", {"a": 1}, ttl=1)
        await c.kv.set(f"{p}:long", "stays", ttl=600)
        await c.kv.set(f"{p}:forever", "stays too")

        assert await c.kv.get(f"{p}:short") == "gone soon"
        assert await c.kv.exists(f"{p}:short") is True
        assert await c.kv.get(f"{p}:dict") == {"a": 1}

        await asyncio.sleep(1.5)

        async def short_gone() -> bool:
            return not await c.kv.exists(f"{p}:short")

        await wait_until(short_gone, "the 1 s TTL key to expire")
        assert await c.kv.get(f"{p}:short") is None

        async def dict_gone() -> bool:
            return await c.kv.get(f"{p}:dict") is None

        await wait_until(dict_gone, "the second 1 s TTL key to expire")
        assert await c.kv.exists(f"{p}:dict") is False

        assert await c.kv.get(f"{p}:long") == "stays"
        assert await c.kv.get(f"{p}:forever") == "stays too"
        assert f"{p}:short" not in await c.kv.scan(p)

        # An expired key can be set again.
        await c.kv.set(f"{p}:short", "back")
        assert await c.kv.get(f"{p}:short") == "back"

    run(server_url, body)


def test_kv_scan_by_prefix(server_url: str) -> None:
    p = unique("py-scan")

    async def body(c: SynapClient) -> None:
        assert await c.kv.scan(f"{p}:") == []
        for k in ("a", "b", "c"):
            await c.kv.set(f"{p}:user:{k}", k)
        await c.kv.set(f"{p}:order:1", "o")
        await c.kv.set(f"{p}-other", "x")

        users = await c.kv.scan(f"{p}:user:")
        assert sorted(users) == [f"{p}:user:a", f"{p}:user:b", f"{p}:user:c"]

        everything = await c.kv.scan(f"{p}:")
        assert sorted(everything) == sorted(
            [f"{p}:order:1", f"{p}:user:a", f"{p}:user:b", f"{p}:user:c"]
        )

        assert len(await c.kv.scan(f"{p}:user:", limit=2)) == 2

        await c.kv.delete(f"{p}:user:b")
        assert sorted(await c.kv.scan(f"{p}:user:")) == [f"{p}:user:a", f"{p}:user:c"]

    run(server_url, body)


# ---------------------------------------------------------------------------------------------
# pub/sub


def test_pubsub_publish_counts_registered_subscribers(server_url: str) -> None:
    base = unique("pyps")
    topic = f"{base}.orders.created"

    async def body(c: SynapClient) -> None:
        # No subscriber yet.
        assert await c.pubsub.publish(topic, {"id": 1}) == 0

        await c.pubsub.subscribe_topics("py-sub-1", [topic])
        assert await c.pubsub.publish(topic, {"id": 2}) == 1
        assert topic in await c.pubsub.list_topics()

        # A wildcard registration matches too; each subscriber is counted once.
        await c.pubsub.subscribe_topics("py-sub-2", [f"{base}.*.created", f"{base}.#"])
        assert await c.pubsub.publish(topic, "a string payload") == 2
        assert await c.pubsub.publish(f"{base}.orders.deleted", [1, 2, 3]) == 1
        assert await c.pubsub.publish(f"{base}.other", 123) == 1
        assert await c.pubsub.publish(f"{unique('pyps')}.orders.created", {"x": 1}) == 0

        if is_rpc(server_url):
            # observe() over SynapRPC receives (test_pubsub_observe_pushes_over_synap).
            await c.pubsub.subscribe_topics("py-sub-3", [f"{base}.orders.*"])
        else:
            # observe() over http only registers, yields nothing, and ends.
            received = [m async for m in c.pubsub.observe([f"{base}.orders.*"], "py-sub-3")]
            assert received == []
        assert await c.pubsub.publish(topic, {"id": 3}) == 3

        if is_rpc(server_url):
            return  # the SDK maps no pubsub.stats onto SynapRPC (UnsupportedCommandError)
        stats = await c.pubsub.stats()
        assert stats["messages_published"] >= 7
        assert stats["total_subscribers"] >= 3

    run(server_url, body)


def test_pubsub_observe_pushes_over_synap(plain_server) -> None:
    """Over SynapRPC, observe() opens its own connection and yields what is published."""
    base = unique("pyobs")

    async def body(c: SynapClient) -> None:
        received: list[dict[str, Any]] = []

        async def listen() -> None:
            async for m in c.pubsub.observe([f"{base}.*"]):
                received.append(m)
                if len(received) == 2:
                    return

        task = asyncio.create_task(listen())

        async def registered() -> bool:
            return await c.pubsub.publish(f"{base}.warmup", "w") == 1

        await wait_until(registered, "the observe() subscription to register")
        await c.pubsub.publish(f"{base}.a", {"x": 1})
        await asyncio.wait_for(task, WAIT_LIMIT_S)
        last = received[-1]
        assert last["topic"] == f"{base}.a"
        assert last["payload"] in ('{"x":1}', {"x": 1})
        assert is_uuid(last["id"])

    run(plain_server.rpc_url, body)


def test_pubsub_errors_are_raised(server_url: str) -> None:
    async def body(c: SynapClient) -> None:
        with pytest.raises(SynapException):
            await c.pubsub.publish("", {"x": 1})
        with pytest.raises(SynapException):
            await c.pubsub.subscribe_topics("py-bad", ["a.#.b"])

    run(server_url, body)


# ---------------------------------------------------------------------------------------------
# auth


def test_auth_token_accepted(auth_server_url: str, api_key: str) -> None:
    name = unique("py-q-auth")
    key = unique("py-kv-auth")

    async def body(c: SynapClient) -> None:
        if not is_rpc(auth_server_url):
            assert (await c.health())["status"] == "healthy"
        await c.kv.set(key, {"secure": True})
        assert await c.kv.get(key) == {"secure": True}
        await c.queue.create_queue(name)
        message_id = await c.queue.publish(name, "secret job")
        msg = await c.queue.consume(name, "worker-1")
        assert msg is not None and msg.id == message_id and msg.payload == "secret job"
        await c.queue.ack(name, msg.id)
        assert await c.pubsub.publish(unique("pyauth.topic"), {"x": 1}) == 0

    run(auth_server_url, body, auth_token=api_key)


@pytest.mark.parametrize("token", ["wrong-key", None], ids=["wrong-key", "no-key"])
def test_auth_refused_without_valid_token(
    auth_server_url: str, auth_http_url: str, api_key: str, token: str | None
) -> None:
    key = unique("py-kv-auth")
    config = {"auth_token": token} if token else {}

    async def health(c: SynapClient) -> None:
        # /health stays public, whatever the Authorization header says.
        assert (await c.health())["status"] == "healthy"

    run(auth_http_url, health, **config)
    # Over http:// the refusal is a 401; over synap:// a wrong key fails AUTH (WRONGPASS) and
    # no key gets NOAUTH for every command.
    refusal = r"WRONGPASS|NOAUTH" if is_rpc(auth_server_url) else r"HTTP Error \(401\)"

    # One client (so one connection) per refused call: the server closes a connection after
    # a 401 whose request body it had not read yet, with no `Connection: close`, so a client
    # that reuses it may see "Server disconnected" instead of the 401 (reported to the lead).
    refused_calls: list[Callable[[SynapClient], Awaitable[Any]]] = [
        lambda c: c.kv.set(key, "x"),
        lambda c: c.kv.get(key),
        lambda c: c.queue.list(),
        lambda c: c.queue.publish("py-q-auth", "x"),
        lambda c: c.pubsub.publish("pyauth.topic", {"x": 1}),
    ]
    for call in refused_calls:

        async def refused(c: SynapClient, call=call) -> None:
            with pytest.raises(SynapException, match=refusal):
                await call(c)

        run(auth_server_url, refused, **config)

    # Nothing was written by the refused clients.
    async def check(c: SynapClient) -> None:
        assert await c.kv.exists(key) is False
        assert "py-q-auth" not in await c.queue.list()

    run(auth_server_url, check, auth_token=api_key)


def test_user_and_password_accepted_and_refused(users_server_url: str) -> None:
    """`SynapConfig(url, username=, password=)`: Basic auth over http://, `AUTH user pass`
    over synap://."""
    from conftest import PASSWORD, USER

    key = unique("py-kv-user")

    async def body(c: SynapClient) -> None:
        await c.kv.set(key, {"by": USER})
        assert await c.kv.get(key) == {"by": USER}

    run(users_server_url, body, username=USER, password=PASSWORD)

    async def refused(c: SynapClient) -> None:
        with pytest.raises(SynapException):
            await c.kv.get(key)

    run(users_server_url, refused, username=USER, password="wrong")
    run(users_server_url, refused, username="mallory", password=PASSWORD)


def test_server_without_keys_ignores_tokens(server_url: str) -> None:
    key = unique("py-kv")

    async def body(c: SynapClient) -> None:
        await c.kv.set(key, "v")
        assert await c.kv.get(key) == "v"

    run(server_url, body, auth_token="any-token-at-all")


# ---------------------------------------------------------------------------------------------
# Value encodings the SDK relies on (SYNAP_WIRE.md §7, §8): numbers stored as text still count
# for INCR, and null is a pub/sub message like any other.


def test_kv_incr_of_number_set_by_sdk(server_url: str) -> None:
    p = unique("py-kv")

    async def body(c: SynapClient) -> None:
        await c.kv.set(f"{p}:num", 100)  # sent as {"value": "100"}
        assert await c.kv.get(f"{p}:num") == 100
        assert await c.kv.incr(f"{p}:num", 5) == 105
        # INCR keeps the key's TTL.
        await c.kv.set(f"{p}:ttl", 7, ttl=1)
        assert await c.kv.incr(f"{p}:ttl") == 8
        await asyncio.sleep(1.5)

        async def gone() -> bool:
            return await c.kv.get(f"{p}:ttl") is None

        await wait_until(gone, "the incremented 1 s TTL key to expire")

    run(server_url, body)


def test_pubsub_publish_null_payload(server_url: str) -> None:
    async def body(c: SynapClient) -> None:
        assert await c.pubsub.publish(unique("pyps.null"), None) == 0

    run(server_url, body)
