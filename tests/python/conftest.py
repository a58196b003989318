"""Fixtures for the Python SDK compatibility tests: real synap-server processes.

Each server fixture starts `synap-server --bind 127.0.0.1:0 --rpc-bind 127.0.0.1:0
--in-memory`, reads the bound addresses from its `SynapRPC accepting connections rpc=…` and
`synap-server listening addr=…` log lines, waits for `GET /health`, and at the end stops
exactly that process: SIGTERM, a bounded wait, then SIGKILL of the same PID if it is still
running. `server_url` and `auth_server_url` are parameterized by transport, so every test that
takes one runs over `http://` and over `synap://` (SynapRPC), and once more over `http://` against a follower of
a 3-node cluster (`cluster_follower`), which forwards to the leader.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "synap-server"

# The API key given to the auth fixture's server.
API_KEY = "py-compat-secret-key"

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LISTEN = re.compile(r"synap-server listening addr=(\S+)")
_RPC = re.compile(r"SynapRPC accepting connections rpc=(\S+)")


def _server_binary() -> Path:
    path = Path(os.environ.get("SYNAP_SERVER_BIN") or DEFAULT_BIN)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"synap-server binary not found or not executable at {path}; "
            "build it with `cargo build -p synap-server` or set SYNAP_SERVER_BIN",
            pytrace=False,
        )
    return path


class ServerProcess:
    """One running synap-server whose stderr goes to a temporary file."""

    def __init__(
        self, extra_env: dict[str, str] | None = None, extra_args: list[str] | None = None
    ) -> None:
        binary = _server_binary()
        env = dict(os.environ)
        env.pop("SYNAP_API_KEY", None)
        # The listening line is logged at info level; make sure it is not filtered out.
        env["RUST_LOG"] = "info"
        env["NO_COLOR"] = "1"
        if extra_env:
            env.update(extra_env)
        self._log = tempfile.NamedTemporaryFile(
            prefix="synap-server-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)
        self.proc = subprocess.Popen(
            [str(binary), "--bind", "127.0.0.1:0", "--rpc-bind", "127.0.0.1:0", "--in-memory",
             *(extra_args or [])],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=env,
        )
        self.base_url = ""
        self.rpc_url = ""

    def log_text(self) -> str:
        try:
            return _ANSI.sub("", self.log_path.read_text(errors="replace"))
        except OSError:
            return ""

    def wait_ready(self) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        addr = None
        while addr is None:
            match = _LISTEN.search(self.log_text())
            if match:
                addr = match.group(1)
                break
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"synap-server exited with status {self.proc.returncode} before "
                    f"listening; log:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"synap-server did not log its address; log:\n{self.log_text()}")
            time.sleep(0.05)
        self.base_url = f"http://{addr}"
        # Logged before the HTTP address, so present once that one is.
        rpc = _RPC.search(self.log_text())
        if rpc is None:
            raise RuntimeError(f"synap-server did not log its SynapRPC address:\n{self.log_text()}")
        self.rpc_url = f"synap://{rpc.group(1)}"
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self.base_url
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"synap-server exited with status {self.proc.returncode}; "
                    f"log:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"GET /health never answered 200; log:\n{self.log_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc = self.proc
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=STOP_TIMEOUT_S)
        self._log.close()
        try:
            self.log_path.unlink()
        except OSError:
            pass


def _run_server(extra_env: dict[str, str] | None = None, extra_args: list[str] | None = None):
    server = ServerProcess(extra_env, extra_args)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _url(server: ServerProcess, transport: str) -> str:
    return server.rpc_url if transport == "synap" else server.base_url


@pytest.fixture(scope="session")
def plain_server():
    """A synap-server without auth."""
    yield from _run_server()


@pytest.fixture(scope="session")
def auth_server():
    """A synap-server started with `SYNAP_API_KEY` set to API_KEY."""
    yield from _run_server({"SYNAP_API_KEY": API_KEY})


# The user of the users fixture's server.
USER = "alice"
PASSWORD = "py-compat-s3cret"


def _hash_password(password: str) -> str:
    done = subprocess.run(
        [str(_server_binary()), "hash-password"],
        input=f"{password}\n",
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="session")
def users_server(tmp_path_factory):
    """A synap-server whose config file has one user, USER with PASSWORD (no API keys)."""
    config = tmp_path_factory.mktemp("users") / "synap.yaml"
    config.write_text(
        "server:\n  users:\n"
        f"    - name: {USER}\n      password_hash: '{_hash_password(PASSWORD)}'\n"
    )
    yield from _run_server(extra_args=["--config", str(config)])


@pytest.fixture
def users_server_url(users_server, transport):
    """The URL of the server with a user, over `transport`."""
    return _url(users_server, transport)


@pytest.fixture(params=["http", "synap"])
def transport(request) -> str:
    """The SDK transport under test: `http` or `synap` (SynapRPC)."""
    return request.param


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClusterProcesses:
    """Three synap-server nodes of one Raft cluster on loopback (docs/cluster.md)."""

    def __init__(self, root: Path) -> None:
        self.nodes = []
        lines = ["cluster:", '  secret: "py-compat-cluster"', "  nodes:"]
        for node_id in (1, 2, 3):
            http, rpc, raft = _free_port(), _free_port(), _free_port()
            self.nodes.append((node_id, f"http://127.0.0.1:{http}"))
            lines.append(
                f'    - {{ id: {node_id}, raft: "127.0.0.1:{raft}", '
                f'http: "127.0.0.1:{http}", rpc: "127.0.0.1:{rpc}" }}'
            )
        config = root / "cluster.yaml"
        config.write_text("\n".join(lines) + "\n")
        self.procs: list[subprocess.Popen] = []
        env = dict(os.environ)
        env.pop("SYNAP_API_KEY", None)
        env.pop("SYNAP_CLUSTER_SECRET", None)
        for node_id, _ in self.nodes:
            log = open(root / f"node{node_id}.log", "wb")
            self.procs.append(
                subprocess.Popen(
                    [str(_server_binary()), "--config", str(config), "--node-id", str(node_id),
                     "--data-dir", str(root / f"node{node_id}")],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
                )
            )
            log.close()
        self.root = root

    def _view(self, url: str) -> dict | None:
        try:
            with urllib.request.urlopen(f"{url}/cluster", timeout=2) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def follower_url(self) -> str:
        """A follower's HTTP URL, once every node names the same leader."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            views = [self._view(url) for _, url in self.nodes]
            leaders = {(v.get("leader") or {}).get("id") for v in views if v}
            if all(views) and len(leaders) == 1 and None not in leaders:
                for (node_id, url), view in zip(self.nodes, views):
                    if view["role"] == "follower":
                        return url
            if any(proc.poll() is not None for proc in self.procs):
                raise RuntimeError(f"a cluster node exited; logs:\n{self._logs()}")
            time.sleep(0.1)
        raise RuntimeError(f"the cluster elected no leader; logs:\n{self._logs()}")

    def _logs(self) -> str:
        logs = "\n".join(
            (self.root / f"node{i}.log").read_text(errors="replace") for i, _ in self.nodes
        )
        return _ANSI.sub("", logs)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def cluster_follower(tmp_path_factory):
    """The HTTP URL of a follower of a 3-node cluster: it forwards every request to the
    leader, so the SDK works unchanged (DESIGN.md §11)."""
    cluster = ClusterProcesses(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.follower_url()
    finally:
        cluster.stop()


@pytest.fixture(params=["http", "synap", "follower"])
def server_url(request):
    """`http://127.0.0.1:PORT` or `synap://127.0.0.1:PORT` of the server without auth, or
    `http://…` of a cluster follower."""
    if request.param == "follower":
        return request.getfixturevalue("cluster_follower")
    return _url(request.getfixturevalue("plain_server"), request.param)


@pytest.fixture
def http_url(plain_server):
    """`http://127.0.0.1:PORT` of the server without auth, for HTTP-only SDK calls."""
    return plain_server.base_url


@pytest.fixture
def auth_server_url(auth_server, transport):
    """The URL of the server with an API key, over `transport`."""
    return _url(auth_server, transport)


@pytest.fixture
def auth_http_url(auth_server):
    """`http://…` of the server with an API key."""
    return auth_server.base_url


@pytest.fixture(scope="session")
def api_key() -> str:
    return API_KEY
