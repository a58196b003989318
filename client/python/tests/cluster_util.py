"""A cluster of real synap-server processes on loopback for the failover tests.

``Cluster(n)`` writes a ``cluster:`` config with free ports (picked by binding port 0 and
releasing it; if a node then cannot bind, the whole cluster starts again on new ports),
starts one process per node with its own data directory, and waits until ``GET /cluster``
on every live node names the same leader. ``kill(id)`` sends SIGKILL to that node's PID;
``stop()`` ends every process still running by its PID (SIGTERM, a bounded wait, SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[3]


def server_binary() -> Path:
    """The binary the other tests use: SYNAP_SERVER_BIN, else target/debug or target/release."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
    for p in (os.environ.get("SYNAP_SERVER_BIN"), target / "debug" / "synap-server",
              target / "release" / "synap-server"):
        if p and Path(p).is_file():
            return Path(p)
    raise RuntimeError("synap-server not built (cargo build -p synap-server) and SYNAP_SERVER_BIN unset")


def free_port() -> int:
    """A loopback port free now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> Optional[Dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            body = json.loads(r.read())
            return body if isinstance(body, dict) else None
    except (OSError, ValueError):
        return None


class Node:
    """One node: its id, HTTP base URL, data directory and process."""

    def __init__(self, node_id: int, root: Path) -> None:
        self.id = node_id
        self.http = f"127.0.0.1:{free_port()}"
        self.raft = f"127.0.0.1:{free_port()}"
        self.url = f"http://{self.http}"
        self.data_dir = root / f"node{node_id}"
        self.log_path = root / f"node{node_id}.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Cluster:
    """``n`` nodes, started and with a leader elected when the constructor returns."""

    def __init__(self, n: int = 3) -> None:
        for _ in range(5):
            self._dir = tempfile.TemporaryDirectory(prefix="synap-py-cluster-")
            root = Path(self._dir.name)
            self.nodes = [Node(i, root) for i in range(1, n + 1)]
            lines = [f'    - {{ id: {x.id}, raft: "{x.raft}", http: "{x.http}" }}' for x in self.nodes]
            # A secret of its own: nodes of an earlier cluster still dialling a port this one
            # reuses are refused.
            self.config = root / "cluster.yaml"
            self.config.write_text(
                f'cluster:\n  secret: "{uuid.uuid4()}"\n  tick_ms: 50\n  nodes:\n' + "\n".join(lines) + "\n")
            try:
                for node in self.nodes:
                    self._start(node)
            except _AddrInUse:
                self.stop()
                continue
            except BaseException:
                self.stop()
                raise
            try:
                self.leader()
            except BaseException:
                self.stop()
                raise
            return
        raise RuntimeError("could not find free ports for the cluster in 5 attempts")

    @property
    def urls(self) -> List[str]:
        return [x.url for x in self.nodes]

    def _start(self, node: Node) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("SYNAP_API_KEY", "SYNAP_CLUSTER_SECRET")}
        env.update({"RUST_LOG": "info", "NO_COLOR": "1"})
        args = [str(server_binary()), "--config", str(self.config), "--node-id", str(node.id),
                "--data-dir", str(node.data_dir), "--no-rpc", "--fsync", "always"]
        with open(node.log_path, "wb") as log:
            node.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=log, env=env)
        deadline = time.monotonic() + 60
        while "synap-server listening" not in node.log():
            if node.proc.poll() is not None:
                if "in use" in node.log():
                    raise _AddrInUse()
                raise RuntimeError(f"node {node.id} exited before listening:\n{node.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {node.id} did not start:\n{node.log()}")
            time.sleep(0.05)

    def leader(self, timeout: float = 30.0) -> int:
        """The id of the leader every live node names, waiting for one."""
        deadline = time.monotonic() + timeout
        while True:
            views = [_get_json(f"{x.url}/cluster") for x in self.nodes if x.alive]
            lead = next((v for v in views if v and v.get("role") == "leader"), None)
            if lead and all(v and (v.get("leader") or {}).get("id") == lead["node_id"] for v in views):
                return int(lead["node_id"])
            if time.monotonic() > deadline:
                raise RuntimeError(f"no leader within {timeout} s: {views}\n{self.logs()}")
            time.sleep(0.05)

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    def others(self, node_id: int) -> List[Node]:
        """The live nodes other than ``node_id``."""
        return [x for x in self.nodes if x.id != node_id and x.alive]

    def kill(self, node_id: int) -> None:
        """SIGKILL to node ``node_id``'s PID, and reaps it."""
        node = self.node(node_id)
        if node.proc is not None and node.alive:
            os.kill(node.proc.pid, signal.SIGKILL)
            node.proc.wait(timeout=15)

    def logs(self) -> str:
        return "\n".join(f"--- node {x.id}\n{x.log()[-4000:]}" for x in self.nodes)

    def stop(self) -> None:
        """Stops every node still running, by its PID, and removes the data."""
        for x in self.nodes:
            if x.proc is not None and x.alive:
                os.kill(x.proc.pid, signal.SIGTERM)
        for x in self.nodes:
            if x.proc is None:
                continue
            try:
                x.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(x.proc.pid, signal.SIGKILL)
                x.proc.wait(timeout=15)
        self._dir.cleanup()


class _AddrInUse(Exception):
    """A node could not bind a port picked for it: start the cluster again."""
