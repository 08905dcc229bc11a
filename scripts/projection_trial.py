"""Which projections make f_g and f_l: fitted on one labelled folder, scored on another split.

For one model, pools the head output (or GAP) and the 4 stripes' GAP of the fit images and of
the split's queries and gallery once (cached in ``--cache``), then fits each combination of
  f_g: ``pca`` (unwhitened, what fit-pca does on a network's own head), ``pca-w`` (whitened,
  shrinkage 2), ``lda`` (PCA.fit_lda on the file names' identities, 128-D)
  f_l: ``white`` (per-stripe whitening K -> K, shrinkage 2), ``lda32`` / ``lda64``
  (per-stripe PCA.fit_lda)
and ranks the split exactly in process (the evaluation core's rankers): coarse, and C2F at M
= 100 for each fine weight. Prints mAP / rank-1 per row. Choose on held-out *train* identities
(fit on ids 0-499, score on 500-742; docs/benchmarks.md gives the folders), never on val.

    .venv/bin/python scripts/projection_trial.py --model runs/ho_a.pt --fit runs/fit500 \\
        --root runs/ho --split val --weights 0.5 1 2 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from reidctl.data.datasets import cuhk03
from reidctl.model import PCA, load_model
from reidctl.pipeline.fit import identities, pool_images
from reidctl.pipeline.protocol import GroundTruth, run_protocol
from reidctl.pipeline.rankers import ExactC2F, ExactCoarse


def pooled(model: str, fit: Path, protocol, cache: Path) -> dict[str, np.ndarray]:
    """Head output / GAP ``*_g`` and stripe GAP ``*_s`` of the fit images (``fit_``), the
    queries (``q_``) and the gallery (``g_``), from ``cache`` when it is there."""
    if cache.exists():
        return dict(np.load(cache))
    ex = load_model(model)
    out: dict[str, np.ndarray] = {}
    sets = {"fit": sorted(fit.glob("*.jpg")), "q": [q.path for q in protocol.queries],
            "g": [g.path for g in protocol.gallery]}
    for name, files in sets.items():
        g, s, used = pool_images(ex, files)
        if len(used) != len(files):
            raise SystemExit(f"{name}: {len(files) - len(used)} unreadable images")
        out[f"{name}_g"], out[f"{name}_s"] = g, s
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def project(p: PCA, x: np.ndarray) -> np.ndarray:
    y = p.transform(torch.from_numpy(x).float())
    return torch.nn.functional.normalize(y, dim=1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="checkpoint or backbone name")
    ap.add_argument("--fit", type=Path, required=True, help="labelled folder to fit on")
    ap.add_argument("--root", type=Path, required=True, help="CUHK03-style root")
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.5, 1, 2, 4])
    ap.add_argument("--m", type=int, default=100)
    ap.add_argument("--cache", type=Path, default=None,
                    help="pooled features file (default runs/trial_<model>.npz)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    protocol = cuhk03(a.root, a.split)
    truth = GroundTruth.from_metas(protocol.queries, protocol.gallery)
    cache = a.cache or Path("runs") / f"trial_{Path(a.model).stem}.npz"
    d = pooled(a.model, a.fit, protocol, cache)
    fit_files = sorted(a.fit.glob("*.jpg"))
    labels = identities(fit_files, 128)
    if labels is None:
        raise SystemExit(f"{a.fit}: the file names give too few identities for the trial")
    fg, fs = d["fit_g"], d["fit_s"]  # (N, D_in), (N, stripes, K)
    n_stripes, k = fs.shape[1], fs.shape[2]
    globals_ = {"pca": PCA.fit(fg, 128), "pca-w": PCA.fit(fg, 128, whiten=True, shrinkage=2.0),
                "lda": PCA.fit_lda(fg, labels, 128, 0.1)}
    each = range(n_stripes)
    stripes = {"white": [PCA.fit(fs[:, i], k, whiten=True, shrinkage=2.0) for i in each],
               "lda32": [PCA.fit_lda(fs[:, i], labels, 32, 0.1) for i in each],
               "lda64": [PCA.fit_lda(fs[:, i], labels, 64, 0.1) for i in each]}
    print(f"{protocol.description}: {len(protocol.queries)} queries, {len(protocol.gallery)} "
          f"gallery; fit on {len(fit_files)} images of {len(np.unique(labels))} identities")
    print("| f_g | f_l | coarse | " + " | ".join(f"C2F w={w:g}" for w in a.weights) + " |")
    print("|---|---|---|" + "---|" * len(a.weights))
    for gname, gp in globals_.items():
        q_g, g_g = project(gp, d["q_g"]), project(gp, d["g_g"])
        gg = torch.from_numpy(g_g)
        for sname, sp in stripes.items():
            scale = np.sqrt(n_stripes)  # f_l as describe() makes it: unit norm overall
            q_l = np.concatenate([project(p, d["q_s"][:, i]) for i, p in enumerate(sp)], 1) / scale
            g_l = np.concatenate([project(p, d["g_s"][:, i]) for i, p in enumerate(sp)], 1) / scale
            rankers = [ExactCoarse(q_g, gg)]
            for w in a.weights:
                r = ExactC2F(q_g, q_l, gg, g_l, min(a.m, len(g_g)), w)
                r.name = f"w={w:g}"
                rankers.append(r)
            rep = run_protocol(truth, rankers)
            cells = [f"{r.mAP:.2f} / {r.rank1:.2f}" for r in rep.values()]
            print(f"| {gname} | {sname} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
