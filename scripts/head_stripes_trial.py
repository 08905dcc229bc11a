"""Trial: f_l stripes pooled by the network's own head instead of GAP (offline, no product change).

Each stripe's embedding is the head run on the map with the other stripes' rows zeroed and
the stripe scaled by 4 (the head's 16x8 depthwise kernel restricted to the stripe's 4 rows,
then its projection), L2-normalised, concatenated and scaled by 1/2. Prints coarse, C2F with
the checkpoint's GAP stripes and C2F with the head stripes at several fine weights (M = 100).

    .venv/bin/python scripts/head_stripes_trial.py MODEL.pt ROOT SPLIT
    # the benchmarks' run: MODEL = ho_a.pt, ROOT = ho, SPLIT = val (the held-out split)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reidctl.data.batches import decoded_batches
from reidctl.data.datasets import cuhk03
from reidctl.model import FeatureExtractor, load_model
from reidctl.pipeline.protocol import GroundTruth, run_protocol
from reidctl.pipeline.rankers import ExactC2F, ExactCoarse


def features(ex: FeatureExtractor, paths: list[str]) -> tuple[np.ndarray, ...]:
    """(N, 128) f_g, (N, Dl) the model's f_l, (N, 4 * D_head) the head-pooled stripes."""
    out: tuple[list[np.ndarray], ...] = ([], [], [])
    for _, _, x in decoded_batches(paths, ex.input_size, 32, strict=True):
        with torch.inference_mode():
            fm = ex.feature_maps(x).float()  # (B, K, 16, 8)
            d = ex.extract(x)
            parts = []
            for s in range(4):
                mask = torch.zeros_like(fm)
                mask[:, :, 4 * s:4 * s + 4] = 4.0  # the stripe's rows, at full-map weight
                parts.append(F.normalize(ex.model.global_input(fm * mask), dim=1))
        for acc, v in zip(out, (d.global_, d.local, (torch.cat(parts, 1) / 2).numpy()),
                          strict=True):
            acc.append(v)
    return tuple(np.concatenate(a) for a in out)


def main() -> None:
    torch.set_num_threads(2)
    ex = load_model(sys.argv[1])
    protocol = cuhk03(Path(sys.argv[2]), sys.argv[3])
    qg, ql, qs = features(ex, [m.path for m in protocol.queries])
    gg, gl, gs = features(ex, [m.path for m in protocol.gallery])
    truth = GroundTruth.from_metas(protocol.queries, protocol.gallery)
    g = torch.from_numpy(gg)
    rankers: list = [ExactCoarse(qg, g)]
    for name, q_l, g_l, weights in (("gap", ql, gl, (0.25, 0.5)),
                                    ("head", qs, gs, (0.1, 0.25, 0.5, 1.0))):
        for w in weights:
            r = ExactC2F(qg, q_l, g, g_l, 100, w)
            r.name = f"c2f {name}-stripes w={w}"
            rankers.append(r)
    for name, report in run_protocol(truth, rankers).items():
        print(name, round(report.mAP, 2), round(report.rank1, 2), flush=True)


if __name__ == "__main__":
    main()
