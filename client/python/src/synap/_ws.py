"""WebSocket plumbing shared by queue streams and subscriptions (the ``websockets`` package)."""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Deque, Generic, List, Optional, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from ._errors import SynapError, refusal
from ._failover import is_move

T = TypeVar("T")

#: Largest frame accepted from the server.
MAX_FRAME = 64 << 20


async def open_socket(url: str, api_key: Optional[str]) -> ClientConnection:
    """Opens a WebSocket, sending the key as a bearer header; an HTTP refusal of the upgrade
    becomes a SynapError with the server's code and status."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else None
    try:
        return await connect(url, additional_headers=headers, max_size=MAX_FRAME, open_timeout=30)
    except InvalidStatus as e:
        body = e.response.body or b""
        raise refusal(e.response.status_code, body.decode("utf-8", "replace")) from e
    except (OSError, asyncio.TimeoutError, WebSocketException) as e:
        raise SynapError(f"WebSocket {url}: {e!r}", "websocket") from e


def reconnectable(e: SynapError) -> bool:
    """Errors after which a WebSocket is tried again elsewhere (several URLs only)."""
    return is_move(e) or e.code in ("transport", "websocket", "closed")


class Inbox(Generic[T]):
    """A bounded buffer of received items for one reader. When full the oldest is dropped
    (counted in ``dropped``). ``end`` wakes the reader: buffered items first, then the end
    (None) or the failure."""

    def __init__(self, limit: int) -> None:
        self._items: Deque[T] = collections.deque()
        self._limit = limit
        self._waiters: List["asyncio.Future[None]"] = []
        self._ended = False
        self._failure: Optional[SynapError] = None
        self.dropped = 0

    @property
    def ended(self) -> bool:
        return self._ended

    def _wake(self) -> None:
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
        self._waiters.clear()

    def push(self, item: T) -> None:
        if self._ended:
            return
        if len(self._items) >= self._limit:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._wake()

    def clear(self) -> None:
        """Drops the buffered items (a stream that reconnects no longer holds their leases
        for sure)."""
        self._items.clear()

    def end(self, failure: Optional[SynapError] = None, discard: bool = False) -> None:
        """Ends the inbox; ``discard`` drops what is buffered (a closed stream's messages
        go back to the queue, so they must not be handed out)."""
        if discard:
            self._items.clear()
        if self._ended:
            return
        self._ended = True
        self._failure = failure
        self._wake()

    async def next(self) -> Optional[T]:
        """The next item; None once ended cleanly; raises the failure that ended it."""
        while True:
            if self._items:
                return self._items.popleft()
            if self._ended:
                if self._failure is not None:
                    raise self._failure
                return None
            w: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()
            self._waiters.append(w)
            await w


def frame_error(frame: Any) -> SynapError:
    """A ``{"type": "error"}`` frame as a SynapError (status 0: it came over a WebSocket)."""
    return SynapError(str(frame.get("error", "error")), str(frame.get("code", "error")), 0)
