"""Following a cluster's leader across several server URLs."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union
from urllib.parse import urlsplit

from ._errors import SynapError

T = TypeVar("T")

#: Most server URLs one client takes.
MAX_URLS = 32
#: How long a call keeps looking for the leader after a failure, by default (seconds).
DEFAULT_FAILOVER_SECS = 10.0
#: The first wait between attempts after a miss; it doubles up to ``MAX_BACKOFF``.
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 1.0
#: Server codes that say "not here, try the leader": a follower's or a stopping node's 503.
MOVE_CODES = frozenset({"not_leader", "no_leader", "shutting_down", "unavailable"})


def base_url(url: str) -> str:
    """A base URL: http(s)://host[:port][/path], without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SynapError(f"server URL must be http(s)://host[:port]: {url!r}", "invalid_argument")
    return url.rstrip("/")


def is_move(e: SynapError) -> bool:
    """A refusal saying the call belongs on the leader (a 503, or a WebSocket error frame)."""
    return e.code in MOVE_CODES and e.status in (0, 503)


def mark_refused(e: SynapError) -> SynapError:
    """Marks ``e`` as a connection refused before anything was sent."""
    e.refused = True  # type: ignore[attr-defined]
    return e


def was_refused(e: SynapError) -> bool:
    """Whether ``e`` is a connection refused before anything was sent (safe to resend)."""
    return bool(getattr(e, "refused", False))


def _origin(url: str) -> Tuple[str, str]:
    p = urlsplit(url)
    return (p.scheme, p.netloc.lower())


class Targets:
    """The servers a client may talk to and the one it talks to now.

    With one URL every call goes there and a failure is the caller's, as with a single
    server. With several, a call that fails on a connection error or a 503
    ``not_leader``/``no_leader`` moves on to the leader the refusal names, else to the next
    URL, and tries again with a bounded backoff until ``failover_timeout`` seconds after its
    first failure. REST calls and streams of one client share it, so one call's move takes
    the others along.
    """

    def __init__(self, url: Union[str, Sequence[str]], failover_timeout: float) -> None:
        given: List[str] = [url] if isinstance(url, str) else list(url)
        if not given:
            raise SynapError("url: give at least one server URL", "invalid_argument")
        if len(given) > MAX_URLS:
            raise SynapError(f"url: at most {MAX_URLS} server URLs", "invalid_argument")
        urls: List[str] = []
        for u in given:
            if not isinstance(u, str):
                raise SynapError(f"url: not a string: {u!r}", "invalid_argument")
            b = base_url(u)
            if b not in urls:
                urls.append(b)
        if not 0 <= failover_timeout <= 86_400:
            raise SynapError("failover_timeout must be 0-86400 seconds", "invalid_argument")
        #: The configured base URLs, in the order given.
        self.urls: Tuple[str, ...] = tuple(urls)
        self.failover_timeout = float(failover_timeout)
        self._current = urls[0]

    @property
    def multi(self) -> bool:
        """Whether there are several servers to move between."""
        return len(self.urls) > 1

    @property
    def base(self) -> str:
        """The base URL calls go to now."""
        return self._current

    def moved(self, start: str, e: SynapError) -> None:
        """After a call to ``start`` failed with ``e``: go to the leader ``e`` names, else to
        the URL after ``start``; nothing if another call moved on already."""
        if start != self._current:
            return
        leader = e.leader
        if leader:
            try:
                leader = base_url(leader)
            except SynapError:
                leader = None
        if leader and leader != start:
            same = [u for u in self.urls if _origin(u) == _origin(leader)]
            self._current = same[0] if same else leader
            return
        i = self.urls.index(start) if start in self.urls else -1
        self._current = self.urls[(i + 1) % len(self.urls)]

    async def run(self, what: str, attempt: Callable[[str], Awaitable[T]],
                  retry: Callable[[SynapError], bool]) -> T:
        """Runs ``attempt(base)`` until it succeeds. With several URLs an error ``retry``
        accepts moves on (see ``moved``) and tries again: at once the first time, then after
        50 ms doubling to 1 s, until ``failover_timeout`` after the first failure; then the
        last error is raised with a message saying so."""
        deadline: Optional[float] = None
        failures = 0
        while True:
            start = self._current
            try:
                return await attempt(start)
            except SynapError as e:
                if not self.multi or not retry(e):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.failover_timeout
                self.moved(start, e)
                failures += 1
                wait = 0.0 if failures == 1 else min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (failures - 2))
                if now + wait > deadline:
                    raise SynapError(
                        f"{what}: no server of {', '.join(self.urls)} answered as the leader "
                        f"within {self.failover_timeout:g} s; last error: {e.message}",
                        e.code, e.status, e.leader) from e
                if wait:
                    await asyncio.sleep(wait)


def new_idempotency_key() -> str:
    """A random idempotency key (a UUID v4)."""
    return str(uuid.uuid4())


def with_key(auto: bool, body: Dict[str, Any]) -> Dict[str, Any]:
    """A publish body with a generated ``idempotency_key`` when the client may resend it
    (``auto``: several URLs) and it has none (nor ``debounce``, which names a job by its own
    key)."""
    if not auto or body.get("idempotency_key") is not None or body.get("debounce") is not None:
        return body
    return {**body, "idempotency_key": new_idempotency_key()}
