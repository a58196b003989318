"""HTTP to Synap (httpx), with refusals turned into SynapError and, given several server
URLs, the cluster's leader followed."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Sequence, Union
from urllib.parse import quote, urlencode

import httpx

from ._errors import SynapError, refusal
from ._failover import DEFAULT_FAILOVER_SECS, Targets, is_move, mark_refused, was_refused


def seg(s: str) -> str:
    """One path segment, percent-encoded so any queue name or key travels intact."""
    return quote(s, safe="")


class Transport:
    """Sends JSON requests; ``timeout`` bounds each attempt except long-polls, which get
    their wait plus ``timeout``. With several server URLs it follows the cluster's leader
    (see ``Targets``)."""

    def __init__(self, url: Union[str, Sequence[str]], api_key: Optional[str], timeout: float,
                 failover_timeout: float = DEFAULT_FAILOVER_SECS,
                 auto_idempotency_key: bool = True) -> None:
        self.targets = Targets(url, failover_timeout)
        self.api_key = api_key or None
        self.timeout = timeout
        #: Whether publishes without an idempotency key get a generated one.
        self.auto_keys = self.targets.multi and auto_idempotency_key
        headers = {"accept": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout)

    @property
    def base_url(self) -> str:
        """The base URL requests go to now."""
        return self.targets.base

    def ws_url(self, path: str, query: Dict[str, str], base: Optional[str] = None) -> str:
        """``base`` (default: the current one) with ``ws:``/``wss:`` for a WebSocket route."""
        b = base or self.targets.base
        b = "ws" + b[4:] if b.startswith("http") else b
        q = urlencode(query)
        return f"{b}{path}{'?' + q if q else ''}"

    async def request(
        self, method: str, path: str, body: Any = None, *, params: Optional[Dict[str, Any]] = None,
        wait: float = 0.0, once: bool = False, done_if: Sequence[str] = (),
    ) -> Any:
        """One request; returns the decoded JSON body, raises SynapError on any refusal.

        With several server URLs, a connection error, an unanswered attempt (``timeout``) or a
        503 ``not_leader``/``no_leader`` moves the request to the leader and sends it again.
        ``once`` (a request that must not run twice) moves it only when its connection was
        refused. ``done_if``: codes that, answered to a resend, mean the unanswered attempt
        before did the work (the call then returns None).
        """
        tries = 0

        async def attempt(base: str) -> Any:
            nonlocal tries
            tries += 1
            try:
                return await self._send(base, method, path, body, params, wait)
            except SynapError as e:
                if tries > 1 and e.code in done_if:
                    return None
                raise

        def retry(e: SynapError) -> bool:
            if was_refused(e):
                return True
            if once:
                return False
            return e.code == "transport" or is_move(e)

        return await self.targets.run(f"{method} {path}", attempt, retry)

    async def _send(self, base: str, method: str, path: str, body: Any,
                    params: Optional[Dict[str, Any]], wait: float) -> Any:
        try:
            res = await self._http.request(
                method, f"{base}{path}", params=params,
                content=None if body is None else json.dumps(body),
                headers=None if body is None else {"content-type": "application/json"},
                timeout=self.timeout + wait,
            )
        except httpx.HTTPError as e:
            err = SynapError(f"{method} {base}{path}: {e!r}", "transport")
            if isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout)):
                mark_refused(err)
            raise err from e
        if res.status_code >= 400:
            raise refusal(res.status_code, res.text)
        try:
            return res.json()
        except ValueError as e:
            raise SynapError(f"{method} {path}: answer is not JSON: {res.text[:200]}", "decode",
                             res.status_code) from e

    async def leads(self, base: str) -> bool:
        """Whether the node at ``base`` says it is the leader (``GET /health/leader``; a
        single server always is)."""
        try:
            r = await self._http.get(f"{base}/health/leader", timeout=self.timeout)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def aclose(self) -> None:
        """Closes the connection pool."""
        await self._http.aclose()
