"""The streaming consumer over ``GET /queue/{name}/ws``."""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Dict, Optional

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ._errors import SynapError, closed
from ._types import PublishResult, QueueMessage
from ._ws import Inbox, frame_error, open_socket

#: Most calls awaiting their answer on one stream.
MAX_PENDING = 10_000
#: Most pushed messages held unread (the server pushes at most ``prefetch`` <= 1000).
MAX_INBOX = 4_096


class QueueStream:
    """A streaming consumer: ``async for msg in stream`` yields pushed messages. The server
    pushes at most ``prefetch`` unsettled messages; each ack or nack earns one more. Calls
    (ack, nack, extend, publish) may overlap: each frame carries an id and gets one answer.

    A lost connection makes the iterator and every waiting call raise SynapError ``closed``;
    after ``close()`` the iterator simply ends. Messages still unsettled go back to the queue.
    """

    def __init__(self, ws: ClientConnection, queue: str) -> None:
        self.queue = queue
        self.consumer_id = ""
        self.prefetch = 0
        self._ws = ws
        self._inbox: Inbox[QueueMessage] = Inbox(MAX_INBOX)
        self._pending: Dict[int, "asyncio.Future[Dict[str, Any]]"] = {}
        self._next_id = 1
        self._closing = False
        self._reader: Optional["asyncio.Task[None]"] = None

    @classmethod
    async def open(cls, url: str, api_key: Optional[str], queue: str) -> "QueueStream":
        ws = await open_socket(url, api_key)
        stream = cls(ws, queue)
        try:
            first = json.loads(await ws.recv())
        except (ConnectionClosed, ValueError) as e:
            await ws.close()
            raise closed(f"queue stream {queue}") from e
        if not isinstance(first, dict) or first.get("type") != "connected":
            await ws.close()
            raise frame_error(first) if isinstance(first, dict) else SynapError("bad first frame", "decode")
        stream.consumer_id = str(first.get("consumer_id", ""))
        stream.prefetch = int(first.get("prefetch", 0))
        stream._reader = asyncio.get_running_loop().create_task(stream._read())
        return stream

    async def _read(self) -> None:
        failure: Optional[SynapError] = None
        try:
            async for raw in self._ws:
                frame = json.loads(raw)
                if not isinstance(frame, dict):
                    raise SynapError("queue stream frame is not an object", "decode")
                self._on_frame(frame)
        except ConnectionClosed:
            pass
        except SynapError as e:
            failure = e
        except ValueError as e:
            failure = SynapError(f"queue stream {self.queue}: bad frame: {e}", "decode")
        if failure is None and not self._closing:
            failure = closed(f"queue stream {self.queue}")
        self._finish(failure)

    def _on_frame(self, frame: Dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            self._inbox.push(QueueMessage.parse(frame))
            return
        fut = self._pending.pop(frame["id"], None) if isinstance(frame.get("id"), int) else None
        if fut is None:
            if kind == "error":
                # Not tied to a call (consuming failed): the server closes next.
                raise frame_error(frame)
            return
        if fut.done():
            return
        if kind == "error":
            fut.set_exception(frame_error(frame))
        else:
            fut.set_result(frame)

    def _finish(self, failure: Optional[SynapError]) -> None:
        err = failure or closed(f"queue stream {self.queue}")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        self._inbox.end(failure)

    async def _call(self, frame: Dict[str, Any]) -> Dict[str, Any]:
        if self._inbox.ended or self._closing:
            raise closed(f"queue stream {self.queue}")
        if len(self._pending) >= MAX_PENDING:
            raise SynapError(f"more than {MAX_PENDING} calls awaiting answers", "limit_exceeded")
        call_id = self._next_id
        self._next_id += 1
        fut: "asyncio.Future[Dict[str, Any]]" = asyncio.get_running_loop().create_future()
        self._pending[call_id] = fut
        try:
            await self._ws.send(json.dumps({**frame, "id": call_id}))
        except ConnectionClosed as e:
            self._pending.pop(call_id, None)
            raise closed(f"queue stream {self.queue}") from e
        return await fut

    async def ack(self, message_id: str, lease: Optional[int] = None) -> None:
        """Acks a pushed message (pass its ``lease`` so a stale delivery is refused)."""
        frame: Dict[str, Any] = {"op": "ack", "message_id": message_id}
        if lease is not None:
            frame["lease"] = lease
        await self._call(frame)

    async def nack(self, message_id: str, requeue: bool = True, *, delay: Optional[float] = None,
                   error: Optional[str] = None, lease: Optional[int] = None) -> str:
        """Nacks a pushed message; returns the action (``requeued``, ``delayed``, ``dead_lettered``)."""
        frame: Dict[str, Any] = {"op": "nack", "message_id": message_id, "requeue": requeue}
        for k, v in (("delay", delay), ("error", error), ("lease", lease)):
            if v is not None:
                frame[k] = v
        return str((await self._call(frame)).get("action"))

    async def extend(self, message_id: str, ack_deadline: float, lease: Optional[int] = None) -> int:
        """Extends a lease to now + ``ack_deadline`` s; returns the new deadline (Unix ms)."""
        frame: Dict[str, Any] = {"op": "extend", "message_id": message_id, "ack_deadline": ack_deadline}
        if lease is not None:
            frame["lease"] = lease
        return int((await self._call(frame))["lease_deadline"])

    async def publish(self, message: Any, *, priority: Optional[int] = None,
                      headers: Optional[Dict[str, str]] = None, delay: Optional[float] = None,
                      ttl: Optional[float] = None) -> PublishResult:
        """Publishes on the stream's queue and waits for the confirm."""
        frame: Dict[str, Any] = {"op": "publish", "message": message}
        for k, v in (("priority", priority), ("headers", headers), ("delay", delay), ("ttl", ttl)):
            if v is not None:
                frame[k] = v
        return PublishResult.parse(await self._call(frame))

    async def next(self) -> Optional[QueueMessage]:
        """The next pushed message; None once the stream was closed with ``close()``."""
        return await self._inbox.next()

    async def close(self) -> None:
        """Closes the connection; the server gives unsettled messages back to the queue."""
        self._closing = True
        self._inbox.end(discard=True)
        await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    def __aiter__(self) -> AsyncIterator[QueueMessage]:
        return self

    async def __anext__(self) -> QueueMessage:
        msg = await self._inbox.next()
        if msg is None:
            raise StopAsyncIteration
        return msg

    async def __aenter__(self) -> "QueueStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
