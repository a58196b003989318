"""The client's result types (snake_case, as the sample's Python code reads them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ._errors import SynapError

Json = Any


def _obj(v: Any, what: str) -> Dict[str, Any]:
    if not isinstance(v, dict):
        raise SynapError(f"{what}: expected an object, got {str(v)[:100]}", "decode")
    return v


def _num(r: Dict[str, Any], k: str) -> int:
    v = r.get(k)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise SynapError(f"field {k}: expected a number", "decode")
    return int(v)


def _str(r: Dict[str, Any], k: str) -> str:
    v = r.get(k)
    if not isinstance(v, str):
        raise SynapError(f"field {k}: expected a string", "decode")
    return v


@dataclass
class PublishResult:
    """What the server answers to a publish."""

    message_id: str
    #: Place among the ready messages; ``None`` when published with a delay.
    position: Optional[int]

    @classmethod
    def parse(cls, v: Any) -> "PublishResult":
        r = _obj(v, "publish answer")
        pos = r.get("position")
        return cls(_str(r, "message_id"), pos if isinstance(pos, int) else None)


@dataclass
class QueueMessage:
    """A delivered message."""

    message_id: str
    queue: str
    #: The body: the JSON it was published with.
    message: Json
    priority: int
    #: Earlier deliveries of this message.
    retry_count: int
    max_retries: int
    headers: Dict[str, str]
    #: The lease token for ack, nack and extend.
    lease: int
    #: When the lease ends (Unix ms).
    lease_deadline: int
    #: When it was published (Unix ms).
    published_at: int
    #: The bytes of a message published as bytes; ``None`` otherwise.
    payload: Optional[List[int]] = None

    @classmethod
    def parse(cls, v: Any) -> "QueueMessage":
        r = _obj(v, "delivery")
        payload = r.get("payload")
        return cls(
            message_id=_str(r, "message_id"),
            queue=_str(r, "queue"),
            message=r.get("message"),
            priority=_num(r, "priority"),
            retry_count=_num(r, "retry_count"),
            max_retries=_num(r, "max_retries"),
            headers=dict(r.get("headers") or {}),
            lease=_num(r, "lease"),
            lease_deadline=_num(r, "lease_deadline"),
            published_at=_num(r, "published_at"),
            payload=payload if isinstance(payload, list) else None,
        )


@dataclass
class QueueStats:
    """A queue's statistics (``config`` durations in ms)."""

    queue: str
    depth: int
    ready: int
    delayed: int
    in_flight: int
    dead_letter_count: int
    consumers: int
    waiters: int
    published_total: int
    consumed_total: int
    acked_total: int
    nacked_total: int
    lease_expired_total: int
    dead_lettered_total: int
    expired_total: int
    dlq_dropped_total: int
    avg_wait_time_ms: float
    oldest_ready_age_ms: Optional[int]
    config: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, v: Any) -> "QueueStats":
        r = _obj(v, "stats")
        ints = [
            "depth", "ready", "delayed", "in_flight", "dead_letter_count", "consumers", "waiters",
            "published_total", "consumed_total", "acked_total", "nacked_total",
            "lease_expired_total", "dead_lettered_total", "expired_total", "dlq_dropped_total",
        ]
        values = {k: _num(r, k) for k in ints}
        age = r.get("oldest_ready_age_ms")
        return cls(
            queue=_str(r, "queue"),
            avg_wait_time_ms=float(r.get("avg_wait_time_ms") or 0),
            oldest_ready_age_ms=age if isinstance(age, int) else None,
            config=dict(r.get("config") or {}),
            **values,
        )


@dataclass
class DeadLetter:
    """A dead-lettered message."""

    message_id: str
    message: Json
    priority: int
    headers: Dict[str, str]
    #: ``max_retries_exceeded``, ``rejected``, ``expired``, ...
    reason: str
    attempts: int
    last_error: Optional[str]
    origin_queue: str
    published_at: int
    dead_lettered_at: int
    payload: Optional[List[int]] = None

    @classmethod
    def parse(cls, v: Any) -> "DeadLetter":
        r = _obj(v, "dead letter")
        err = r.get("last_error")
        payload = r.get("payload")
        return cls(
            message_id=_str(r, "message_id"),
            message=r.get("message"),
            priority=_num(r, "priority"),
            headers=dict(r.get("headers") or {}),
            reason=_str(r, "reason"),
            attempts=_num(r, "attempts"),
            last_error=err if isinstance(err, str) else None,
            origin_queue=_str(r, "origin_queue"),
            published_at=_num(r, "published_at"),
            dead_lettered_at=_num(r, "dead_lettered_at"),
            payload=payload if isinstance(payload, list) else None,
        )


@dataclass
class DlqPage:
    """One page of a DLQ, oldest first."""

    total: int
    messages: List[DeadLetter]


@dataclass
class AckBatchResult:
    """What ``ack_batch`` did: how many were acked, and those refused with their codes."""

    acked: int
    failed: List[Dict[str, str]]


@dataclass
class KvGetResult:
    """What ``kv.get`` answers: ``found``, and when found the value and TTL (s or None)."""

    found: bool
    value: Json = None
    ttl: Optional[float] = None


@dataclass
class PubSubPublishResult:
    """What ``pubsub.publish`` answers."""

    message_id: str
    topic: str
    #: Live subscribers the message was delivered to.
    subscribers_matched: int


@dataclass
class PubSubMessage:
    """A message received by a subscription."""

    topic: str
    message: Json
    message_id: str
    published_at: int
    headers: Dict[str, str]

    @classmethod
    def parse(cls, v: Any) -> "PubSubMessage":
        r = _obj(v, "pub/sub message")
        return cls(
            topic=_str(r, "topic"),
            message=r.get("message"),
            message_id=_str(r, "message_id"),
            published_at=_num(r, "published_at"),
            headers=dict(r.get("headers") or {}),
        )
