"""AsyncSynapClient: the asyncio client."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ._kv import KvApi
from ._pubsub import PubSubApi
from ._queue import QueueApi
from ._transport import Transport


class AsyncSynapClient:
    """A client for one Synap server: ``queue``, ``kv`` and ``pubsub`` operations over its
    REST routes (httpx) and WebSockets (websockets). Creating it makes no network call;
    ``timeout`` (s) bounds each request, long-polls get their wait on top."""

    def __init__(self, url: str = "http://localhost:15500", api_key: Optional[str] = None,
                 timeout: float = 30.0) -> None:
        self._t = Transport(url, api_key, timeout)
        #: Queue operations.
        self.queue = QueueApi(self._t)
        #: Key-value operations.
        self.kv = KvApi(self._t)
        #: Pub/sub operations.
        self.pubsub = PubSubApi(self._t)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._t.base_url

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
