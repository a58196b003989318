"""Key-value operations: ``client.kv``. TTLs are seconds."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from ._transport import Transport, seg
from ._types import KvGetResult


class KvApi:
    """KV operations over the server's REST routes."""

    def __init__(self, t: Transport) -> None:
        self._t = t

    async def set(self, key: str, value: Any, ttl: Optional[float] = None) -> None:
        """Stores any JSON value, optionally expiring after ``ttl`` seconds."""
        body: Dict[str, Any] = {"key": key, "value": value}
        if ttl is not None:
            body["ttl"] = ttl
        await self._t.request("POST", "/kv/set", body)

    async def get(self, key: str) -> KvGetResult:
        """``KvGetResult(found=True, value, ttl)`` or ``KvGetResult(found=False)``."""
        r = await self._t.request("GET", f"/kv/get/{seg(key)}")
        if r.get("found") is not True:
            return KvGetResult(found=False)
        ttl = r.get("ttl")
        return KvGetResult(True, r.get("value"), ttl if isinstance(ttl, (int, float)) else None)

    async def delete(self, key: str) -> bool:
        """Deletes a key; False if it did not exist."""
        return bool((await self._t.request("DELETE", f"/kv/del/{seg(key)}"))["deleted"])

    async def exists(self, key: str) -> bool:
        """Whether the key exists."""
        return bool((await self._t.request("GET", f"/kv/exists/{seg(key)}"))["exists"])

    async def ttl(self, key: str) -> Optional[float]:
        """Seconds left, or None without expiry; a missing key raises ``key_not_found``."""
        v = (await self._t.request("GET", f"/kv/ttl/{seg(key)}")).get("ttl")
        return v if isinstance(v, (int, float)) else None

    async def expire(self, key: str, ttl: float) -> bool:
        """Sets a key's TTL; False if the key does not exist."""
        return bool((await self._t.request("POST", "/kv/expire", {"key": key, "ttl": ttl}))["updated"])

    async def persist(self, key: str) -> bool:
        """Removes a key's TTL; False if there was none or no key."""
        return bool((await self._t.request("POST", "/kv/persist", {"key": key}))["updated"])

    async def incr(self, key: str, by: int = 1) -> int:
        """Adds ``by`` to an integer value (a missing key counts as 0); returns the new value.
        Never resent after an unanswered attempt (it could add twice)."""
        r = await self._t.request("POST", "/kv/incr", {"key": key, "by": by}, once=True)
        return int(r["value"])

    async def decr(self, key: str, by: int = 1) -> int:
        """Subtracts ``by``."""
        return await self.incr(key, -by)

    async def keys(self, prefix: str = "", limit: Optional[int] = None) -> List[str]:
        """Keys starting with ``prefix``, sorted."""
        params: Dict[str, Any] = {"prefix": prefix}
        if limit is not None:
            params["limit"] = limit
        return list((await self._t.request("GET", "/kv/keys", params=params))["keys"])

    async def mget(self, keys: Sequence[str]) -> List[Any]:
        """Values of several keys, None for missing ones."""
        return list((await self._t.request("POST", "/kv/mget", {"keys": list(keys)}))["values"])

    async def mset(self, entries: Sequence[Dict[str, Any]]) -> None:
        """Stores several ``{"key", "value", "ttl"?}`` entries (all validated first)."""
        await self._t.request("POST", "/kv/mset", {"entries": list(entries)})

    async def stats(self) -> Dict[str, Any]:
        """Store statistics (``total_keys``, ``hits``, ``hit_rate``, ...)."""
        return dict(await self._t.request("GET", "/kv/stats"))
