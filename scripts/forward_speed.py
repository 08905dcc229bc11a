"""Forward-pass throughput against the batch size, with and without reidctl's C allocator
settings (``reidctl.allocator``), each configuration in a fresh process.

Per configuration: images/s of the bare model over CUHK03 train images decoded and
batched beforehand (the best of ``--rounds``, one batch at a time and in ingest's two
streams), the CPU time it spent in the kernel and the page faults it took, and what
decoding and resizing one image costs (Pillow, one thread: the CPU ingest needs per image
on top of the forward pass). Prints a table and each configuration's ratio to the first.

    .venv/bin/python scripts/forward_speed.py --model runs/osnet_x0_25_cuhk03_trained.pt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("REIDCTL_CUHK03", ROOT.parent / "shared/datasets/cuhk03-labeled-pair1"))
CONFIGS = [("system", 64), ("system", 32), ("tuned", 64), ("tuned", 32)]


def child(model: str, batch: int, images: int, rounds: int) -> dict:
    """One configuration, in this process (the allocator is set by the parent's env)."""
    from reidctl import allocator

    tuned = allocator.tune()
    import resource
    import time

    from reidctl.data.batches import hwc_batch
    from reidctl.data.distractors import train_pool
    from reidctl.data.images import decode_hwc, read_bytes
    from reidctl.model import load_model
    from reidctl.pipeline.bench import evenly, forward_rate
    from reidctl.pipeline.common import ForwardStreams

    ex = load_model(model, device="cpu")
    files = evenly(train_pool(DATA / "train"), images)
    data = [read_bytes(f)[1] for f in files]
    t0 = time.perf_counter()
    pixels = [decode_hwc(d, ex.input_size) for d in data]  # what ingest adds per image
    decode_ms = 1e3 * (time.perf_counter() - t0) / len(data)
    batches = [hwc_batch(pixels[s:s + batch]) for s in range(0, len(pixels), batch)]
    best = {"one_batch": 0.0, "streams": 0.0}
    sys_s = faults = 0.0
    with ForwardStreams(ex) as streams:
        for f in [streams.submit(b) for b in batches[:streams.streams]]:
            f.result()  # warm-up
        for _ in range(rounds):
            for way in best:
                r0 = resource.getrusage(resource.RUSAGE_SELF)
                rate = forward_rate(ex, batches, streams if way == "streams" else None)
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                best[way] = max(best[way], rate)
                sys_s += r1.ru_stime - r0.ru_stime
                faults += r1.ru_minflt - r0.ru_minflt
    n = 2 * rounds * len(files)
    return {"tuned": tuned, "batch": batch, "images_per_s": max(best.values()), **best,
            "decode_ms_per_image": decode_ms,
            "kernel_ms_per_image": 1e3 * sys_s / n, "page_faults_per_image": faults / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="osnet_x0_25")
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", nargs=2, metavar=("ALLOCATOR", "BATCH"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.model, int(a.child[1]), a.images, a.rounds)))
        return
    rows = []
    for alloc, batch in CONFIGS:
        env = os.environ | {"REIDCTL_ALLOCATOR": "system" if alloc == "system" else ""}
        out = subprocess.run(
            [sys.executable, __file__, "--model", a.model, "--images", str(a.images),
             "--rounds", str(a.rounds), "--child", alloc, str(batch)],
            env=env, capture_output=True, text=True, check=True)
        rows.append((alloc, json.loads(out.stdout.strip().splitlines()[-1])))
    base = rows[0][1]["images_per_s"]
    print(f"{'allocator':10s} {'batch':>5s} {'images/s':>9s} {'one batch':>9s} {'streams':>8s} "
          f"{'kernel ms/img':>13s} {'faults/img':>10s} {'ratio':>6s} {'decode ms/img':>13s}")
    for alloc, r in rows:
        print(f"{alloc:10s} {r['batch']:5d} {r['images_per_s']:9.1f} {r['one_batch']:9.1f} "
              f"{r['streams']:8.1f} {r['kernel_ms_per_image']:13.2f} "
              f"{r['page_faults_per_image']:10.0f} {r['images_per_s'] / base:6.2f} "
              f"{r['decode_ms_per_image']:13.3f}")


if __name__ == "__main__":
    main()
