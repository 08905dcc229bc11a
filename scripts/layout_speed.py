"""Forward time of a backbone with NHWC input, its weights left NCHW against converted to
NHWC (``channels_last``), as ``FeatureExtractor`` now does on the CPU.

Prints ms per image at the given batch size for both layouts, and their ratio, for each
round (the two layouts alternate in one process, so both see the same machine load).

    .venv/bin/python scripts/layout_speed.py omz_0286 omz_0277 osnet_x0_25
"""

from __future__ import annotations

import argparse
import time

import torch

from reidctl.model import build_backbone
from reidctl.model.backbones import backbone_spec


def ms_per_image(module: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Mean forward time per image over ``repeats`` runs after one warm-up run."""
    with torch.inference_mode():
        module(x)
        start = time.perf_counter()
        for _ in range(repeats):
            module(x)
        return (time.perf_counter() - start) / repeats * 1000.0 / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("backbones", nargs="+")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.backbones:
        module = build_backbone(name).module.eval()
        x = torch.randn(args.batch, 3, *backbone_spec(name).input_size).contiguous(
            memory_format=torch.channels_last)  # (B, 3, H, W) NHWC
        for r in range(args.rounds):
            nchw = ms_per_image(module.to(memory_format=torch.contiguous_format), x,
                                args.repeats)
            nhwc = ms_per_image(module.to(memory_format=torch.channels_last), x, args.repeats)
            print(f"{name} round {r + 1}: weights NCHW {nchw:.1f} ms/img, weights NHWC "
                  f"{nhwc:.1f} ms/img, ratio {nchw / nhwc:.2f}", flush=True)


if __name__ == "__main__":
    main()
