"""Fixtures for the Python client's tests: real synap-server processes.

``start_server`` runs ``synap-server --bind 127.0.0.1:0 --in-memory`` (plus an optional YAML
config and environment), reads the bound address from its ``synap-server listening addr=...``
log line, waits for ``GET /health``, and ``stop`` ends exactly that process by its PID
(SIGTERM, a bounded wait, then SIGKILL).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
_LISTEN = re.compile(r"synap-server listening addr=(\S+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def server_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
    for p in (os.environ.get("SYNAP_SERVER_BIN"), target / "debug" / "synap-server",
              target / "release" / "synap-server"):
        if p and Path(p).is_file():
            return Path(p)
    pytest.fail("synap-server not built (cargo build -p synap-server) and SYNAP_SERVER_BIN unset",
                pytrace=False)


class Server:
    """One running synap-server."""

    def __init__(self, config: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="synap-py-")
        # No SynapRPC: the client speaks HTTP, and parallel servers would contend for its port.
        args = [str(server_binary()), "--bind", "127.0.0.1:0", "--in-memory", "--no-rpc"]
        if config:
            cfg = Path(self.dir.name) / "synap.yaml"
            cfg.write_text(config)
            args += ["--config", str(cfg)]
        full_env = {k: v for k, v in os.environ.items() if k != "SYNAP_API_KEY"}
        full_env.update({"RUST_LOG": "info", "NO_COLOR": "1"}, **(env or {}))
        self.log_path = Path(self.dir.name) / "server.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._log, env=full_env)
        self.url = self._wait_ready()

    def log(self) -> str:
        return _ANSI.sub("", self.log_path.read_text(errors="replace"))

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + 30
        while True:
            m = _LISTEN.search(self.log())
            if m:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"synap-server did not start:\n{self.log()}")
            time.sleep(0.05)
        url = f"http://{m.group(1)}"
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        return url
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"/health never answered:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self._log.close()
        self.dir.cleanup()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A server without auth, shared by one test module."""
    s = Server()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def start_server() -> Iterator:
    """Starts servers of the test's own (config, env); stops them after the test."""
    started = []

    def start(config: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> Server:
        s = Server(config, env)
        started.append(s)
        return s

    try:
        yield start
    finally:
        for s in started:
            s.stop()
