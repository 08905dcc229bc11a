"""Ablation of the query-time options and of M, in process, on one CUHK03 split.

For each model: the split's descriptors are extracted once, then every method ranks every
query with the exact in-process rankers of the evaluation core (the same re-rank, query
expansion and k-reciprocal code as ``reidctl search``; an exact coarse stage instead of
the ANN index): coarse, c2f, c2f+qe, c2f+kr, c2f+qe+kr at each M. Prints one table row per
(model, M, method): mAP, rank-1, and the in-process milliseconds per query (retrieval
only, no Milvus round trips: the ``eval`` command reports those).

    .venv/bin/python scripts/query_opts_ablation.py --model runs/omz_0286_cuhk03.pt \\
        --root ../shared/datasets/cuhk03-labeled-pair1 --split val --m 50 100 500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from reidctl.data.datasets import cuhk03
from reidctl.model import load_model
from reidctl.pipeline.common import extract_files
from reidctl.pipeline.protocol import GroundTruth, run_protocol
from reidctl.pipeline.rankers import ExactC2F, ExactCoarse
from reidctl.query_opts import QueryOptions

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cuhk03-labeled-pair1"
OPTIONS = [QueryOptions(), QueryOptions(qe=1), QueryOptions(kreciprocal=True),
           QueryOptions(qe=1, kreciprocal=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", required=True, help="checkpoints or backbone names")
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--split", default="val", help="folder under --root (e.g. val)")
    ap.add_argument("--m", type=int, nargs="+", default=[50, 100, 500])
    ap.add_argument("--fine-weight", type=float, nargs="*", default=[],
                    help="also plain c2f at these fine weights (at the first M)")
    ap.add_argument("--json", action="store_true", help="one JSON line per row")
    args = ap.parse_args()
    torch.set_num_threads(2)
    protocol = cuhk03(args.root, args.split)
    truth = GroundTruth.from_metas(protocol.queries, protocol.gallery)
    print(f"{protocol.description}: {len(protocol.queries)} queries, "
          f"{len(protocol.gallery)} gallery images")
    print("| model | M | method | mAP | rank-1 | ms / query |\n|---|---|---|---|---|---|")
    for name in args.model:
        ex = load_model(name)
        q_g, q_l = extract_files(ex, [q.path for q in protocol.queries])
        g_g, g_l = extract_files(ex, [g.path for g in protocol.gallery])
        gg = torch.from_numpy(g_g)
        rows: list = [(0, ExactCoarse(q_g, gg))]
        for w in args.fine_weight:
            ranker = ExactC2F(q_g, q_l, gg, g_l, min(args.m[0], len(g_g)), w)
            ranker.name = f"c2f w={w:g}"
            rows.append((args.m[0], ranker))
        for m in args.m:
            rows += [(m, ExactC2F(q_g, q_l, gg, g_l, min(m, len(g_g)), ex.fine_weight,
                                  options=o)) for o in OPTIONS]
        for m, ranker in rows:
            report = run_protocol(truth, [ranker])[ranker.name]
            row = {"model": Path(name).name, "M": m or "-", "method": ranker.name,
                   "mAP": round(report.mAP, 2), "rank1": round(report.rank1, 2),
                   "ms": round(report.ms_p50, 2)}
            print(json.dumps(row) if args.json else
                  "| {model} | {M} | {method} | {mAP:.2f} | {rank1:.2f} | {ms:.2f} |".format(**row),
                  flush=True)


if __name__ == "__main__":
    main()
