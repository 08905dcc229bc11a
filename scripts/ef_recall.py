"""Recall and latency of the coarse HNSW search against its width ``ef``.

For the CUHK03 val queries, searches an existing collection pair (e.g. the 520K pair
that ``reidctl bench`` builds and keeps) for the top-``k`` at several ``ef`` and compares
each with a near-exact walk (ef 4096); prints recall@k and the per-query search time.

    .venv/bin/python scripts/ef_recall.py --uri http://127.0.0.1:19530 \\
        --collection bench_<fingerprint>_<key>_520000 --model runs/osnet_x0_25_cuhk03_trained.pt
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from reidctl.data.datasets import cuhk03
from reidctl.model import load_model
from reidctl.pipeline.common import extract_files
from reidctl.store import MilvusStore

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("REIDCTL_CUHK03", ROOT.parent / "shared/datasets/cuhk03-labeled-pair1"))
REFERENCE_EF = 4096


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uri", required=True)
    ap.add_argument("--collection", required=True)
    ap.add_argument("--model", default="osnet_x0_25")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--ef", type=int, nargs="+", default=[100, 200, 300, 400])
    a = ap.parse_args()
    extractor = load_model(a.model)
    queries = cuhk03(DATA, "val").queries
    f_g, _ = extract_files(extractor, [q.path for q in queries])
    with MilvusStore(a.uri, a.collection) as store:
        exact = [{h.id for h in hits}
                 for hits in store.search(f_g, a.k, ef=REFERENCE_EF, with_meta=False)]
        for ef in a.ef:
            ms, recall = [], []
            for q, want in zip(f_g, exact, strict=True):
                t0 = time.perf_counter()
                hits = store.search(q[None], a.k, ef=ef, with_meta=False)[0]
                ms.append((time.perf_counter() - t0) * 1e3)
                recall.append(len(want & {h.id for h in hits}) / a.k)
            print(f"ef {ef:5d}: recall@{a.k} {np.mean(recall):.4f} (vs ef {REFERENCE_EF}), "
                  f"search p50 {np.percentile(ms, 50):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms",
                  flush=True)


if __name__ == "__main__":
    main()
