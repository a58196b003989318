"""AsyncSynapClient: the asyncio client."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

from ._flows import FlowsApi
from ._kv import KvApi
from ._pubsub import PubSubApi
from ._queue import QueueApi
from ._failover import DEFAULT_FAILOVER_SECS
from ._transport import Transport


class AsyncSynapClient:
    """A client for one Synap server, or a cluster: ``queue``, ``kv``, ``pubsub`` and
    ``flows`` operations over the REST routes (httpx) and WebSockets (websockets). Creating it
    makes no network call; ``timeout`` (s) bounds each request, long-polls get their wait on
    top.

    ``url`` may be a list of a cluster's node URLs (at most 32): the client then moves to the
    leader on a connection error, an unanswered request or a ``not_leader``/``no_leader``
    refusal, for up to ``failover_timeout`` seconds after a failure; resends an unanswered
    publish under its idempotency key (generated for a keyless publish unless
    ``auto_idempotency_key=False``); and reconnects queue streams."""

    def __init__(self, url: Union[str, Sequence[str]] = "http://localhost:15500",
                 api_key: Optional[str] = None, timeout: float = 30.0,
                 failover_timeout: float = DEFAULT_FAILOVER_SECS,
                 auto_idempotency_key: bool = True) -> None:
        self._t = Transport(url, api_key, timeout, failover_timeout, auto_idempotency_key)
        #: Queue operations.
        self.queue = QueueApi(self._t)
        #: Key-value operations.
        self.kv = KvApi(self._t)
        #: Pub/sub operations.
        self.pubsub = PubSubApi(self._t)
        #: Flows: trees of jobs in which each parent waits for its children.
        self.flows = FlowsApi(self._t)

    @property
    def url(self) -> str:
        """The base URL of the server calls go to now (with several, the last known leader)."""
        return self._t.base_url

    @property
    def urls(self) -> Tuple[str, ...]:
        """Every base URL the client was given, in order."""
        return self._t.targets.urls

    async def health(self) -> Dict[str, Any]:
        """``GET /health``: ``{"status": "healthy", "service", "version"}``."""
        return dict(await self._t.request("GET", "/health"))

    async def aclose(self) -> None:
        """Closes the HTTP connection pool."""
        await self._t.aclose()

    async def __aenter__(self) -> "AsyncSynapClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
