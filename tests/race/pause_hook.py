"""Runs the reidctl CLI with a pause after a chosen Milvus call, to widen a race window.

    PAUSE_AFTER=METHOD:SUFFIX:SECONDS PAUSE_MARKER=FILE python tests/race/pause_hook.py ...

After the first successful ``MilvusClient.METHOD`` call on a collection whose name ends
with SUFFIX, creates FILE (so a test knows the window is open) and sleeps SECONDS, e.g.
``upsert:_local:3`` (an ingest between its local and its global write) or
``delete:_global:3`` (a delete between its global and its local half).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pymilvus import MilvusClient  # noqa: TID251 - the hook wraps the client the store uses

METHOD, SUFFIX, SECONDS = os.environ["PAUSE_AFTER"].split(":")
MARKER = Path(os.environ["PAUSE_MARKER"])
_original = getattr(MilvusClient, METHOD)


def _call_then_pause(self, collection_name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    result = _original(self, collection_name, *args, **kwargs)
    if str(collection_name).endswith(SUFFIX) and not MARKER.exists():
        MARKER.touch()
        time.sleep(float(SECONDS))
    return result


setattr(MilvusClient, METHOD, _call_then_pause)

if __name__ == "__main__":
    from reidctl.cli.main import run

    sys.argv[0] = "reidctl"
    run()
