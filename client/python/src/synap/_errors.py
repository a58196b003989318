"""The one exception type of the client."""

from __future__ import annotations

import json
from typing import Optional


class SynapError(Exception):
    """A failed call.

    ``code`` is the server's machine code (``queue_not_found``, ``lease_mismatch``,
    ``unauthorized``, ...) when the server refused, or one of the client's own: ``transport``
    (no HTTP answer), ``decode`` (an answer of an unexpected shape), ``websocket`` (a
    WebSocket could not be opened), ``closed`` (a streaming connection ended) and
    ``invalid_argument`` for arguments refused before sending. ``status`` is the HTTP status,
    or 0 when there was none. ``leader`` is the leader's base URL a cluster follower named in
    a ``not_leader`` refusal. A client given several server URLs raises, once it gave up
    looking for the leader, the last error it got, its message saying so.
    """

    def __init__(self, message: str, code: str, status: int = 0,
                 leader: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.leader = leader

    def __repr__(self) -> str:
        return f"SynapError({self.message!r}, code={self.code!r}, status={self.status})"

    @property
    def is_lease_mismatch(self) -> bool:
        """True for a refused ack, nack or extend whose lease is no longer the message's."""
        return self.code == "lease_mismatch"

    @property
    def is_not_found(self) -> bool:
        """True for a 404 of any kind."""
        return self.status == 404


def refusal(status: int, text: str) -> SynapError:
    """The error for a refused request: the server's ``{error, code}`` body when it has one,
    with the leader's URL of a cluster follower's ``not_leader``."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        message = body.get("error")
        leader = body.get("leader")
        http = leader.get("http") if isinstance(leader, dict) else None
        return SynapError(message if isinstance(message, str) else body["code"], body["code"], status,
                          http if isinstance(http, str) else None)
    return SynapError(f"HTTP {status}: {text[:200]}", f"http_{status}", status)


def closed(what: str) -> SynapError:
    """The error for a streaming connection that ended while a call still needed it."""
    return SynapError(f"{what}: connection closed", "closed", 0)
