"""Ablations of one trained model on CUHK03 val (exact, in-process; no Milvus).

One forward pass over ``train/`` and ``val/`` keeps, per image, the GAP vector of
the last feature map and its stripe-pooled vectors for 1, 2, 4 and 6 stripes
(``adaptive_avg_pool2d`` to ``(stripes, 1)``: OSNet's map is 16 rows high, so the
6 stripes are overlapping bins of 3-4 rows; 1, 2 and 4 are exact partitions,
identical to :func:`reidctl.model.descriptors.describe`). For ``val/`` it also
keeps the descriptors of the model's own ``describe`` path (what ingest stores).
These arrays are cached in an ``.npz`` keyed by the model fingerprint and the
file lists, so a rerun is instant.

Then, with the same model throughout, on the protocol of ``reidctl eval``
(queries = camera A, gallery = camera B):

* method rows with the checkpoint's own projections: coarse (exact f_g ranking),
  C2F with M = 50 / 100 / 500, linear scan of the full descriptor;
* f_g PCA dimension 64 / 128 / 256, refitted on train GAP features (whitened,
  shrinkage as in the checkpoint); coarse and C2F (M = 100);
* f_l stripes 1 / 2 / 4 / 6, per-stripe whitening refitted on train; C2F (M = 100)
  and linear, with the checkpoint's f_g and fine weight;
* fine weight w in 0 / 0.25 / 0.5 / 1 / 2 (diagnostic): linear and C2F (M = 100).

C2F follows :func:`reidctl.pipeline.search.c2f`: the exact coarse top-M, re-ranked
by ``sqrt(d_g^2 + w d_l^2)`` (:func:`reidctl.rerank.rerank`), and the ranking is
those M only, scored as ``reidctl eval`` scores it (relevant images outside the
top-M count as never retrieved). ``--tail coarse`` instead appends the rest of the
gallery in coarse order. Metrics come from :mod:`reidctl.metrics`.

    .venv/bin/python scripts/ablations.py --model MODEL.pt [--md /tmp/ablations.md]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reidctl.data.batches import decoded_batches
from reidctl.data.datasets import Protocol, load_protocol
from reidctl.metrics import SINGLE_SHOT_DRAWS
from reidctl.model import PCA, FeatureExtractor, describe, load_model
from reidctl.pipeline.evaluate import scoring_order
from reidctl.pipeline.fit import DEFAULT_SHRINKAGE
from reidctl.pipeline.protocol import GroundTruth, Ranker, run_protocol
from reidctl.pipeline.rankers import ExactC2F, ExactCoarse, ExactLinear
from reidctl.pipeline.train_data import labeled_files
from reidctl.timing import Stopwatch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("REIDCTL_CUHK03",
                                   ROOT.parent / "shared/datasets/cuhk03-labeled-pair1"))
DEFAULT_MODEL = Path("/tmp/train_full/osnet_x0_25_cuhk03.pt")
CACHE_VERSION = 1
STRIPE_COUNTS = (1, 2, 4, 6)
C2F_MS = (50, 100, 500)
ABLATION_M = 100
PCA_DIMS = (64, 128, 256)
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)


# ----------------------------------------------------------------------------- features


def _fingerprint(ex: FeatureExtractor, train: Sequence[Path], val: Sequence[str]) -> str:
    """Cache key: model fingerprint, file lists, stripe counts, cache layout version."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{ex.fingerprint}|{STRIPE_COUNTS}".encode())
    for p in [*map(str, train), "|", *val]:
        h.update(p.encode() + b"\n")
    return h.hexdigest()[:16]


@torch.inference_mode()
def _forward(
    ex: FeatureExtractor, files: Sequence[Path | str], batch_size: int, with_descriptors: bool,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """One forward pass: GAP, stripe pools and (optionally) the model's descriptors.

    Returns:
        ({"gap": (N, K), "s1".."s6": (N, s, K), "fmap_h": (1,), ["f_g": (N, Dg), "f_l": (N, Dl)]},
        skipped paths).
    """
    out: defaultdict[str, list[np.ndarray]] = defaultdict(list)
    skipped: list[str] = []
    batches = decoded_batches(list(files), ex.input_size, batch_size, strict=False,
                              on_skip=lambda p, _r: skipped.append(str(p)))
    done = 0
    for n, kept, batch in batches:
        done += n
        if not kept:
            continue
        # Same input path as FeatureExtractor.extract / pooled (ImageNet-normalised, NHWC on CPU).
        fm = ex.feature_maps(batch)  # (B, K, H, W)
        out["gap"].append(fm.mean(dim=(2, 3)).float().cpu().numpy())  # (B, K)
        out["fmap_h"].append(np.array([fm.shape[2]]))
        for s in STRIPE_COUNTS:
            pooled = F.adaptive_avg_pool2d(fm, (s, 1))[..., 0]  # (B, K, s)
            out[f"s{s}"].append(pooled.transpose(1, 2).float().cpu().numpy())  # (B, s, K)
        if with_descriptors:
            d = describe(fm, ex.pca, ex.stripes, ex.stripe_pca,
                         ex.model.global_input(fm))  # what ingest/extract store
            out["f_g"].append(d.global_.float().cpu().numpy())
            out["f_l"].append(d.local.float().cpu().numpy())
        print(f"\r  forward {done}/{len(files)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    arrays = {k: np.concatenate(v) for k, v in out.items()}
    arrays["fmap_h"] = np.unique(arrays["fmap_h"])  # (1,): one input size, one map height
    return arrays, skipped


def load_features(
    ex: FeatureExtractor, train: Sequence[Path], protocol: Protocol, cache_dir: Path,
    batch_size: int,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Pooled features of train and val (queries then gallery), from cache or one pass.

    Returns:
        (arrays keyed "train_gap", "train_s4", "val_gap", "val_f_g", ..., info).

    Raises:
        SystemExit: a val image could not be read (the protocol needs all of them).
    """
    val = [m.path for m in protocol.queries] + [m.path for m in protocol.gallery]
    path = cache_dir / f"{_fingerprint(ex, train, val)}.npz"
    info: dict[str, Any] = {"cache": str(path), "cache_hit": path.is_file()}
    clock = Stopwatch.started()
    if not path.is_file():
        tr, tr_skipped = _forward(ex, train, batch_size, with_descriptors=False)
        va, va_skipped = _forward(ex, val, batch_size, with_descriptors=True)
        if va_skipped:
            raise SystemExit(f"{len(va_skipped)} val image(s) unreadable, e.g. {va_skipped[0]}")
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, train_skipped_count=np.array(len(tr_skipped)),
                 **{f"train_{k}": v for k, v in tr.items()},
                 **{f"val_{k}": v for k, v in va.items()})
        tmp.replace(path)
    with np.load(path) as z:  # what was just written, or an earlier run's
        arrays = {k: z[k] for k in z.files}
    info["feature_seconds"] = round(clock.elapsed(), 2)
    info["train_skipped"] = int(arrays.pop("train_skipped_count"))
    return arrays, info


# ---------------------------------------------------------------- descriptors and rankers


def global_descriptor(gap: np.ndarray, pca: PCA) -> np.ndarray:
    """f_g = L2(PCA(GAP)), as in ``describe``: (N, K) -> (N, D)."""
    return F.normalize(pca.transform(torch.from_numpy(gap)), dim=1).numpy()


def local_descriptor(parts: np.ndarray, stripe_pca: Sequence[PCA]) -> np.ndarray:
    """f_l as in ``describe``: whiten each stripe, L2 each, concatenate, / sqrt(stripes).

    Args:
        parts: (N, s, K) stripe-pooled features.
        stripe_pca: s projections K -> K, or empty for none.

    Returns:
        (N, s * K) unit-norm rows, stripe-major.
    """
    x = torch.from_numpy(parts)  # (N, s, K)
    if stripe_pca:
        x = torch.stack([p.transform(x[:, i]) for i, p in enumerate(stripe_pca)], dim=1)
    x = F.normalize(x, dim=2)  # each stripe unit norm over K
    return (x.reshape(x.shape[0], -1) / math.sqrt(parts.shape[1])).numpy()


def ranker(f_g: np.ndarray, f_l: np.ndarray, q: int, method: str, *, m: int = 0,
           w: float = 0.5, tail: str = "drop") -> Ranker[np.ndarray]:
    """The exact in-process ranker of ``method`` over (Q + N, D) val descriptors, queries
    first: "coarse" (f_g, whole gallery), "c2f" (see the module doc) or "linear"
    (``sqrt(d_g^2 + w d_l^2)``, whole gallery)."""
    qg, ql, gg, gl = f_g[:q], f_l[:q], torch.from_numpy(f_g[q:]), f_l[q:]
    if method == "linear":
        return ExactLinear(qg, ql, gg, torch.from_numpy(gl), w)
    if method == "coarse":
        return ExactCoarse(qg, gg)
    return ExactC2F(qg, ql, gg, gl, m, w, tail)


# -------------------------------------------------------------------------------- main


def _pooling(height: int, stripes: int) -> str:
    """How ``adaptive_avg_pool2d`` splits ``height`` rows into ``stripes`` bins, in words."""
    if height % stripes == 0:
        return f"exact, {height // stripes} rows each"
    bins = [(i * height // stripes, -(-(i + 1) * height // stripes)) for i in range(stripes)]
    return "overlapping rows " + ", ".join(f"{a}-{b - 1}" for a, b in bins)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Computes every ablation row; returns the JSON report."""
    total = Stopwatch.started()
    torch.set_num_threads(args.threads)
    ex = load_model(args.model, args.device)
    if not ex.stripe_pca or ex.pca_kind != "pca":
        raise SystemExit("the model has no fitted projections (run fit-pca or train first)")
    protocol = load_protocol("cuhk03", args.root)
    # the gallery in the order eval scores it: the single-shot CMC draws depend on it
    protocol = replace(protocol, gallery=scoring_order(protocol.gallery))
    train = labeled_files(args.root / "train").files  # the files train/fit-pca fit on
    cache_dir = args.cache or Path("/tmp/ablation_cache")
    arr, info = load_features(ex, train, protocol, cache_dir, args.batch_size)
    ev = GroundTruth.from_metas(protocol.queries, protocol.gallery, protocol.junk_person_ids)
    k, w0, fit_dim = ex.spec.channels, ex.fine_weight, ex.pca.out_dim
    shrink = ex.pca.shrinkage if ex.pca.whiten else DEFAULT_SHRINKAGE
    fmap_h = int(arr["val_fmap_h"][0])  # rows of the last feature map
    rows_clock = Stopwatch.started()

    # Model descriptors as ingest stores them, and the same recomputed from the cached pools.
    f_g, f_l = arr["val_f_g"], arr["val_f_l"]
    checks: dict[str, Any] = {
        "recomputed_f_g_max_abs_diff": float(np.abs(
            global_descriptor(arr["val_gap"], ex.pca) - f_g).max()),
        "recomputed_f_l_max_abs_diff": float(np.abs(
            local_descriptor(arr[f"val_s{ex.stripes}"], ex.stripe_pca) - f_l).max()),
    }
    rows: list[dict[str, Any]] = []

    def add(group: str, setting: str, method: str, ranker: Ranker[np.ndarray], *,
            single_shot: bool = False, **extra: Any) -> None:
        """Scores ``ranker`` as ``reidctl eval`` does: a row of mAP, rank-1, rank-5 (and
        single-shot rank-1), percent."""
        r = run_protocol(ev, [ranker], single_shot=single_shot)[ranker.name]
        got = {"mAP": r.mAP, "rank1": r.rank1, "rank5": r.rank5}
        if single_shot and r.single_shot:
            got["single_shot_rank1"] = r.single_shot["rank1"]
        rows.append({"group": group, "setting": setting, "method": method,
                     **{k_: round(v, 2) for k_, v in got.items()}, **extra})

    q, tail, c2f = ev.num_queries, args.tail, f"C2F M={ABLATION_M}"
    # 1. methods, the checkpoint's own projections.
    add("method", "model", "coarse (exact f_g)", ranker(f_g, f_l, q, "coarse"), single_shot=True)
    for m in C2F_MS:
        m_eff = min(m, ev.n)
        add("method", "model", f"C2F M={m}", ranker(f_g, f_l, q, "c2f", m=m_eff, w=w0, tail=tail),
            single_shot=True, M=m_eff)
    add("method", "model", "linear (full descriptor)", ranker(f_g, f_l, q, "linear", w=w0),
        single_shot=True)

    # 2. f_g PCA dimension, refitted on train GAP.
    for dim in PCA_DIMS:
        try:
            pca = PCA.fit(arr["train_gap"], dim=dim, whiten=True, shrinkage=shrink)
        except ValueError as e:
            for method in ("coarse", c2f):
                rows.append({"group": "pca_dim", "setting": str(dim), "method": method,
                             "not_applicable": f"PCA.fit raises ValueError: {e}"})
            continue
        fg = global_descriptor(arr["val_gap"], pca)
        add("pca_dim", str(dim), "coarse", ranker(fg, f_l, q, "coarse"))
        add("pca_dim", str(dim), c2f, ranker(fg, f_l, q, "c2f", m=ABLATION_M, w=w0, tail=tail))
        if dim == fit_dim:
            checks[f"pca_dim_{dim}_refit_vs_model_f_g_max_abs_diff"] = float(np.abs(fg - f_g).max())

    # 3. f_l stripes, per-stripe whitening refitted on train.
    for s in STRIPE_COUNTS:
        tr = arr[f"train_s{s}"]  # (N, s, K)
        spca = [PCA.fit(tr[:, i], dim=k, whiten=True, shrinkage=shrink) for i in range(s)]
        fl = local_descriptor(arr[f"val_s{s}"], spca)
        pooling = _pooling(fmap_h, s)
        add("stripes", str(s), c2f, ranker(f_g, fl, q, "c2f", m=ABLATION_M, w=w0, tail=tail),
            pooling=pooling)
        add("stripes", str(s), "linear", ranker(f_g, fl, q, "linear", w=w0), pooling=pooling)
        if s == ex.stripes:
            checks[f"stripes_{s}_refit_vs_model_f_l_max_abs_diff"] = float(np.abs(fl - f_l).max())

    # 4. fine weight (diagnostic), the checkpoint's projections.
    for w in WEIGHTS:
        add("fine_weight", f"{w:g}", "linear", ranker(f_g, f_l, q, "linear", w=w))
        add("fine_weight", f"{w:g}", c2f, ranker(f_g, f_l, q, "c2f", m=ABLATION_M, w=w, tail=tail))

    return {
        "model": ex.describe(),
        "protocol": protocol.description,
        "num_queries": ev.num_queries,
        "gallery_size": ev.n,
        "train_images": len(train) - info["train_skipped"],
        "feature_map_height": fmap_h,
        "shrinkage": shrink,
        "fine_weight": w0,
        "c2f_tail": args.tail,
        "notes": [
            "exact in-process distances (no Milvus, no HNSW); metrics from reidctl.metrics",
            "gallery in store order (sha256 of file bytes), as reidctl eval reads it back: "
            "single-shot CMC draws depend on that order",
            f"stripe pooling: adaptive_avg_pool2d to (s, 1) of the {fmap_h}-row map; "
            + "; ".join(f"{s} stripes: {_pooling(fmap_h, s)}" for s in STRIPE_COUNTS),
            f"refitted projections: PCA.fit(whiten=True, shrinkage={shrink:g}) on "
            f"{len(train) - info['train_skipped']} train images, as fit_projections",
            f"C2F M={ABLATION_M} in the ablations; the ranking is the top-M only"
            if args.tail == "drop" else "C2F rankings continue in coarse order after M",
        ],
        "checks": checks,
        "cache": info,
        "seconds": {"features": info["feature_seconds"],
                    "rows": round(rows_clock.elapsed(), 2),
                    "total": round(total.elapsed(), 2)},
        "rows": rows,
    }


def _cell(row: dict[str, Any] | None, key: str) -> str:
    if row is None or key not in row:
        return "n/a"
    return f"{row[key]:.2f}"


def _table(rows: list[dict[str, Any]], group: str, first: str, settings: Sequence[str],
           methods: Sequence[str], extra: str | None = None) -> list[str]:
    """A markdown table of ``group``: a line per setting, mAP / rank-1 / rank-5 of each
    of ``methods`` (after the ``extra`` field of the first method's row, if given)."""
    found = {(r["setting"], r["method"]): r for r in rows if r["group"] == group}
    head = [first, *([extra] if extra else []),
            *(f"{m} {k}" for m in methods for k in ("mAP", "rank-1", "rank-5"))]
    lines = ["| " + " | ".join(head) + " |",
             "|---:|" + ("---|" if extra else "") + "---:|" * 3 * len(methods)]
    for setting in settings:
        got = [found.get((setting, m)) for m in methods]
        cells = [setting, *([(got[0] or {}).get(extra, "")] if extra else []),
                 *(_cell(r, k) for r in got for k in ("mAP", "rank1", "rank5"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    """Four markdown tables: methods, PCA dimension, stripes, fine weight."""
    rows, m, c2f = report["rows"], report["model"], f"C2F M={ABLATION_M}"
    lines = [
        f"Model `{m['weights']}` (fingerprint {m['fingerprint']}, {m['backbone']}, "
        f"K={m['channels']}, f_g {m['pca_detail']}, f_l {m['stripes']} stripes, "
        f"w={report['fine_weight']:g}). {report['protocol']}: {report['num_queries']} queries, "
        f"{report['gallery_size']} gallery images. Exact distances, no ANN index. "
        "mAP non-interpolated; rank-k multi-shot CMC; single-shot CMC over "
        f"{SINGLE_SHOT_DRAWS} draws. Percent.",
        "",
        "| Method | mAP | rank-1 | rank-5 | single-shot rank-1 |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['method']} | " + " | ".join(_cell(r, k) for k in (
        "mAP", "rank1", "rank5", "single_shot_rank1")) + " |"
        for r in rows if r["group"] == "method"]
    lines += ["", f"f_g PCA dimension (refitted on train, whitened, shrinkage "
              f"{report['shrinkage']:g}; f_l and w of the model):", ""]
    lines += _table(rows, "pca_dim", "dim", [str(d) for d in PCA_DIMS], ["coarse", c2f])
    notes = [f"dim {r['setting']}: {r['not_applicable']} (K={m['channels']})" for r in rows
             if r["group"] == "pca_dim" and r["method"] == "coarse" and "not_applicable" in r]
    lines += [""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    lines += ["f_l stripes (per-stripe whitening refitted on train; f_g and w of the model):", ""]
    lines += _table(rows, "stripes", "stripes", [str(s) for s in STRIPE_COUNTS],
                    [c2f, "linear"], extra="pooling")
    lines += ["", "Fine weight w in d^2 = d_g^2 + w d_l^2 (diagnostic; the model's projections):",
              ""]
    lines += _table(rows, "fine_weight", "w", [f"{w:g}" for w in WEIGHTS], ["linear", c2f])
    lines += ["", *[f"- {n}" for n in report["notes"]], ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Parses arguments, runs the ablations, prints JSON and writes the markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="reidctl checkpoint")
    ap.add_argument("--root", type=Path, default=DEFAULT_DATA, help="CUHK03 folder (train/, val/)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="cache folder (default /tmp/ablation_cache/<fingerprint>.npz)")
    ap.add_argument("--md", type=Path, default=Path("/tmp/ablations.md"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--tail", choices=("drop", "coarse"), default="drop",
                    help="C2F beyond M: drop (as search/eval) or continue in coarse order")
    args = ap.parse_args(argv)
    report = run(args)
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(to_markdown(report))
    report["markdown"] = str(args.md)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
