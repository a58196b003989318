"""The client's result types (snake_case, as the sample's Python code reads them)."""

from __future__ import annotations

import unicodedata
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
    #: True when the idempotency key was seen already and nothing was added.
    duplicate: bool = False
    #: True when a debounced publish replaced the message of a still-delayed job.
    replaced: bool = False

    @classmethod
    def parse(cls, v: Any) -> "PublishResult":
        r = _obj(v, "publish answer")
        pos = r.get("position")
        return cls(_str(r, "message_id"), pos if isinstance(pos, int) else None,
                   duplicate=r.get("duplicate") is True, replaced=r.get("replaced") is True)


def _opt_num(r: Dict[str, Any], k: str) -> Optional[int]:
    v = r.get(k)
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _opt_str(r: Dict[str, Any], k: str) -> Optional[str]:
    v = r.get(k)
    return v if isinstance(v, str) else None


def _list(r: Dict[str, Any], k: str, default: Optional[List[Any]] = None) -> List[Any]:
    """``r[k]`` as a list; ``default`` when absent (a decode error when there is none)."""
    v = r.get(k)
    if v is None and default is not None:
        return default
    if not isinstance(v, list):
        raise SynapError(f"field {k}: expected a list", "decode")
    return v


@dataclass
class FlowChild:
    """A finished child of a flow parent, as the parent's delivery carries it."""

    message_id: str
    queue: str
    #: How it finished: ``completed``, ``dead_lettered``, ``expired``, ``cancelled``,
    #: ``purged`` or ``queue_deleted``.
    state: str
    #: What its ack carried; ``None`` if nothing.
    result: Json
    #: Why it was dead-lettered (``dead_lettered`` and ``expired`` only).
    reason: Optional[str] = None

    @classmethod
    def parse(cls, v: Any) -> "FlowChild":
        r = _obj(v, "flow child")
        return cls(_str(r, "message_id"), _str(r, "queue"), _str(r, "state"), r.get("result"),
                   _opt_str(r, "reason"))


#: The states of a finished job (of ``waiting_children``, ``delayed``, ``ready``,
#: ``in_flight``, ``completed``, ``dead_lettered`` and ``cancelled``).
FINISHED_STATES = frozenset({"completed", "dead_lettered", "cancelled"})


@dataclass
class Job:
    """A job as it is now (``queue.job``, ``queue.wait_for``). Times are Unix ms."""

    message_id: str
    queue: str
    #: ``delayed``, ``ready``, ``in_flight``, ``completed``, ``dead_lettered`` or ``cancelled``;
    #: ``waiting_children`` for a flow parent waiting for its children.
    state: str
    priority: int
    #: Deliveries so far.
    attempts: int
    #: The last progress its worker reported, ``None`` if none.
    progress: Json
    #: The result its ack carried, ``None`` if none.
    result: Json
    #: The last nack's error (or ``lease expired``).
    last_error: Optional[str]
    published_at: int
    #: When its latest delivery began.
    started_at: Optional[int]
    #: When it finished (``None`` while unfinished).
    finished_at: Optional[int]
    #: Its body as JSON.
    message: Json
    headers: Dict[str, str]
    #: The group it was published with; ``None`` for a message without one.
    group: Optional[str] = None
    #: In flight and cancelled: it settles as cancelled when its delivery ends.
    cancel_requested: bool = False
    #: Why it was dead-lettered (dead-lettered jobs only; ``child_failed`` for a flow parent).
    dead_letter_reason: Optional[str] = None
    #: The bytes of a message published as bytes; ``None`` otherwise.
    payload: Optional[List[int]] = None
    #: The flow it belongs to (flow jobs only).
    flow_id: Optional[str] = None
    #: Its parent in its flow, the job waiting for it (flow jobs with a parent only).
    parent_id: Optional[str] = None
    #: The message ids of its children in its flow (empty but for flow parents).
    children: List[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Completed, dead-lettered or cancelled."""
        return self.state in FINISHED_STATES

    @classmethod
    def parse(cls, v: Any) -> "Job":
        r = _obj(v, "job")
        payload = r.get("payload")
        return cls(
            message_id=_str(r, "message_id"),
            queue=_str(r, "queue"),
            state=_str(r, "state"),
            priority=_num(r, "priority"),
            attempts=_num(r, "attempts"),
            progress=r.get("progress"),
            result=r.get("result"),
            last_error=_opt_str(r, "last_error"),
            published_at=_num(r, "published_at"),
            started_at=_opt_num(r, "started_at"),
            finished_at=_opt_num(r, "finished_at"),
            message=r.get("message"),
            headers=dict(r.get("headers") or {}),
            group=_opt_str(r, "group"),
            cancel_requested=r.get("cancel_requested") is True,
            dead_letter_reason=_opt_str(r, "dead_letter_reason"),
            payload=payload if isinstance(payload, list) else None,
            flow_id=_opt_str(r, "flow_id"),
            parent_id=_opt_str(r, "parent_id"),
            children=[str(c) for c in _list(r, "children", [])],
        )


@dataclass
class ProgressResult:
    """What ``queue.progress`` answers."""

    #: The job was cancelled: stop working on it and ack or nack it (it settles as cancelled).
    cancelled: bool
    #: The lease deadline, Unix ms.
    lease_deadline: int


@dataclass
class ScheduleSet:
    """What ``queue.schedule_put`` answers."""

    id: str
    #: Its next run (Unix ms), ``None`` if it will never run.
    next_run_at: Optional[int]
    #: False when it replaced a schedule with the same id (which keeps its history).
    created: bool


@dataclass
class Schedule:
    """One schedule of ``queue.schedule_list``. Times are Unix ms."""

    id: str
    every_secs: Optional[float]
    cron: Optional[str]
    message: Json
    priority: Optional[int]
    headers: Dict[str, str]
    start_at: Optional[int]
    end_at: Optional[int]
    max_runs: Optional[int]
    next_run_at: Optional[int]
    last_run_at: Optional[int]
    #: Runs made.
    runs: int
    #: The message its latest run published.
    last_message_id: Optional[str]
    #: Why its latest run published nothing.
    last_error: Optional[str]

    @classmethod
    def parse(cls, v: Any) -> "Schedule":
        r = _obj(v, "schedule")
        every = r.get("every_secs")
        return cls(
            id=_str(r, "id"),
            every_secs=float(every) if isinstance(every, (int, float)) else None,
            cron=_opt_str(r, "cron"),
            message=r.get("message"),
            priority=_opt_num(r, "priority"),
            headers=dict(r.get("headers") or {}),
            start_at=_opt_num(r, "start_at"),
            end_at=_opt_num(r, "end_at"),
            max_runs=_opt_num(r, "max_runs"),
            next_run_at=_opt_num(r, "next_run_at"),
            last_run_at=_opt_num(r, "last_run_at"),
            runs=_num(r, "runs"),
            last_message_id=_opt_str(r, "last_message_id"),
            last_error=_opt_str(r, "last_error"),
        )


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
    #: The group it was published with; ``None`` for a message without one.
    group: Optional[str] = None
    #: A flow parent's children (``flows.add``), all finished, in the order given; under
    #: ``on_child_failure="ignore"`` the failed ones are left out. ``None`` for any other
    #: message.
    children: Optional[List[FlowChild]] = None

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
            group=_opt_str(r, "group"),
            children=None if r.get("children") is None
            else [FlowChild.parse(c) for c in _list(r, "children")],
        )


#: The longest group name, in UTF-8 bytes.
MAX_GROUP_BYTES = 255


def check_group(group: Any) -> None:
    """Raises ``invalid_argument`` for a group the server would refuse: 1-255 bytes of UTF-8
    without control characters."""
    if not isinstance(group, str) or not group:
        raise SynapError("group must be a non-empty string", "invalid_argument")
    if len(group.encode("utf-8", "surrogatepass")) > MAX_GROUP_BYTES:
        raise SynapError(f"group must be at most {MAX_GROUP_BYTES} bytes", "invalid_argument")
    if any(unicodedata.category(c) == "Cc" for c in group):
        raise SynapError("group must not contain control characters", "invalid_argument")


@dataclass
class GroupInfo:
    """One group of ``queue.groups``: its messages by state."""

    group: str
    #: Its ready messages.
    ready: int
    #: Its leased messages.
    in_flight: int
    #: Its messages waiting for a delay, a retry delay or a snooze.
    delayed: int

    @classmethod
    def parse(cls, v: Any) -> "GroupInfo":
        r = _obj(v, "group")
        return cls(_str(r, "group"), _num(r, "ready"), _num(r, "in_flight"), _num(r, "delayed"))


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
    cancelled_total: int = 0
    kept_jobs: int = 0
    schedules: int = 0
    #: Flow parents waiting for their children (not counted in ``depth``).
    waiting_children: int = 0
    #: Paused: it delivers nothing until resumed.
    paused: bool = False
    #: Nothing is delivered before this time (Unix ms): a worker's ``rate_limit``, or the
    #: queue's ``rate_limit`` window while it is full; ``None`` when not rate limited.
    rate_limited_until_ms: Optional[int] = None
    #: Groups holding messages (ready, delayed or in flight).
    groups: int = 0
    #: Ready messages no consumer may take now: all of them while the queue is paused, rate
    #: limited or at ``max_in_flight``, else those of groups at a limit.
    held_back: int = 0

    @classmethod
    def parse(cls, v: Any) -> "QueueStats":
        r = _obj(v, "stats")
        ints = [
            "depth", "ready", "delayed", "in_flight", "dead_letter_count", "consumers", "waiters",
            "published_total", "consumed_total", "acked_total", "nacked_total",
            "lease_expired_total", "dead_lettered_total", "expired_total", "dlq_dropped_total",
        ]
        values = {k: _num(r, k) for k in ints}
        # Job lifecycle and flow-control counts; servers before them left them out.
        for k in ("cancelled_total", "kept_jobs", "schedules", "groups", "held_back",
                  "waiting_children"):
            if k in r:
                values[k] = _num(r, k)
        paused = r.get("paused", False)
        if not isinstance(paused, bool):
            raise SynapError("field paused: expected a boolean", "decode")
        age = r.get("oldest_ready_age_ms")
        return cls(
            queue=_str(r, "queue"),
            avg_wait_time_ms=float(r.get("avg_wait_time_ms") or 0),
            oldest_ready_age_ms=age if isinstance(age, int) else None,
            config=dict(r.get("config") or {}),
            paused=paused,
            rate_limited_until_ms=_opt_num(r, "rate_limited_until_ms"),
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
