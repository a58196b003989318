"""Queue operations: ``client.queue``. Durations are seconds (fractions allowed)."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

from ._errors import SynapError
from ._failover import with_key
from ._stream import QueueStream
from ._transport import Transport, seg
from ._types import (AckBatchResult, DeadLetter, DlqPage, GroupInfo, Job, ProgressResult,
                     PublishResult, QueueMessage, QueueStats, Schedule, ScheduleSet, check_group)

#: The server's wait for ``wait_for`` without a timeout, in seconds.
DEFAULT_JOB_WAIT = 30.0

#: Most groups ``groups`` may ask for.
MAX_GROUPS_LIMIT = 1000


def publish_body(message: Any, priority: Optional[int] = None, headers: Optional[Dict[str, str]] = None,
                 delay: Optional[float] = None, ttl: Optional[float] = None,
                 max_retries: Optional[int] = None, idempotency_key: Optional[str] = None,
                 dedup: Optional[str] = None, debounce: Optional[bool] = None,
                 group: Optional[str] = None) -> Dict[str, Any]:
    """A publish body in the server's shape; absent options are left out."""
    if group is not None:
        check_group(group)
    body: Dict[str, Any] = {"message": message}
    for k, v in (("priority", priority), ("headers", headers), ("delay", delay), ("ttl", ttl),
                 ("max_retries", max_retries), ("idempotency_key", idempotency_key),
                 ("dedup", dedup), ("debounce", debounce), ("group", group)):
        if v is not None:
            body[k] = v
    return body


class QueueApi:
    """Queue operations over the server's REST routes."""

    def __init__(self, t: Transport) -> None:
        self._t = t

    async def create(self, name: str, **config: Any) -> bool:
        """Creates a queue (or sets its settings: ``max_retries``, ``ack_deadline_secs``,
        ``retry_delays``, ``max_depth``, ..., and the flow settings ``max_in_flight``,
        ``group_concurrency``, ``ordered_groups``, ``fair_groups``, ``rate_limit={"max": n,
        "per_secs": s}``, ``group_rate_limit`` and ``max_snoozes``, which apply at once); True
        if it was created."""
        r = await self._t.request("POST", f"/queue/{seg(name)}", config)
        return bool(r.get("created"))

    async def list(self) -> List[str]:
        """Names of all queues, sorted."""
        return list((await self._t.request("GET", "/queue/list"))["queues"])

    async def delete(self, name: str) -> bool:
        """Deletes a queue with its messages; False if there was none."""
        return bool((await self._t.request("DELETE", f"/queue/{seg(name)}"))["deleted"])

    async def purge(self, name: str) -> int:
        """Removes ready and delayed messages; returns how many. Never resent after an
        unanswered attempt."""
        return int((await self._t.request("POST", f"/queue/{seg(name)}/purge", once=True))["purged"])

    async def publish(self, name: str, message: Any, *, priority: Optional[int] = None,
                      headers: Optional[Dict[str, str]] = None, delay: Optional[float] = None,
                      ttl: Optional[float] = None, max_retries: Optional[int] = None,
                      idempotency_key: Optional[str] = None, dedup: Optional[str] = None,
                      debounce: Optional[bool] = None, group: Optional[str] = None) -> PublishResult:
        """Publishes one message (any JSON). A repeat of ``idempotency_key`` answers the first
        publish (``duplicate=True``) for as long as ``dedup`` says: ``"window"`` (the server's
        idempotency window, the default) or ``"until_finished"`` (while the job is unfinished).
        ``debounce=True`` with a key and a ``delay``: a publish whose key names a job still
        delayed replaces its message and restarts the delay (``replaced=True``). ``group``
        (1-255 bytes: a user, a tenant, a video) puts it under the queue's group settings.
        With several server URLs an unanswered publish is resent to the leader under the same
        key, generated when none is given."""
        body = with_key(self._t.auto_keys, publish_body(
            message, priority, headers, delay, ttl, max_retries, idempotency_key, dedup, debounce,
            group))
        # Without a key a resend could add a second message.
        once = body.get("idempotency_key") is None
        return PublishResult.parse(await self._t.request("POST", f"/queue/{seg(name)}/publish", body,
                                                         once=once))

    async def publish_batch(self, name: str, messages: Sequence[Dict[str, Any]]) -> List[PublishResult]:
        """Publishes several, all or none; each entry is ``{"message": ..., "priority": ...}``
        (each gets its own key as ``publish`` does)."""
        bodies = [with_key(self._t.auto_keys, publish_body(**m)) for m in messages]
        once = any(b.get("idempotency_key") is None for b in bodies)
        r = await self._t.request("POST", f"/queue/{seg(name)}/publish_batch", {"messages": bodies},
                                  once=once)
        return [PublishResult.parse(m) for m in r["messages"]]

    async def consume(self, name: str, *, timeout: Optional[float] = None,
                      ack_deadline: Optional[float] = None,
                      consumer_id: Optional[str] = None) -> Optional[QueueMessage]:
        """Takes one message, waiting up to ``timeout`` s; None when the wait ends empty."""
        got = await self.consume_batch(name, 1, timeout=timeout, ack_deadline=ack_deadline,
                                       consumer_id=consumer_id)
        return got[0] if got else None

    async def consume_batch(self, name: str, max_messages: int, *, timeout: Optional[float] = None,
                            ack_deadline: Optional[float] = None,
                            consumer_id: Optional[str] = None) -> List[QueueMessage]:
        """Takes up to ``max_messages`` (1-100); empty when the wait ends with none."""
        body: Dict[str, Any] = {"max_messages": max_messages}
        for k, v in (("timeout", timeout), ("ack_deadline", ack_deadline), ("consumer_id", consumer_id)):
            if v is not None:
                body[k] = v
        r = await self._t.request("POST", f"/queue/{seg(name)}/consume", body, wait=float(timeout or 0))
        return [QueueMessage.parse(m) for m in r["messages"]]

    async def ack(self, name: str, message_id: str, lease: Optional[int] = None, *,
                  result: Any = None) -> None:
        """Acks a message; with ``lease``, a stale delivery's ack is refused (lease_mismatch).
        A ``result`` (any JSON, up to the queue's ``max_result_bytes``) is kept with the
        completed job for ``job`` and ``wait_for``. An ack resent after a failover that finds
        the message gone (``message_not_found``) counts as done: its first attempt acked it."""
        body: Dict[str, Any] = {"message_id": message_id}
        if lease is not None:
            body["lease"] = lease
        if result is not None:
            body["result"] = result
        await self._t.request("POST", f"/queue/{seg(name)}/ack", body, done_if=("message_not_found",))

    async def job(self, name: str, message_id: str) -> Job:
        """A job as it is now; 404 ``message_not_found`` once a finished job is no longer kept."""
        return Job.parse(await self._t.request("GET", f"/queue/{seg(name)}/messages/{seg(message_id)}"))

    async def wait_for(self, name: str, message_id: str, timeout: Optional[float] = None) -> Job:
        """Waits up to ``timeout`` s (default 30, capped by the server) for a job to finish
        (completed, dead-lettered or cancelled); answers it then, or as it is when the wait
        ends (see ``Job.finished``)."""
        params = None if timeout is None else {"timeout": timeout}
        wait = DEFAULT_JOB_WAIT if timeout is None else float(timeout)
        r = await self._t.request("GET", f"/queue/{seg(name)}/messages/{seg(message_id)}/wait",
                                  params=params, wait=wait)
        return Job.parse(r)

    async def progress(self, name: str, message_id: str, progress: Any, *,
                       lease: Optional[int] = None, extend: Optional[float] = None) -> ProgressResult:
        """Reports progress (any JSON up to 4 KiB) on a leased job; ``extend`` (s) also extends
        its lease. ``cancelled`` in the answer says the job was cancelled: stop and ack or
        nack it, which settles it as cancelled."""
        body: Dict[str, Any] = {"message_id": message_id, "progress": progress}
        for k, v in (("lease", lease), ("extend", extend)):
            if v is not None:
                body[k] = v
        r = await self._t.request("POST", f"/queue/{seg(name)}/progress", body)
        return ProgressResult(r.get("cancelled") is True, int(r["lease_deadline"]))

    async def cancel(self, name: str, message_id: str) -> str:
        """Cancels a job; returns ``cancelled`` (a ready or delayed job, at once) or
        ``in_flight`` (marked: it settles as cancelled when its delivery ends). A finished job
        is refused with 409 ``already_finished``."""
        body = {"message_id": message_id}
        return str((await self._t.request("POST", f"/queue/{seg(name)}/cancel", body))["state"])

    async def schedule_put(self, name: str, schedule_id: str, message: Any, *,
                           every_secs: Optional[float] = None, cron: Optional[str] = None,
                           priority: Optional[int] = None, headers: Optional[Dict[str, str]] = None,
                           start_at: Optional[int] = None, end_at: Optional[int] = None,
                           max_runs: Optional[int] = None) -> ScheduleSet:
        """Creates or replaces a schedule publishing ``message``: exactly one of ``every_secs``
        and ``cron`` (5 fields, UTC); ``start_at``/``end_at`` in Unix ms. A replaced schedule
        keeps its runs (``created=False``)."""
        body: Dict[str, Any] = {"message": message}
        for k, v in (("every_secs", every_secs), ("cron", cron), ("priority", priority),
                     ("headers", headers), ("start_at", start_at), ("end_at", end_at),
                     ("max_runs", max_runs)):
            if v is not None:
                body[k] = v
        r = await self._t.request("PUT", f"/queue/{seg(name)}/schedules/{seg(schedule_id)}", body)
        nxt = r.get("next_run_at")
        return ScheduleSet(str(r["id"]), int(nxt) if isinstance(nxt, int) else None,
                           r.get("created") is True)

    async def schedule_list(self, name: str) -> List[Schedule]:
        """The queue's schedules by id, with ``next_run_at``, ``last_run_at`` and ``runs``."""
        r = await self._t.request("GET", f"/queue/{seg(name)}/schedules")
        return [Schedule.parse(x) for x in r["schedules"]]

    async def schedule_delete(self, name: str, schedule_id: str) -> bool:
        """Deletes a schedule; False if there was none."""
        path = f"/queue/{seg(name)}/schedules/{seg(schedule_id)}"
        return bool((await self._t.request("DELETE", path))["deleted"])

    async def schedule_run(self, name: str, schedule_id: str) -> PublishResult:
        """Publishes one run of the schedule now (never resent after an unanswered attempt)."""
        path = f"/queue/{seg(name)}/schedules/{seg(schedule_id)}/run"
        return PublishResult.parse(await self._t.request("POST", path, once=True))

    async def ack_batch(self, name: str, acks: Sequence[Dict[str, Any]]) -> AckBatchResult:
        """Acks several (``{"message_id", "lease"?}`` each); refused ones come back with codes."""
        r = await self._t.request("POST", f"/queue/{seg(name)}/ack_batch", {"acks": list(acks)})
        return AckBatchResult(int(r["acked"]), [dict(f) for f in r["failed"]])

    async def nack(self, name: str, message_id: str, requeue: bool = True, *,
                   delay: Optional[float] = None, error: Optional[str] = None,
                   lease: Optional[int] = None, snooze: bool = False) -> str:
        """Gives a message back: retried when ``requeue`` (default), else dead-lettered.
        With ``snooze=True`` it comes back after ``delay`` s (at once without one) without
        spending an attempt; past the queue's ``max_snoozes`` it is dead-lettered
        (``snoozed_out``). Returns the action: ``requeued``, ``delayed``, ``dead_lettered``,
        ``snoozed`` or ``cancelled`` (a job cancelled while in flight). Resent after an
        unanswered attempt only with ``lease`` (without one it could settle a later delivery);
        a resend whose first attempt landed is refused with ``lease_mismatch``."""
        if snooze and not requeue:
            raise SynapError("a snooze brings the message back: it needs requeue=True",
                             "invalid_argument")
        body: Dict[str, Any] = {"message_id": message_id, "requeue": requeue}
        for k, v in (("delay", delay), ("error", error), ("lease", lease)):
            if v is not None:
                body[k] = v
        if snooze:
            body["snooze"] = True
        r = await self._t.request("POST", f"/queue/{seg(name)}/nack", body, once=lease is None)
        return str(r["action"])

    async def extend(self, name: str, message_id: str, ack_deadline: float,
                     lease: Optional[int] = None) -> int:
        """Moves a lease's deadline to now + ``ack_deadline`` s; returns it (Unix ms)."""
        body: Dict[str, Any] = {"message_id": message_id, "ack_deadline": ack_deadline}
        if lease is not None:
            body["lease"] = lease
        return int((await self._t.request("POST", f"/queue/{seg(name)}/extend", body))["lease_deadline"])

    async def stats(self, name: str) -> QueueStats:
        """The queue's statistics."""
        return QueueStats.parse(await self._t.request("GET", f"/queue/{seg(name)}/stats"))

    async def dlq_list(self, name: str, offset: int = 0, limit: int = 100) -> DlqPage:
        """A page of the dead-letter queue, oldest first."""
        r = await self._t.request("GET", f"/queue/{seg(name)}/dlq", params={"offset": offset, "limit": limit})
        return DlqPage(int(r["total"]), [DeadLetter.parse(m) for m in r["messages"]])

    async def dlq_retry(self, name: str, message_ids: Optional[Sequence[str]] = None) -> int:
        """Puts dead letters back (all without ``message_ids``); returns how many. Never
        resent after an unanswered attempt."""
        body = {} if message_ids is None else {"message_ids": list(message_ids)}
        r = await self._t.request("POST", f"/queue/{seg(name)}/dlq/retry", body, once=True)
        return int(r["retried"])

    async def dlq_purge(self, name: str) -> int:
        """Empties the dead-letter queue; returns how many were removed. Never resent after an
        unanswered attempt."""
        return int((await self._t.request("POST", f"/queue/{seg(name)}/dlq/purge", once=True))["purged"])

    async def pause(self, name: str) -> bool:
        """Pauses the queue: it goes on taking publishes, acks and nacks and delivers nothing
        until ``resume``. Returns whether it is paused (True); 404 ``queue_not_found`` for an
        unknown queue."""
        return (await self._t.request("POST", f"/queue/{seg(name)}/pause")).get("paused") is True

    async def resume(self, name: str) -> bool:
        """Resumes a paused queue (its waiting consumers are served at once); returns whether
        it is paused (False)."""
        return (await self._t.request("POST", f"/queue/{seg(name)}/resume")).get("paused") is True

    async def rate_limit(self, name: str, for_secs: float) -> int:
        """No deliveries from the queue for ``for_secs`` s (more than 0), what a worker does
        when its downstream answered 429. A later call can lengthen the pause, never shorten
        it. Returns the time deliveries resume, Unix ms."""
        if (not isinstance(for_secs, (int, float)) or isinstance(for_secs, bool)
                or not math.isfinite(for_secs) or for_secs <= 0):
            raise SynapError("for_secs must be a number of seconds above 0", "invalid_argument")
        r = await self._t.request("POST", f"/queue/{seg(name)}/rate_limit", {"for_secs": for_secs})
        return int(r["rate_limited_until_ms"])

    async def groups(self, name: str, limit: Optional[int] = None) -> List[GroupInfo]:
        """The groups holding messages (ready, delayed or in flight), largest first, then by
        name; at most ``limit`` (1-1000, the server's 100 when None)."""
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                  or not 1 <= limit <= MAX_GROUPS_LIMIT):
            raise SynapError(f"limit must be 1-{MAX_GROUPS_LIMIT}", "invalid_argument")
        params = None if limit is None else {"limit": limit}
        r = await self._t.request("GET", f"/queue/{seg(name)}/groups", params=params)
        return [GroupInfo.parse(g) for g in r["groups"]]

    async def stream(self, name: str, *, consumer_id: Optional[str] = None,
                     prefetch: Optional[int] = None,
                     ack_deadline: Optional[float] = None) -> QueueStream:
        """Opens a streaming consumer (WebSocket); see QueueStream."""
        if prefetch is not None and not 0 <= prefetch <= 1000:
            raise SynapError("prefetch must be 0-1000", "invalid_argument")
        query: Dict[str, str] = {}
        for k, v in (("consumer_id", consumer_id), ("prefetch", prefetch), ("ack_deadline", ack_deadline)):
            if v is not None:
                query[k] = str(v)
        return await QueueStream.open(self._t, name, query)
