"""Open-set thresholds of a trained checkpoint: calibrated two ways, measured on CUHK03 val.

(a) calibrate on the train split (the model's fit data: "seen" identities, so
    optimistic distances), measure on val (all of it, and each half of (b));
(b) 2-fold on val identities: calibrate on half A, measure on half B, and vice versa.

Queries are camera A, the gallery camera B (the cuhk03 protocol); impostor
scores are leave-identity-out (reidctl.openset). Prints one JSON document.

    .venv/bin/python scripts/openset_check.py --model /tmp/train_full/osnet_x0_25_cuhk03.pt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reidctl.config import resolve_device
from reidctl.data.datasets import cuhk03, load_protocol
from reidctl.model import load_model
from reidctl.openset import calibrate, operating_point
from reidctl.pipeline.calibrate import SplitFeatures, extract_split, restrict, split_scores

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cuhk03-labeled-pair1"


def _point(features: SplitFeatures, w: float, dev: torch.device, t: float) -> dict:
    p = operating_point(split_scores(features, w, dev), t)
    return {"fmr": round(p["fmr"], 4), "tmr": round(p["tmr"], 4),
            "queries_genuine": p["queries_genuine"], "queries_impostor": p["queries_impostor"],
            "gallery": len(features.gallery), "identities": len(features.identities())}


def _calibrated(features: SplitFeatures, w: float, dev: torch.device, target: float) -> dict:
    scores = split_scores(features, w, dev)
    t = calibrate(scores.impostor, target)
    out = {"threshold": round(t, 4)} | _point(features, w, dev, t)
    out["rank1"] = round(float(scores.genuine_correct.mean()), 4)  # closed-set, for reference
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--fmr", type=float, nargs="+", default=[0.01, 0.05])
    ap.add_argument("--train-ids", type=int, default=None, help="first N train identities only")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0, help="draw of the val halves")
    args = ap.parse_args()

    dev = resolve_device(args.device)
    ex = load_model(args.model, device=str(dev))
    w = ex.fine_weight
    t0 = time.perf_counter()
    val = extract_split(ex, load_protocol("cuhk03", args.root), batch_size=64)
    train_protocol = cuhk03(args.root, "train")
    if args.train_ids:
        ids = sorted({m.person_id for m in train_protocol.queries})[:args.train_ids]
        train_protocol = restrict(train_protocol, ids)
    train = extract_split(ex, train_protocol, batch_size=64)
    print(f"extracted in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    ids = np.array(val.identities())
    perm = np.random.default_rng(args.seed).permutation(len(ids))
    halves = {"A": val.subset(ids[perm[: len(ids) // 2]]),
              "B": val.subset(ids[perm[len(ids) // 2:]])}
    report: dict = {"model": args.model, "fingerprint": ex.fingerprint, "fine_weight": w,
                    "distance": f"sqrt(d_g^2 + {w:g} d_l^2)",
                    "protocol": "CUHK03 pair 1: queries camera A, gallery camera B; "
                                "impostors leave-identity-out",
                    "val_halves_seed": args.seed, "a_train": {}, "b_val_2fold": {}}
    for target in args.fmr:
        key = f"fmr_{target:g}"
        cal = _calibrated(train, w, dev, target)
        t = cal["threshold"]
        report["a_train"][key] = {
            "calibration_train": cal,
            "val": _point(val, w, dev, t),
            "val_half_A": _point(halves["A"], w, dev, t),
            "val_half_B": _point(halves["B"], w, dev, t),
        }
        folds = {}
        for cal_half, test_half in (("A", "B"), ("B", "A")):
            c = _calibrated(halves[cal_half], w, dev, target)
            folds[f"calibrate_{cal_half}_test_{test_half}"] = {
                "threshold": c["threshold"], "calibration": c,
                "test": _point(halves[test_half], w, dev, c["threshold"]),
            }
        tests = [f["test"] for f in folds.values()]
        folds["mean_test"] = {k: round(float(np.mean([x[k] for x in tests])), 4)
                              for k in ("fmr", "tmr")}
        report["b_val_2fold"][key] = folds
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
