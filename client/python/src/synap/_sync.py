"""SynapClient: the same API without ``await``. It runs an AsyncSynapClient on a private event
loop in a background thread and waits for each call, so the two clients behave alike."""

from __future__ import annotations

import asyncio
import threading
from typing import (Any, Awaitable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar,
                    Union)

from ._client import AsyncSynapClient
from ._failover import DEFAULT_FAILOVER_SECS
from ._flows import Flow, FlowCreated
from ._pubsub import Subscription
from ._stream import QueueStream
from ._types import (AckBatchResult, DlqPage, GroupInfo, Job, KvGetResult, ProgressResult,
                     PublishResult, PubSubMessage, PubSubPublishResult, QueueMessage, QueueStats,
                     Schedule, ScheduleSet)

T = TypeVar("T")


class _Loop:
    """A private event loop on a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="synap-client", daemon=True)
        self.thread.start()

    def run(self, aw: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await aw
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class SyncQueueStream:
    """A blocking QueueStream: ``for msg in stream``."""

    def __init__(self, loop: _Loop, stream: QueueStream) -> None:
        self._l = loop
        self._s = stream
        self.prefetch = stream.prefetch

    @property
    def consumer_id(self) -> str:
        """The consumer id the server confirmed (on the latest connection)."""
        return self._s.consumer_id

    @property
    def reconnects(self) -> int:
        """How many times the stream reconnected after losing its connection."""
        return self._s.reconnects

    def next(self) -> Optional[QueueMessage]:
        return self._l.run(self._s.next())

    def ack(self, message_id: str, lease: Optional[int] = None) -> None:
        self._l.run(self._s.ack(message_id, lease))

    def nack(self, message_id: str, requeue: bool = True, **opts: Any) -> str:
        return self._l.run(self._s.nack(message_id, requeue, **opts))

    def extend(self, message_id: str, ack_deadline: float, lease: Optional[int] = None) -> int:
        return self._l.run(self._s.extend(message_id, ack_deadline, lease))

    def publish(self, message: Any, **opts: Any) -> PublishResult:
        return self._l.run(self._s.publish(message, **opts))

    def close(self) -> None:
        self._l.run(self._s.close())

    def __iter__(self) -> Iterator[QueueMessage]:
        while True:
            msg = self.next()
            if msg is None:
                return
            yield msg


class SyncSubscription:
    """A blocking Subscription: ``for msg in sub``."""

    def __init__(self, loop: _Loop, sub: Subscription) -> None:
        self._l = loop
        self._s = sub
        self.subscriber_id = sub.subscriber_id

    def next(self) -> Optional[PubSubMessage]:
        return self._l.run(self._s.next())

    def close(self) -> None:
        self._l.run(self._s.close())

    def __iter__(self) -> Iterator[PubSubMessage]:
        while True:
            msg = self.next()
            if msg is None:
                return
            yield msg


class SyncQueueApi:
    """Blocking queue operations; the arguments are AsyncSynapClient's ``queue`` ones."""

    def __init__(self, loop: _Loop, client: AsyncSynapClient) -> None:
        self._l = loop
        self._q = client.queue

    def create(self, name: str, **config: Any) -> bool:
        return self._l.run(self._q.create(name, **config))

    def list(self) -> List[str]:
        return self._l.run(self._q.list())

    def delete(self, name: str) -> bool:
        return self._l.run(self._q.delete(name))

    def purge(self, name: str) -> int:
        return self._l.run(self._q.purge(name))

    def publish(self, name: str, message: Any, **opts: Any) -> PublishResult:
        return self._l.run(self._q.publish(name, message, **opts))

    def publish_batch(self, name: str, messages: Sequence[Dict[str, Any]]) -> List[PublishResult]:
        return self._l.run(self._q.publish_batch(name, messages))

    def consume(self, name: str, **opts: Any) -> Optional[QueueMessage]:
        return self._l.run(self._q.consume(name, **opts))

    def consume_batch(self, name: str, max_messages: int, **opts: Any) -> List[QueueMessage]:
        return self._l.run(self._q.consume_batch(name, max_messages, **opts))

    def ack(self, name: str, message_id: str, lease: Optional[int] = None, *,
            result: Any = None) -> None:
        self._l.run(self._q.ack(name, message_id, lease, result=result))

    def job(self, name: str, message_id: str) -> Job:
        return self._l.run(self._q.job(name, message_id))

    def wait_for(self, name: str, message_id: str, timeout: Optional[float] = None) -> Job:
        return self._l.run(self._q.wait_for(name, message_id, timeout))

    def progress(self, name: str, message_id: str, progress: Any, *, lease: Optional[int] = None,
                 extend: Optional[float] = None) -> ProgressResult:
        return self._l.run(self._q.progress(name, message_id, progress, lease=lease, extend=extend))

    def cancel(self, name: str, message_id: str) -> str:
        return self._l.run(self._q.cancel(name, message_id))

    def schedule_put(self, name: str, schedule_id: str, message: Any, **opts: Any) -> ScheduleSet:
        return self._l.run(self._q.schedule_put(name, schedule_id, message, **opts))

    def schedule_list(self, name: str) -> List[Schedule]:
        return self._l.run(self._q.schedule_list(name))

    def schedule_delete(self, name: str, schedule_id: str) -> bool:
        return self._l.run(self._q.schedule_delete(name, schedule_id))

    def schedule_run(self, name: str, schedule_id: str) -> PublishResult:
        return self._l.run(self._q.schedule_run(name, schedule_id))

    def ack_batch(self, name: str, acks: Sequence[Dict[str, Any]]) -> AckBatchResult:
        return self._l.run(self._q.ack_batch(name, acks))

    def nack(self, name: str, message_id: str, requeue: bool = True, **opts: Any) -> str:
        return self._l.run(self._q.nack(name, message_id, requeue, **opts))

    def extend(self, name: str, message_id: str, ack_deadline: float, lease: Optional[int] = None) -> int:
        return self._l.run(self._q.extend(name, message_id, ack_deadline, lease))

    def stats(self, name: str) -> QueueStats:
        return self._l.run(self._q.stats(name))

    def dlq_list(self, name: str, offset: int = 0, limit: int = 100) -> DlqPage:
        return self._l.run(self._q.dlq_list(name, offset, limit))

    def dlq_retry(self, name: str, message_ids: Optional[Sequence[str]] = None) -> int:
        return self._l.run(self._q.dlq_retry(name, message_ids))

    def dlq_purge(self, name: str) -> int:
        return self._l.run(self._q.dlq_purge(name))

    def pause(self, name: str) -> bool:
        return self._l.run(self._q.pause(name))

    def resume(self, name: str) -> bool:
        return self._l.run(self._q.resume(name))

    def rate_limit(self, name: str, for_secs: float) -> int:
        return self._l.run(self._q.rate_limit(name, for_secs))

    def groups(self, name: str, limit: Optional[int] = None) -> List[GroupInfo]:
        return self._l.run(self._q.groups(name, limit))

    def stream(self, name: str, **opts: Any) -> SyncQueueStream:
        return SyncQueueStream(self._l, self._l.run(self._q.stream(name, **opts)))


class SyncKvApi:
    """Blocking KV operations."""

    def __init__(self, loop: _Loop, client: AsyncSynapClient) -> None:
        self._l = loop
        self._k = client.kv

    def set(self, key: str, value: Any, ttl: Optional[float] = None) -> None:
        self._l.run(self._k.set(key, value, ttl))

    def get(self, key: str) -> KvGetResult:
        return self._l.run(self._k.get(key))

    def delete(self, key: str) -> bool:
        return self._l.run(self._k.delete(key))

    def exists(self, key: str) -> bool:
        return self._l.run(self._k.exists(key))

    def ttl(self, key: str) -> Optional[float]:
        return self._l.run(self._k.ttl(key))

    def expire(self, key: str, ttl: float) -> bool:
        return self._l.run(self._k.expire(key, ttl))

    def persist(self, key: str) -> bool:
        return self._l.run(self._k.persist(key))

    def incr(self, key: str, by: int = 1) -> int:
        return self._l.run(self._k.incr(key, by))

    def decr(self, key: str, by: int = 1) -> int:
        return self._l.run(self._k.decr(key, by))

    def keys(self, prefix: str = "", limit: Optional[int] = None) -> List[str]:
        return self._l.run(self._k.keys(prefix, limit))

    def mget(self, keys: Sequence[str]) -> List[Any]:
        return self._l.run(self._k.mget(keys))

    def mset(self, entries: Sequence[Dict[str, Any]]) -> None:
        self._l.run(self._k.mset(entries))

    def stats(self) -> Dict[str, Any]:
        return self._l.run(self._k.stats())


class SyncPubSubApi:
    """Blocking pub/sub operations."""

    def __init__(self, loop: _Loop, client: AsyncSynapClient) -> None:
        self._l = loop
        self._p = client.pubsub

    def publish(self, topic: str, message: Any, headers: Optional[Dict[str, str]] = None) -> PubSubPublishResult:
        return self._l.run(self._p.publish(topic, message, headers))

    def subscribe(self, patterns: Union[str, Sequence[str]]) -> SyncSubscription:
        return SyncSubscription(self._l, self._l.run(self._p.subscribe(patterns)))

    def stats(self) -> Dict[str, Any]:
        return self._l.run(self._p.stats())


class SyncFlowsApi:
    """Blocking flows; the arguments are AsyncSynapClient's ``flows`` ones."""

    def __init__(self, loop: _Loop, client: AsyncSynapClient) -> None:
        self._l = loop
        self._f = client.flows

    def add(self, tree: Mapping[str, Any]) -> FlowCreated:
        return self._l.run(self._f.add(tree))

    def get(self, flow_id: str) -> Flow:
        return self._l.run(self._f.get(flow_id))


class SynapClient:
    """The synchronous client: AsyncSynapClient's API (several URLs included), blocking.
    ``close()`` (or ``with``) releases its connections and thread."""

    def __init__(self, url: Union[str, Sequence[str]] = "http://localhost:15500",
                 api_key: Optional[str] = None, timeout: float = 30.0,
                 failover_timeout: float = DEFAULT_FAILOVER_SECS,
                 auto_idempotency_key: bool = True) -> None:
        self._l = _Loop()

        async def make() -> AsyncSynapClient:
            return AsyncSynapClient(url=url, api_key=api_key, timeout=timeout,
                                    failover_timeout=failover_timeout,
                                    auto_idempotency_key=auto_idempotency_key)

        try:
            self._a = self._l.run(make())
        except BaseException:
            self._l.stop()
            raise
        self.queue = SyncQueueApi(self._l, self._a)
        self.kv = SyncKvApi(self._l, self._a)
        self.pubsub = SyncPubSubApi(self._l, self._a)
        self.flows = SyncFlowsApi(self._l, self._a)

    @property
    def url(self) -> str:
        return self._a.url

    @property
    def urls(self) -> Tuple[str, ...]:
        return self._a.urls

    def health(self) -> Dict[str, Any]:
        return self._l.run(self._a.health())

    def close(self) -> None:
        if not self._l.loop.is_closed():
            self._l.run(self._a.aclose())
            self._l.stop()

    def __enter__(self) -> "SynapClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
