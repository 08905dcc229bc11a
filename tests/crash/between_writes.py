"""Runs the reidctl CLI, SIGKILLing itself right after its N-th write to a local collection.

    python tests/crash/between_writes.py ingest ...   (N from CRASH_AFTER_LOCAL_WRITES)

The kill falls where a random one rarely does: after a batch's local descriptors are
acknowledged and before its global rows are sent.
"""

from __future__ import annotations

import os
import signal
import sys

from pymilvus import MilvusClient  # noqa: TID251 - the hook wraps the client the store uses

AFTER = int(os.environ["CRASH_AFTER_LOCAL_WRITES"])
_upsert = MilvusClient.upsert
_local_writes = 0


def _upsert_then_die(self, collection_name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    global _local_writes
    result = _upsert(self, collection_name, *args, **kwargs)
    if str(collection_name).endswith("_local"):
        _local_writes += 1
        if _local_writes >= AFTER:
            os.kill(os.getpid(), signal.SIGKILL)
    return result


MilvusClient.upsert = _upsert_then_die

if __name__ == "__main__":
    from reidctl.cli.main import run

    sys.argv[0] = "reidctl"
    run()
