"""Per backbone: parameters and the forward pass at batch 32 on this machine's CPU, several ways.

For each model, in one process and on the same CUHK03 train images (decoded and batched
beforehand): the whole descriptor extraction (``FeatureExtractor.extract``: network, pooling
head, projections) in torch eager with NCHW input, with channels-last input (what reidctl
does on a CPU), and with the network under ``torch.compile``; for the OpenVINO IR networks
also the ``openvino`` runtime on the same IR (network only, as a reference: reidctl does not
use it). Each way is timed for ``--rounds`` rounds after a warm-up and the best round counts
(a shared 2-core machine swings by 20% from one run to the next). Prints ms per image and each
way's speed relative to eager NCHW of the same model.

    .venv/bin/python scripts/model_speed.py --model osnet_x0_25 omz_0286 omz_0277
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("REIDCTL_CUHK03", ROOT.parent / "shared/datasets/cuhk03-labeled-pair1"))
BATCH = 32


def best_ms(fn, batches: list, rounds: int) -> float:
    """Best round's milliseconds per image of ``fn`` over ``batches`` (after one warm-up)."""
    fn(batches[0])
    best = float("inf")
    n = sum(len(b) for b in batches)
    for _ in range(rounds):
        t0 = time.perf_counter()
        for b in batches:
            fn(b)
        best = min(best, 1e3 * (time.perf_counter() - t0) / n)
    return best


def openvino_ms(xml: Path, batches: list, rounds: int) -> float:
    """The ``openvino`` runtime on the IR itself at the same batch (BGR 0-255 input)."""
    import numpy as np
    import openvino as ov

    core = ov.Core()
    net = core.read_model(str(xml))
    net.reshape([BATCH, 3, *batches[0].shape[2:]])
    compiled = core.compile_model(net, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads()})
    req = compiled.create_infer_request()
    arrays = [np.ascontiguousarray(b.flip(1).mul(255).numpy()) for b in batches]  # RGB->BGR
    return best_ms(lambda a: req.infer({0: a}), arrays, rounds)


def measure(name: str, images: int, rounds: int, compile_: bool) -> dict:
    from reidctl.data.batches import hwc_batch
    from reidctl.data.distractors import train_pool
    from reidctl.data.images import decode_hwc, read_bytes
    from reidctl.model import load_model
    from reidctl.model.backbones import OMZ_FILES, default_omz_dir
    from reidctl.pipeline.bench import evenly

    ex = load_model(name, device="cpu")
    files = evenly(train_pool(DATA / "train"), images)
    pixels = [decode_hwc(read_bytes(f)[1], ex.input_size) for f in files]
    batches = [hwc_batch(pixels[s:s + BATCH]).float().div(255)  # (B, 3, H, W) in [0, 1]
               for s in range(0, len(pixels) - BATCH + 1, BATCH)]
    row = {"model": name, "params_M": sum(p.numel() for p in ex.model.parameters()) / 1e6,
           "input": list(ex.input_size)}
    row["eager_nchw_ms"] = best_ms(lambda b: _extract(ex, b, nhwc=False), batches, rounds)
    row["eager_channels_last_ms"] = best_ms(ex.extract, batches, rounds)
    if compile_:
        eager_features = ex.model.features
        t0 = time.perf_counter()
        ex.model.features = torch.compile(eager_features)
        try:
            ex.extract(batches[0])  # compiles
            row["compile_s"] = time.perf_counter() - t0
            row["compiled_ms"] = best_ms(ex.extract, batches, rounds)
        except Exception as e:  # noqa: BLE001 - a failed compile is a result, reported
            row["compiled_ms"] = None
            row["compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        ex.model.features = eager_features
    if name in OMZ_FILES:
        row["openvino_ms"] = openvino_ms(default_omz_dir() / OMZ_FILES[name], batches, rounds)
    return row


@torch.inference_mode()
def _extract(ex, batch: torch.Tensor, nhwc: bool) -> None:
    """``ex.extract`` with the input layout chosen (NCHW when ``nhwc`` is false)."""
    fm = ex.model.features(ex._input(batch, nhwc=nhwc))  # (B, K, h, w)
    ex.model.global_input(fm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["osnet_x0_25", "omz_0286", "omz_0277"])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    print("| model | params (M) | eager NCHW ms/img | channels-last | torch.compile | "
          "openvino (reference) |\n|---|---|---|---|---|---|")
    for name in a.model:
        r = measure(name, a.images, a.rounds, not a.no_compile)
        if a.json:
            print(json.dumps(r), flush=True)
            continue
        base = r["eager_nchw_ms"]
        cells = ["-" if r.get(key) is None else f"{r[key]:.2f} ({base / r[key]:.2f}x)"
                 for key in ("eager_channels_last_ms", "compiled_ms", "openvino_ms")]
        print(f"| {name} | {r['params_M']:.2f} | {base:.2f} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
