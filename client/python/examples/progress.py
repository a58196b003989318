"""The sample's progress check: prints each video's ``video:{id}:progress`` key (kept by the
workers' ``update_progress``), or ``Video not found``; exits 1 when any is missing.

    SYNAP_URL=http://127.0.0.1:15500 python client/python/examples/progress.py vid-1 vid-2
"""

from __future__ import annotations

import json
import sys

from common import API_KEY, URL

from synap import SynapClient


def main(video_ids: list) -> int:
    missing = 0
    with SynapClient(url=URL, api_key=API_KEY) as client:
        for video_id in video_ids:
            result = client.kv.get(f"video:{video_id}:progress")
            if result.found:
                print(f"{video_id} {json.dumps(result.value)}")
            else:
                print(f"{video_id} Video not found")
                missing += 1
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
