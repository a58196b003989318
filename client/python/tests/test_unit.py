"""Goal: the client's pure parts without a server: refusal bodies become SynapErrors with
code and status, malformed answers are ``decode`` errors, publish options map to the server's
names, URLs are checked, and the bounded inbox drops its oldest item and ends its reader.
Method: call the internal helpers directly."""

from __future__ import annotations

import asyncio

import pytest

from synap import QueueMessage, SynapError
from synap._errors import refusal
from synap._queue import publish_body
from synap._transport import Transport, seg
from synap._ws import Inbox


def test_refusal_bodies():
    e = refusal(409, '{"error": "stale lease", "code": "lease_mismatch"}')
    assert (e.code, e.status, e.message, e.is_lease_mismatch) == ("lease_mismatch", 409, "stale lease", True)
    g = refusal(502, "<html>bad gateway</html>")
    assert (g.code, g.status) == ("http_502", 502)


def test_decode_errors():
    with pytest.raises(SynapError) as info:
        QueueMessage.parse({"message_id": "x"})
    assert info.value.code == "decode"
    with pytest.raises(SynapError):
        QueueMessage.parse([1])


def test_publish_body_and_urls():
    assert publish_body({"a": 1}, priority=9, max_retries=2, delay=1.5) == {
        "message": {"a": 1}, "priority": 9, "max_retries": 2, "delay": 1.5}
    assert seg("a/b c#") == "a%2Fb%20c%23"
    with pytest.raises(SynapError) as info:
        Transport("localhost:15500", None, 1)
    assert info.value.code == "invalid_argument"

    async def ws_url():
        t = Transport("https://h:1/", "k", 1)
        url = t.ws_url("/pubsub/ws", {"topics": "a.#"})
        await t.aclose()
        return url
    assert asyncio.run(ws_url()) == "wss://h:1/pubsub/ws?topics=a.%23"


def test_inbox_bounds_and_end():
    async def go():
        inbox: Inbox[int] = Inbox(2)
        for i in (1, 2, 3):
            inbox.push(i)
        assert inbox.dropped == 1
        assert [await inbox.next(), await inbox.next()] == [2, 3]
        waiting = asyncio.ensure_future(inbox.next())
        await asyncio.sleep(0)
        inbox.end(SynapError("gone", "closed"))
        with pytest.raises(SynapError):
            await waiting
        done: Inbox[int] = Inbox(1)
        done.push(1)
        done.end(discard=True)
        assert await done.next() is None
    asyncio.run(go())
