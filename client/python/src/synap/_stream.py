"""The streaming consumer over ``GET /queue/{name}/ws``."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Dict, Optional, Tuple

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ._errors import SynapError, closed
from ._failover import with_key
from ._transport import Transport, seg
from ._types import PublishResult, QueueMessage, check_group
from ._ws import Inbox, frame_error, open_socket, reconnectable

#: Most calls awaiting their answer on one stream.
MAX_PENDING = 10_000
#: Most pushed messages held unread (the server pushes at most ``prefetch`` <= 1000).
MAX_INBOX = 4_096


@dataclass
class _Pending:
    """A call awaiting its answer: the frame (without its id) is kept to be sent again."""
    frame: Dict[str, Any]
    fut: "asyncio.Future[Dict[str, Any]]"
    #: The connection it was last sent on.
    sent_on: Optional[ClientConnection] = None
    #: Whether it was sent again on a new connection.
    resent: bool = False


def _resendable(frame: Dict[str, Any]) -> bool:
    """Whether a frame sent on a lost connection may be sent again: a nack only with its
    lease (it could settle a later delivery), a publish only with its idempotency key."""
    if frame.get("op") == "nack":
        return frame.get("lease") is not None
    if frame.get("op") == "publish":
        return frame.get("idempotency_key") is not None
    return True


class QueueStream:
    """A streaming consumer: ``async for msg in stream`` yields pushed messages. The server
    pushes at most ``prefetch`` unsettled messages; each ack or nack earns one more. Calls
    (ack, nack, extend, publish) may overlap: each frame carries an id and gets one answer.

    With one server URL, a lost connection makes the iterator and every waiting call raise
    SynapError ``closed``; after ``close()`` the iterator simply ends. Messages still
    unsettled go back to the queue.

    With several URLs (a cluster), a lost connection or a ``not_leader`` refusal makes the
    stream reconnect to the leader within the client's ``failover_timeout`` and attach again
    with the same options (``reconnects`` counts it); calls still waiting are sent again on
    the new connection (a publish under its idempotency key; an ack that finds its message
    gone counts as done). Messages pushed but not read yet are dropped at a reconnect: the
    server gives them back, or after a failover they come back when their leases end. Only
    when no leader answers in time does the iterator raise.
    """

    def __init__(self, t: Transport, queue: str, query: Dict[str, str]) -> None:
        self.queue = queue
        self.consumer_id = ""
        self.prefetch = 0
        #: How many times the stream reconnected after losing its connection.
        self.reconnects = 0
        self._t = t
        self._query = query
        self._ws: Optional[ClientConnection] = None
        self._inbox: Inbox[QueueMessage] = Inbox(MAX_INBOX)
        self._pending: Dict[int, _Pending] = {}
        self._next_id = 1
        self._closing = False
        self._runner: Optional["asyncio.Task[None]"] = None

    @classmethod
    async def open(cls, t: Transport, queue: str, query: Dict[str, str]) -> "QueueStream":
        """Connects (to the leader, with several URLs) and waits for ``connected``."""
        stream = cls(t, queue, query)
        conn = await t.targets.run(f"queue stream {queue}", stream._connect, reconnectable)
        # Calls made before the reader task first runs go straight to this connection.
        stream._ws = conn[0]
        stream._runner = asyncio.get_running_loop().create_task(stream._run(conn))
        return stream

    async def _connect(self, base: str) -> Tuple[ClientConnection, str]:
        """One connection to ``base``, past its ``connected`` frame."""
        if self._closing:
            raise closed(f"queue stream {self.queue}")
        ws = await open_socket(self._t.ws_url(f"/queue/{seg(self.queue)}/ws", self._query, base),
                               self._t.api_key)
        try:
            first = json.loads(await ws.recv())
        except (ConnectionClosed, ValueError) as e:
            await ws.close()
            raise closed(f"queue stream {self.queue}") from e
        if not isinstance(first, dict) or first.get("type") != "connected":
            await ws.close()
            raise frame_error(first) if isinstance(first, dict) else SynapError("bad first frame", "decode")
        self.consumer_id = str(first.get("consumer_id", ""))
        self.prefetch = int(first.get("prefetch", 0))
        return ws, base

    async def _run(self, conn: Tuple[ClientConnection, str]) -> None:
        """Reads connection after connection until the stream ends."""
        try:
            while True:
                ws, base = conn
                self._ws = ws
                await self._send_pending(ws)
                failure, said = await self._read(ws)
                self._ws = None
                if self._closing:
                    self._finish(None)
                    return
                if failure is not None or not self._t.targets.multi:
                    self._finish(failure or said or closed(f"queue stream {self.queue}"))
                    return
                if said is not None and not reconnectable(said) and not (
                        said.code == "queue_not_found" and not await self._t.leads(base)):
                    # A deposed leader ends its sessions with queue_not_found; a real deletion
                    # leaves the node leading.
                    self._finish(said)
                    return
                self._inbox.clear()
                conn = await self._t.targets.run(
                    f"queue stream {self.queue}", self._connect,
                    lambda e: not self._closing and reconnectable(e))
                if self._closing:
                    await conn[0].close()
                    self._finish(None)
                    return
                self.reconnects += 1
        except SynapError as e:
            self._finish(None if self._closing else e)
        except asyncio.CancelledError:
            self._finish(None)

    async def _send_pending(self, ws: ClientConnection) -> None:
        """Sends the calls still waiting that this connection has not seen (after a reconnect)."""
        for call_id, call in list(self._pending.items()):
            if call.sent_on is ws or call.fut.done():
                continue
            if call.sent_on is not None and not _resendable(call.frame):
                del self._pending[call_id]
                need = "a lease" if call.frame.get("op") == "nack" else "an idempotency key"
                call.fut.set_exception(closed(
                    f"queue stream {self.queue} (lost before the answer; a {call.frame.get('op')} "
                    f"without {need} is not resent)"))
                continue
            call.resent = call.sent_on is not None
            call.sent_on = ws
            try:
                await ws.send(json.dumps({**call.frame, "id": call_id}))
            except ConnectionClosed:
                return

    async def _read(self, ws: ClientConnection) -> Tuple[Optional[SynapError], Optional[SynapError]]:
        """Reads one connection to its end: (a failure that ends the stream, the error the
        server gave for ending the connection)."""
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if not isinstance(frame, dict):
                    raise SynapError("queue stream frame is not an object", "decode")
                said = self._on_frame(frame)
                if said is not None:
                    if not self._t.targets.multi:
                        return said, None
                    await ws.close()
                    return None, said
        except ConnectionClosed:
            pass
        except SynapError as e:
            return e, None
        except ValueError as e:
            return SynapError(f"queue stream {self.queue}: bad frame: {e}", "decode"), None
        return None, None

    def _on_frame(self, frame: Dict[str, Any]) -> Optional[SynapError]:
        """Handles one frame; returns an error frame not tied to a call (consuming ended)."""
        kind = frame.get("type")
        if kind == "message":
            self._inbox.push(QueueMessage.parse(frame))
            return None
        call_id = frame.get("id")
        if not isinstance(call_id, int):
            return frame_error(frame) if kind == "error" else None
        call = self._pending.pop(call_id, None)
        if call is None or call.fut.done():
            return None
        if kind != "error":
            call.fut.set_result(frame)
            return None
        err = frame_error(frame)
        if call.resent and call.frame.get("op") == "ack" and err.code == "message_not_found":
            # A resent ack whose message is gone: its first send acked it.
            call.fut.set_result(frame)
        else:
            call.fut.set_exception(err)
        return None

    def _finish(self, failure: Optional[SynapError]) -> None:
        err = failure or closed(f"queue stream {self.queue}")
        for call in self._pending.values():
            if not call.fut.done():
                call.fut.set_exception(err)
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
        ws = self._ws
        if ws is None and not self._t.targets.multi:
            raise closed(f"queue stream {self.queue}")
        self._pending[call_id] = _Pending(frame, fut, ws)
        if ws is not None:
            try:
                await ws.send(json.dumps({**frame, "id": call_id}))
            except ConnectionClosed as e:
                if not self._t.targets.multi:
                    self._pending.pop(call_id, None)
                    raise closed(f"queue stream {self.queue}") from e
        # With several URLs and no connection now, the reconnect sends it.
        return await fut

    async def ack(self, message_id: str, lease: Optional[int] = None) -> None:
        """Acks a pushed message (pass its ``lease`` so a stale delivery is refused)."""
        frame: Dict[str, Any] = {"op": "ack", "message_id": message_id}
        if lease is not None:
            frame["lease"] = lease
        await self._call(frame)

    async def nack(self, message_id: str, requeue: bool = True, *, delay: Optional[float] = None,
                   error: Optional[str] = None, lease: Optional[int] = None,
                   snooze: bool = False) -> str:
        """Nacks a pushed message; returns the action (``requeued``, ``delayed``,
        ``dead_lettered``, ``snoozed``). ``snooze=True`` brings it back after ``delay`` without
        spending an attempt."""
        if snooze and not requeue:
            raise SynapError("a snooze brings the message back: it needs requeue=True",
                             "invalid_argument")
        frame: Dict[str, Any] = {"op": "nack", "message_id": message_id, "requeue": requeue}
        for k, v in (("delay", delay), ("error", error), ("lease", lease)):
            if v is not None:
                frame[k] = v
        if snooze:
            frame["snooze"] = True
        return str((await self._call(frame)).get("action"))

    async def extend(self, message_id: str, ack_deadline: float, lease: Optional[int] = None) -> int:
        """Extends a lease to now + ``ack_deadline`` s; returns the new deadline (Unix ms)."""
        frame: Dict[str, Any] = {"op": "extend", "message_id": message_id, "ack_deadline": ack_deadline}
        if lease is not None:
            frame["lease"] = lease
        return int((await self._call(frame))["lease_deadline"])

    async def publish(self, message: Any, *, priority: Optional[int] = None,
                      headers: Optional[Dict[str, str]] = None, delay: Optional[float] = None,
                      ttl: Optional[float] = None,
                      idempotency_key: Optional[str] = None,
                      group: Optional[str] = None) -> PublishResult:
        """Publishes on the stream's queue and waits for the confirm (keyed as
        ``queue.publish`` is; ``group`` as there)."""
        if group is not None:
            check_group(group)
        frame: Dict[str, Any] = {"op": "publish", "message": message}
        for k, v in (("priority", priority), ("headers", headers), ("delay", delay), ("ttl", ttl),
                     ("idempotency_key", idempotency_key), ("group", group)):
            if v is not None:
                frame[k] = v
        return PublishResult.parse(await self._call(with_key(self._t.auto_keys, frame)))

    async def next(self) -> Optional[QueueMessage]:
        """The next pushed message; None once the stream was closed with ``close()``."""
        return await self._inbox.next()

    async def close(self) -> None:
        """Closes the connection; the server gives unsettled messages back to the queue."""
        self._closing = True
        self._inbox.end(discard=True)
        ws = self._ws
        if ws is not None:
            await ws.close()
        elif self._runner is not None:
            # Between connections: stop looking for the leader.
            self._runner.cancel()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

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
