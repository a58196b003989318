"""Flows: ``client.flows``. A flow is a tree of jobs in which each parent waits for its
children (docs/pipelines-with-flows.md): the renditions of a video run in parallel, the
package job runs when they are all finished and receives their results, the notification
runs last."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ._errors import SynapError
from ._transport import Transport, seg
from ._types import Json, _list, _num, _obj, _opt_num, _opt_str, _str, check_group

#: Most levels of a flow (the root is the first) any server accepts: the ceiling of its
#: ``limits.max_flow_depth`` (8 by default, which the server enforces).
MAX_FLOW_DEPTH = 32
#: Most jobs in one flow any server accepts: the ceiling of its ``limits.max_flow_jobs``
#: (1,000 by default).
MAX_FLOW_JOBS = 100_000

#: The fields of a node, as the server names them.
FLOW_FIELDS = ("queue", "message", "priority", "group", "headers", "ttl", "max_retries",
               "on_child_failure", "children")
ON_CHILD_FAILURE = ("fail", "continue", "ignore")


def _invalid(path: str, what: str) -> SynapError:
    return SynapError(f"{path}{what}", "invalid_argument")


def _check_node(node: Any, path: str) -> Tuple[Dict[str, Any], Sequence[Any]]:
    """One node in the server's shape (``None`` options left out) and its children."""
    if not isinstance(node, Mapping):
        name = path[:-1] if path else "the flow"
        raise _invalid("", f"{name}: a flow node must be a dict {{queue, message, ...}}, "
                           f"got {str(node)[:50]}")
    unknown = [k for k in node if k not in FLOW_FIELDS]
    if unknown:
        raise _invalid(path, f"{unknown[0]}: unknown field (a node takes {', '.join(FLOW_FIELDS)})")
    queue = node.get("queue")
    if not isinstance(queue, str) or not queue:
        raise _invalid(path, "queue: a non-empty string is required")
    if "message" not in node:
        raise _invalid(path, "message: missing (any JSON but null)")
    for k in ("priority", "ttl", "max_retries"):
        v = node.get(k)
        # NaN and infinities are not JSON.
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v)):
            raise _invalid(path, f"{k}: must be a finite number")
    if node.get("group") is not None:
        try:
            check_group(node["group"])
        except SynapError as e:
            raise _invalid(path, e.message) from None
    mode = node.get("on_child_failure")
    if mode is not None and mode not in ON_CHILD_FAILURE:
        raise _invalid(path, f"on_child_failure: must be one of {', '.join(ON_CHILD_FAILURE)}")
    children = node.get("children")
    if children is not None and not isinstance(children, (list, tuple)):
        raise _invalid(path, "children: must be a list of nodes")
    body = {k: v for k, v in node.items() if k != "children" and (v is not None or k == "message")}
    return body, children or ()


def flow_body(tree: Any) -> Dict[str, Any]:
    """The body of ``POST /flows`` for ``tree``, checked as far as the client can: every node
    a dict with a queue and a message, known fields only, numbers finite, a group the server
    accepts, and no more levels or jobs than any server takes (``MAX_FLOW_DEPTH``,
    ``MAX_FLOW_JOBS``; this also stops a tree that contains itself). The server's own limits
    (8 levels and 1,000 jobs by default) are its to enforce. Nodes are named by their path
    (``children[1].children[0].``), as the server names them."""
    jobs = 0

    def build(node: Any, path: str, depth: int) -> Dict[str, Any]:
        nonlocal jobs
        jobs += 1
        if jobs > MAX_FLOW_JOBS:
            raise SynapError(f"limit exceeded: jobs per flow (limit {MAX_FLOW_JOBS})", "limit_exceeded")
        if depth > MAX_FLOW_DEPTH:
            raise SynapError(f"limit exceeded: flow depth (limit {MAX_FLOW_DEPTH})", "limit_exceeded")
        body, children = _check_node(node, path)
        if children:
            body["children"] = [build(c, f"{path}children[{i}].", depth + 1)
                                for i, c in enumerate(children)]
        return body

    return build(tree, "", 1)


@dataclass
class FlowJob:
    """One job ``flows.add`` made, with its children's."""

    message_id: str
    queue: str
    children: List["FlowJob"]

    @classmethod
    def parse(cls, v: Any) -> "FlowJob":
        r = _obj(v, "flow job")
        return cls(_str(r, "message_id"), _str(r, "queue"),
                   [FlowJob.parse(c) for c in _list(r, "children")])


@dataclass
class FlowCreated:
    """What ``flows.add`` answers: the flow's id and its root job with every job below it."""

    flow_id: str
    #: The root job's message id.
    message_id: str
    #: The root job's queue.
    queue: str
    children: List[FlowJob]

    @classmethod
    def parse(cls, v: Any) -> "FlowCreated":
        r = _obj(v, "flow added")
        return cls(_str(r, "flow_id"), _str(r, "message_id"), _str(r, "queue"),
                   [FlowJob.parse(c) for c in _list(r, "children")])


@dataclass
class FlowNode:
    """One job of ``flows.get``, with its children. Times are Unix ms."""

    message_id: str
    queue: str
    #: ``waiting_children``, ``delayed``, ``ready``, ``in_flight``, ``completed``,
    #: ``dead_lettered``, ``expired``, ``cancelled``, ``purged`` or ``queue_deleted``.
    state: str
    #: Its result while the flow or the job's retention keeps it; ``None`` otherwise.
    result: Json
    #: When it finished; ``None`` while unfinished.
    finished_at: Optional[int]
    on_child_failure: str
    children: List["FlowNode"]
    #: Why it was dead-lettered: ``rejected``, ``max_retries_exceeded``, ``expired``,
    #: ``snoozed_out``, ``child_failed``.
    reason: Optional[str] = None

    @classmethod
    def parse(cls, v: Any) -> "FlowNode":
        r = _obj(v, "flow node")
        return cls(
            message_id=_str(r, "message_id"),
            queue=_str(r, "queue"),
            state=_str(r, "state"),
            result=r.get("result"),
            finished_at=_opt_num(r, "finished_at"),
            on_child_failure=_str(r, "on_child_failure"),
            children=[FlowNode.parse(c) for c in _list(r, "children")],
            reason=_opt_str(r, "reason"),
        )


@dataclass
class Flow:
    """What ``flows.get`` answers: the flow, its root job's state (the flow's) and its tree.
    Times are Unix ms."""

    flow_id: str
    created_at: int
    #: When the root job finished; ``None`` while the flow runs.
    finished_at: Optional[int]
    #: The root job's message id.
    message_id: str
    #: The root job's queue.
    queue: str
    state: str
    result: Json
    on_child_failure: str
    children: List[FlowNode]
    #: Why the root was dead-lettered (``child_failed`` when a child failed under ``fail``).
    reason: Optional[str] = None

    @property
    def finished(self) -> bool:
        """The root job finished, one way or another."""
        return self.finished_at is not None

    @classmethod
    def parse(cls, v: Any) -> "Flow":
        r = _obj(v, "flow")
        return cls(
            flow_id=_str(r, "flow_id"),
            created_at=_num(r, "created_at"),
            finished_at=_opt_num(r, "finished_at"),
            message_id=_str(r, "message_id"),
            queue=_str(r, "queue"),
            state=_str(r, "state"),
            result=r.get("result"),
            on_child_failure=_str(r, "on_child_failure"),
            children=[FlowNode.parse(c) for c in _list(r, "children")],
            reason=_opt_str(r, "reason"),
        )


class FlowsApi:
    """Flows over the server's ``/flows`` routes."""

    def __init__(self, t: Transport) -> None:
        self._t = t

    async def add(self, tree: Mapping[str, Any]) -> FlowCreated:
        """Adds a flow: ``tree`` is the root job (``{"queue", "message", "priority"?,
        "group"?, "headers"?, "ttl"?, "max_retries"?, "on_child_failure"?, "children"?}``),
        each of its ``children`` a job it waits for (nested, on any queues). The whole tree is
        accepted or nothing is. Answers the flow's id and every job made, as a tree in the
        order given. Never resent after an unanswered attempt: flows take no idempotency key,
        and a repeat would add a second flow."""
        body = flow_body(tree)
        return FlowCreated.parse(await self._t.request("POST", "/flows", body, once=True))

    async def get(self, flow_id: str) -> Flow:
        """The flow as it is now: its root job's state (the flow's) and the tree of jobs with
        each one's state, ``reason``, ``result`` (while kept) and ``finished_at``. 404
        ``flow_not_found`` for an unknown flow or one no longer kept."""
        if not isinstance(flow_id, str) or not flow_id:
            raise _invalid("", "flow_id: a non-empty string is required")
        return Flow.parse(await self._t.request("GET", f"/flows/{seg(flow_id)}"))
