"""HTTP to one Synap server (httpx), with refusals turned into SynapError."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional
from urllib.parse import quote, urlencode, urlsplit

import httpx

from ._errors import SynapError, refusal


def seg(s: str) -> str:
    """One path segment, percent-encoded so any queue name or key travels intact."""
    return quote(s, safe="")


class Transport:
    """Sends JSON requests; ``timeout`` bounds each request except long-polls, which get
    their wait plus ``timeout``."""

    def __init__(self, url: str, api_key: Optional[str], timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SynapError(f"server URL must be http(s)://host[:port]: {url!r}", "invalid_argument")
        self.base_url = url.rstrip("/")
        self.api_key = api_key or None
        self.timeout = timeout
        headers = {"accept": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)

    def ws_url(self, path: str, query: Dict[str, str]) -> str:
        """The base URL with ``ws:``/``wss:`` for a WebSocket route."""
        base = "ws" + self.base_url[4:] if self.base_url.startswith("http") else self.base_url
        q = urlencode(query)
        return f"{base}{path}{'?' + q if q else ''}"

    async def request(
        self, method: str, path: str, body: Any = None, *, params: Optional[Dict[str, Any]] = None,
        wait: float = 0.0,
    ) -> Any:
        """One request; returns the decoded JSON body, raises SynapError on any refusal."""
        try:
            res = await self._http.request(
                method, path, params=params,
                content=None if body is None else json.dumps(body),
                headers=None if body is None else {"content-type": "application/json"},
                timeout=self.timeout + wait,
            )
        except httpx.HTTPError as e:
            raise SynapError(f"{method} {path}: {e!r}", "transport") from e
        if res.status_code >= 400:
            raise refusal(res.status_code, res.text)
        try:
            return res.json()
        except ValueError as e:
            raise SynapError(f"{method} {path}: answer is not JSON: {res.text[:200]}", "decode",
                             res.status_code) from e

    async def aclose(self) -> None:
        """Closes the connection pool."""
        await self._http.aclose()
