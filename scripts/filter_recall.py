"""Recall of filtered coarse (ANN) search against exact filtered search.

Ingests CUHK03 train (7,239 images, cameras A and B) through the normal ingest
path, then for every CUHK03 val
query runs the coarse search with a filter pushed into Milvus and compares its
top-k with an exact brute-force top-k over the rows that satisfy the filter.

    .venv/bin/python scripts/filter_recall.py [--uri ./filter.db] [--model PATH] [--k 100]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from reidctl.config import is_lite_uri
from reidctl.data.datasets import cuhk03
from reidctl.model import load_model
from reidctl.pipeline.common import extract_files
from reidctl.pipeline.ingest import ingest
from reidctl.store import MilvusStore
from reidctl.types import Selection

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("REIDCTL_CUHK03", ROOT.parent / "shared/datasets/cuhk03-labeled-pair1"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", default=str(ROOT / "runs" / "filter.db"))
    ap.add_argument("--model", default=os.environ.get("REIDCTL_MODEL", "osnet_x0_25"))
    ap.add_argument("--k", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(2)
    ex = load_model(args.model)
    files = sorted((DATA / "train").glob("*.jpg"))
    if is_lite_uri(args.uri):
        Path(args.uri).parent.mkdir(parents=True, exist_ok=True)
    store = MilvusStore(args.uri, "filter_recall")
    rep = ingest(files, store, ex)
    print(f"gallery: {store.count()} images ({rep.ingested} new) on {store.uri}")
    ids, cams, pids, f_g = [], [], [], []
    for b in store.iterate(with_vectors=True):
        ids += b["id"]
        cams += [m["camera"] for m in b["meta"]]
        pids += [m["person_id"] for m in b["meta"]]
        f_g.append(b["f_g"])
    g = np.concatenate(f_g)
    cams_a, pids_a = np.array(cams), np.array(pids)
    q_g, _ = extract_files(ex, [q.path for q in cuhk03(DATA).queries])
    first_100 = tuple(f"{i:04d}" for i in range(100))
    filters = {
        "none": (Selection(), np.ones(len(ids), bool)),
        "camera A (50%)": (Selection(cameras=("A",)), cams_a == "A"),
        "exclude camera A (50%)": (Selection(exclude_cameras=("A",)), cams_a != "A"),
        "100 of 743 persons (13%)": (Selection(person_ids=first_100),
                                     np.isin(pids_a, first_100)),
        "camera B and 100 persons (7%)": (Selection(cameras=("B",), person_ids=first_100),
                                          (cams_a == "B") & np.isin(pids_a, first_100)),
    }
    print(f"| filter | rows passing | recall@{args.k} | ms p50 per query |")
    print("|---|---|---|---|")
    for name, (sel, mask) in filters.items():
        if not mask.any():
            print(f"| {name} | 0 | - | - |")
            continue
        cand = np.flatnonzero(mask)
        hits, ms = [], []
        for q in q_g:
            t = time.perf_counter()
            got = store.search(q[None], args.k, where=None if sel.empty else sel)[0]
            ms.append((time.perf_counter() - t) * 1e3)
            d = ((g[cand] - q) ** 2).sum(1)
            exact = {ids[i] for i in cand[np.argsort(d)[: args.k]]}
            hits.append(len(exact & {h.id for h in got}) / len(exact))
        print(f"| {name} | {len(cand)} | {100 * np.mean(hits):.2f}% | {np.median(ms):.1f} |")


if __name__ == "__main__":
    main()
