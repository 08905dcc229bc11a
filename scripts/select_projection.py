"""Chooses the whitening shrinkage and the fine-stage weight on CUHK03 *train* only.

Identities 0000-0499 of train fit the projections; identities 0500-0742 of train,
camera A against camera B, score them. The val split is printed for reference
(--val) but takes no part in the choice.

    .venv/bin/python scripts/select_projection.py [--root ../shared/datasets/cuhk03-labeled-pair1]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from reidctl.data.batches import decoded_batches
from reidctl.metrics import relevance, score_ranking, summarize
from reidctl.model import PCA, load_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = Path(os.environ.get("REIDCTL_CUHK03",
                              ROOT.parent / "shared/datasets/cuhk03-labeled-pair1"))


def pooled(ex, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    gs, ss = [], []
    for _, _, batch in decoded_batches(files, ex.input_size, 64, strict=True):
        g, s = ex.pooled(batch)
        gs.append(g)
        ss.append(s)
    return np.concatenate(gs), np.concatenate(ss)  # (N, K), (N, stripes, K)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


def sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None]).clip(0)


def score(d: np.ndarray, pid: np.ndarray, cam: np.ndarray) -> float:
    q, g = cam == "A", cam == "B"
    out = []
    for i, qi in enumerate(np.flatnonzero(q)):
        good, junk = relevance(pid[qi], cam[qi], pid[g], cam[g])
        out.append(score_ranking(np.argsort(d[i], kind="stable"), good, junk))
    return summarize(out)["mAP"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=DEFAULT)
    ap.add_argument("--val", action="store_true", help="also print val (not used to choose)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    ex = load_model("osnet_x0_25")
    files = sorted((args.root / "train").glob("*.jpg"))
    pid = np.array([f.name[:4] for f in files])
    cam = np.array(["A" if int(f.name[5:7]) < 5 else "B" for f in files])
    g_all, s_all = pooled(ex, files)
    fit = np.array([int(p) < 500 for p in pid])
    sets = {"train 500-742 (held out)": (~fit, g_all[~fit], s_all[~fit], pid[~fit], cam[~fit])}
    if args.val:
        vf = sorted((args.root / "val").glob("*.jpg"))
        vg, vs = pooled(ex, vf)
        vcam = np.array(["A" if int(f.name[5:7]) < 5 else "B" for f in vf])
        sets["val (reference only)"] = (None, vg, vs, np.array([f.name[:4] for f in vf]), vcam)
    weights = [0.0, 0.25, 0.5, 1.0, 2.0]
    print("shrinkage | set | " + " | ".join(f"w={w}" for w in weights)
          + " | local only")
    for shrink in [None, 0.0, 1.0, 2.0, 4.0]:
        if shrink is None:
            pca = PCA.fallback(128)
            spca = None
        else:
            pca = PCA.fit(g_all[fit], 128, whiten=True, shrinkage=shrink)
            spca = [PCA.fit(s_all[fit][:, i], 128, whiten=True, shrinkage=shrink)
                    for i in range(s_all.shape[1])]
        for name, (_, g, s, p, c) in sets.items():
            fg = unit(pca.transform(torch.from_numpy(g)).numpy())
            parts = s if spca is None else np.stack(
                [p_.transform(torch.from_numpy(s[:, i])).numpy() for i, p_ in enumerate(spca)], 1)
            fl = unit(parts).reshape(len(s), -1) / np.sqrt(s.shape[1])
            q, gal = c == "A", c == "B"
            dg, dl = sqdist(fg[q], fg[gal]), sqdist(fl[q], fl[gal])
            row = [score(dg + w * dl, p, c) for w in weights] + [score(dl, p, c)]
            label = "none (identity)" if shrink is None else f"{shrink:g}"
            print(f"{label} | {name} | " + " | ".join(f"{v:.2f}" for v in row))


if __name__ == "__main__":
    main()
