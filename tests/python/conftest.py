"""Fixtures for the Python SDK compatibility tests: real synap-server processes.

Each server fixture starts `synap-server --bind 127.0.0.1:0 --rpc-bind 127.0.0.1:0
--in-memory`, reads the bound addresses from its `SynapRPC accepting connections rpc=…` and
`synap-server listening addr=…` log lines, waits for `GET /health`, and at the end stops
exactly that process: SIGTERM, a bounded wait, then SIGKILL of the same PID if it is still
running. `server_url` and `auth_server_url` are parameterized by transport, so every test that
takes one runs over `http://` and over `synap://` (SynapRPC).
"""

from __future__ import annotations

import os
import re
import signal
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


@pytest.fixture
def server_url(plain_server, transport):
    """`http://127.0.0.1:PORT` or `synap://127.0.0.1:PORT` of the server without auth."""
    return _url(plain_server, transport)


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
