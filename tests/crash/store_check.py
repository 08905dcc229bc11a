"""What a crash left in the store: the collection pair read back and compared with the files.

Milvus Lite lets one process open a database and keeps its lock until that process
exits, so :func:`read_store` reads in a fresh Python process (this module, run with
``python -m tests.crash.store_check``) and the next ingest can open the database.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NORM_TOLERANCE = 1e-3  # |‖f‖ - 1| for every stored descriptor


def child_env(token: str | None) -> dict[str, str]:
    """The environment of a child process: unbuffered, a wide terminal for the progress
    bar, and the token (never on the command line)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TTY_COMPATIBLE="1", TERM="xterm",
               COLUMNS="200")
    env.pop("NO_COLOR", None)
    if token:
        env["REIDCTL_TOKEN"] = token
    return env


def image_ids(images: Path) -> dict[str, list[str]]:
    """sha256 of each image file's bytes -> the resolved paths with those bytes.

    Files are the ones ``reidctl ingest`` picks in a folder (same discovery rule).
    """
    from reidctl.data.images import discover

    out: dict[str, list[str]] = {}
    for p in discover([images]):
        out.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), []).append(str(p))
    return out


def _local_ids(uri: str, token: str | None, collection: str) -> tuple[int, list[str]]:
    """count(*) and every id of a collection, by a plain query (strong consistency)."""
    from pymilvus import MilvusClient  # noqa: TID251 - a plain query, outside the store API

    client = MilvusClient(uri=uri, token=token or "", timeout=60)
    try:
        res = client.query(collection, filter="", output_fields=["count(*)"],
                           consistency_level="Strong")
        count = int(res[0]["count(*)"]) if res else 0
        it = client.query_iterator(collection, batch_size=1000, filter="", output_fields=["id"],
                                   consistency_level="Strong")
        ids: list[str] = []
        try:
            while page := it.next():
                ids.extend(str(r["id"]) for r in page)
        finally:
            it.close()
        return count, ids
    finally:
        client.close()


def _dups(count: int, ids: Counter[str]) -> int:
    """Rows beyond one per id: by count(*) and by ids returned more than once."""
    return max(count - len(ids), sum(c - 1 for c in ids.values()), 0)


def inspect_store(
    images: Path, uri: str, collection: str, *, token: str | None = None, sample: int = 0,
    seed: int = 0, model: str = "osnet_x0_25", device: str = "cpu",
) -> dict[str, Any]:
    """What the collection pair holds, compared with the image files.

    With ``sample`` > 0 also loads the model and checks descriptors and metadata.
    Runs in the process that calls it: for Milvus Lite use :func:`read_store`.
    """
    import numpy as np

    from reidctl.store import MilvusStore

    expected = image_ids(images)
    out: dict[str, Any] = {"exists": False, "global_count": 0, "local_count": 0}
    with MilvusStore(uri, collection, token=token, timeout=60) as store:
        if not store.exists():
            return out
        info = store.info()
        g_ids: Counter[str] = Counter()
        metas: dict[str, dict] = {}
        for b in store.iterate(with_vectors=False, fresh=True):
            g_ids.update(b["id"])
            metas.update(zip(b["id"], b["meta"], strict=True))
        l_count, l_list = _local_ids(uri, token, store.local_name)
        l_ids = Counter(l_list)
        want = set(expected)
        out.update(
            exists=True, global_count=info.global_count, local_count=info.local_count,
            local_count_query=l_count, global_distinct=len(g_ids), local_distinct=len(l_ids),
            duplicates_global=_dups(info.global_count, g_ids),
            duplicates_local=_dups(max(info.local_count, l_count), l_ids),
            missing_global=len(want - g_ids.keys()), missing_local=len(want - l_ids.keys()),
            extra_global=len(g_ids.keys() - want), extra_local=len(l_ids.keys() - want),
            global_without_local=len(g_ids.keys() - l_ids.keys()),
            local_without_global=len(l_ids.keys() - g_ids.keys()),
            bad_path=sum(1 for pk, m in metas.items()
                         if pk in expected and m.get("path") not in expected[pk]),
        )
        if not sample:
            return out

        from reidctl.model import load_model
        from reidctl.pipeline.common import extract_files

        extractor = load_model(model, device=device)
        out["bad_model"] = sum(1 for m in metas.values() if m.get("model") != extractor.fingerprint)
        picked = sorted(random.Random(seed).sample(sorted(want & g_ids.keys()),
                                                   min(sample, len(want & g_ids.keys()))))
        stored_g: dict[str, np.ndarray] = {}
        bad_norm = 0
        try:
            for b in store.iterate(with_vectors=True, fresh=True):
                for name in ("f_g", "f_l"):
                    v = b[name]
                    ok = np.isfinite(v).all(axis=1)
                    ok &= np.abs(np.linalg.norm(np.nan_to_num(v), axis=1) - 1.0) <= NORM_TOLERANCE
                    bad_norm += int((~ok).sum())
                stored_g.update((pk, b["f_g"][k]) for k, pk in enumerate(b["id"]) if pk in picked)
            out["bad_norm"] = bad_norm
        except Exception as e:  # noqa: BLE001 - reported, the check then fails
            out["vector_error"] = f"{type(e).__name__}: {e}"
        if picked and len(stored_g) == len(picked):
            f_g, f_l = extract_files(extractor, [expected[pk][0] for pk in picked])
            s_l = store.fetch_local(picked, fresh=True)
            s_g = np.stack([stored_g[pk] for pk in picked])
            out["max_diff_global"] = float(np.abs(s_g - f_g).max())
            out["max_diff_local"] = float(np.abs(s_l - f_l).max())
        out["sampled"] = len(picked)
        out["model"] = extractor.fingerprint
    return out


def read_store(
    images: Path, uri: str, collection: str, *, token: str | None = None, sample: int = 0,
    seed: int = 0, model: str = "osnet_x0_25", device: str = "cpu", timeout: float = 900,
) -> dict[str, Any]:
    """:func:`inspect_store` in a fresh Python process (so no Lite lock stays behind)."""
    cmd = [sys.executable, "-m", "tests.crash.store_check", "--images", str(images), "--uri", uri,
           "--collection", collection, "--sample", str(sample), "--seed", str(seed),
           "--model", model, "--device", device]
    env = child_env(token)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    if r.returncode != 0:
        raise RuntimeError(f"reading the store failed (exit {r.returncode}): "
                           f"{r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout)


def main(argv: list[str] | None = None) -> int:
    """Prints :func:`inspect_store` as one JSON object (what :func:`read_store` runs)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True, help="folder of the ingested images")
    ap.add_argument("--uri", required=True, help="Milvus Lite file (*.db) or server URI")
    ap.add_argument("--token", default=os.environ.get("REIDCTL_TOKEN"))
    ap.add_argument("--collection", default="crash")
    ap.add_argument("--sample", type=int, default=0, help="descriptors re-extracted")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="osnet_x0_25")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    print(json.dumps(inspect_store(a.images, a.uri, a.collection, token=a.token,
                                   sample=a.sample, seed=a.seed, model=a.model,
                                   device=a.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
