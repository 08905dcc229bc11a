"""Runs the reidctl CLI and SIGKILLs it right after a chosen Milvus call returns.

    CRASH_AFTER=METHOD:SUFFIX:N python tests/crash/sigkill_hook.py ingest ...

kills the process after the N-th successful ``MilvusClient.METHOD`` call on a
collection whose name ends with SUFFIX, e.g. ``upsert:_local:3`` (after a batch's local
descriptors are acknowledged, before its global rows are sent: a point a random kill
rarely hits) or ``create_collection:_global:1`` (a collection without its index yet).
"""

from __future__ import annotations

import os
import signal
import sys

from pymilvus import MilvusClient  # noqa: TID251 - the hook wraps the client the store uses

METHOD, SUFFIX, AFTER = os.environ["CRASH_AFTER"].split(":")
_original = getattr(MilvusClient, METHOD)
_calls = 0


def _call_then_die(self, collection_name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    global _calls
    result = _original(self, collection_name, *args, **kwargs)
    if str(collection_name).endswith(SUFFIX):
        _calls += 1
        if _calls >= int(AFTER):
            os.kill(os.getpid(), signal.SIGKILL)
    return result


setattr(MilvusClient, METHOD, _call_then_die)

if __name__ == "__main__":
    from reidctl.cli.main import run

    sys.argv[0] = "reidctl"
    run()
