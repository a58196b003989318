"""Pub/sub operations: ``client.pubsub``, with subscriptions over ``GET /pubsub/ws``."""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Dict, Optional, Sequence, Union

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ._errors import SynapError, closed
from ._transport import Transport, seg
from ._types import PubSubMessage, PubSubPublishResult
from ._ws import Inbox, frame_error, open_socket, reconnectable

#: Messages a subscription holds unread; beyond it the oldest is dropped.
MAX_UNREAD = 10_000


class Subscription:
    """A live subscription: ``async for msg in sub``. Ends after ``close()``; a lost
    connection raises SynapError ``closed``. Messages piling up past the unread limit drop
    the oldest (pub/sub is at-most-once); ``dropped`` counts them."""

    def __init__(self, ws: ClientConnection, patterns: Sequence[str], subscriber_id: str) -> None:
        self.patterns = list(patterns)
        self.subscriber_id = subscriber_id
        self._ws = ws
        self._inbox: Inbox[PubSubMessage] = Inbox(MAX_UNREAD)
        self._closing = False
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def dropped(self) -> int:
        return self._inbox.dropped

    async def _read(self) -> None:
        failure: Optional[SynapError] = None
        try:
            async for raw in self._ws:
                frame = json.loads(raw)
                if isinstance(frame, dict) and frame.get("type") == "message":
                    self._inbox.push(PubSubMessage.parse(frame))
        except ConnectionClosed:
            pass
        except SynapError as e:
            failure = e
        except ValueError as e:
            failure = SynapError(f"subscription: bad frame: {e}", "decode")
        if failure is None and not self._closing:
            failure = closed(f"subscription {','.join(self.patterns)}")
        self._inbox.end(failure)

    async def next(self) -> Optional[PubSubMessage]:
        """The next message; None after ``close()``."""
        return await self._inbox.next()

    async def close(self) -> None:
        """Unsubscribes (closes the connection)."""
        self._closing = True
        self._inbox.end(discard=True)
        await self._ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)

    def __aiter__(self) -> AsyncIterator[PubSubMessage]:
        return self

    async def __anext__(self) -> PubSubMessage:
        msg = await self._inbox.next()
        if msg is None:
            raise StopAsyncIteration
        return msg

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class PubSubApi:
    """Pub/sub operations."""

    def __init__(self, t: Transport) -> None:
        self._t = t

    async def publish(self, topic: str, message: Any,
                      headers: Optional[Dict[str, str]] = None) -> PubSubPublishResult:
        """Publishes to a topic; delivered at most once to the subscribers connected now."""
        body: Dict[str, Any] = {"message": message}
        if headers is not None:
            body["headers"] = headers
        # At most once: never resent after an unanswered attempt.
        r = await self._t.request("POST", f"/pubsub/{seg(topic)}/publish", body, once=True)
        return PubSubPublishResult(str(r["message_id"]), str(r["topic"]), int(r["subscribers_matched"]))

    async def subscribe(self, patterns: Union[str, Sequence[str]]) -> Subscription:
        """Subscribes to patterns (``*`` one segment, trailing ``#`` any number) and returns
        once the server confirmed, so later publishes are delivered. With several URLs the
        subscription is opened on the leader; it is not reopened when its connection is lost
        (pub/sub is at-most-once: what was published meanwhile is gone anyway)."""
        pats = [patterns] if isinstance(patterns, str) else list(patterns)
        if not pats:
            raise SynapError("subscribe needs at least one pattern", "invalid_argument")

        async def attempt(base: str) -> Subscription:
            url = self._t.ws_url("/pubsub/ws", {"topics": ",".join(pats)}, base)
            ws = await open_socket(url, self._t.api_key)
            try:
                first = json.loads(await ws.recv())
            except (ConnectionClosed, ValueError) as e:
                await ws.close()
                raise closed("subscription") from e
            if not isinstance(first, dict) or first.get("type") != "connected":
                await ws.close()
                if isinstance(first, dict):
                    raise frame_error(first)
                raise SynapError("bad first frame", "decode")
            return Subscription(ws, pats, str(first.get("subscriber_id", "")))

        return await self._t.targets.run(f"subscribe {','.join(pats)}", attempt, reconnectable)

    async def stats(self) -> Dict[str, Any]:
        """Pub/sub statistics."""
        return dict(await self._t.request("GET", "/pubsub/stats"))
