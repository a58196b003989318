"""What the sample's Python programs share: the task types, the queue, and settings from the
environment (SYNAP_URL, SYNAP_API_KEY, and knobs that let tests shorten the simulated work and
inject failures)."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from enum import Enum

QUEUE = "video-processing"


class TaskType(str, Enum):
    TRANSCODE = "transcode"
    THUMBNAIL = "thumbnail"
    UPLOAD_CDN = "upload_cdn"
    NOTIFY_USER = "notify_user"


def _number(name: str, default: float) -> float:
    raw = os.getenv(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if value < 0:
        sys.exit(f"{name}: not a non-negative number: {raw}")
    return value


#: SYNAP_URL: the server.
URL = os.getenv("SYNAP_URL") or "http://localhost:15500"
#: SYNAP_API_KEY: sent when set.
API_KEY = os.getenv("SYNAP_API_KEY") or None
#: SYNAP_WORK_SCALE: multiplies every simulated work time (0.01 turns 5 s into 50 ms).
WORK_SCALE = _number("SYNAP_WORK_SCALE", 1)
#: SYNAP_FAIL_RATE: share of tasks that fail before doing anything (0-1).
FAIL_RATE = _number("SYNAP_FAIL_RATE", 0)
#: SYNAP_SEED: seeds the failure injection so a run repeats.
SEED = int(_number("SYNAP_SEED", os.getpid()))
#: SYNAP_WAIT_SECS: the long-poll (the sample's 30 s).
WAIT_SECS = _number("SYNAP_WAIT_SECS", 30)
#: SYNAP_HEARTBEAT_SECS: the heartbeat period (the sample's 30 s).
HEARTBEAT_SECS = _number("SYNAP_HEARTBEAT_SECS", 30)


async def work(seconds: float) -> None:
    """Sleeps ``seconds`` of simulated work, scaled by SYNAP_WORK_SCALE."""
    await asyncio.sleep(seconds * WORK_SCALE)


def is_premium_user(user_id: str) -> bool:
    """Premium users (every third) get priority 9, others 5."""
    digits = "".join(ch for ch in user_id if ch.isdigit())
    return bool(digits) and int(digits) % 3 == 0


def chance(seed: int) -> random.Random:
    """A seeded generator for repeatable failure injection."""
    return random.Random(seed)
