"""Synap's Python client, with the API of Synap's task-queue sample.

``AsyncSynapClient(url=, api_key=)`` for asyncio, ``SynapClient`` for blocking code; both
have ``queue``, ``kv``, ``pubsub`` and ``flows``. Every failure raises ``SynapError`` with
``code`` (the server's machine code or the client's) and ``status`` (HTTP, or 0).
"""

from ._client import AsyncSynapClient
from ._errors import SynapError
from ._flows import Flow, FlowCreated, FlowJob, FlowNode, FlowsApi
from ._kv import KvApi
from ._pubsub import PubSubApi, Subscription
from ._queue import QueueApi
from ._stream import QueueStream
from ._sync import SyncFlowsApi, SynapClient, SyncQueueStream, SyncSubscription
from ._types import (AckBatchResult, DeadLetter, DlqPage, FlowChild, GroupInfo, Job, KvGetResult,
                     ProgressResult, PublishResult, PubSubMessage, PubSubPublishResult,
                     QueueMessage, QueueStats, Schedule, ScheduleSet)

__all__ = [
    "AckBatchResult", "AsyncSynapClient", "DeadLetter", "DlqPage", "Flow", "FlowChild",
    "FlowCreated", "FlowJob", "FlowNode", "FlowsApi", "GroupInfo", "Job", "KvApi", "KvGetResult",
    "ProgressResult", "PubSubApi", "PubSubMessage", "PubSubPublishResult", "PublishResult",
    "QueueApi", "QueueMessage", "QueueStats", "QueueStream", "Schedule", "ScheduleSet",
    "Subscription", "SyncFlowsApi", "SyncQueueStream", "SyncSubscription", "SynapClient",
    "SynapError",
]
