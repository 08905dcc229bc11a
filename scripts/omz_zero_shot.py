"""Zero-shot CUHK03 scores of an OMZ ReID network imported from OpenVINO IR.

The whole graph is imported up to its ``reid_embedding`` output (256-D) and compared
by cosine distance, as the network is meant to be used; query = CUHK03 val camera A,
gallery = camera B, no training on CUHK03. ``--features gap`` scores instead what
reidctl builds its descriptors from: the last conv map (layer ``1126``), averaged
over its 16x8 positions. Images are decoded and resized as everywhere in reidctl and
handed over normalised, through the backbone's input adapter.

    .venv/bin/python scripts/omz_zero_shot.py --model omz_0286
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from reidctl.config import resolve_device
from reidctl.data.batches import decoded_batches
from reidctl.data.datasets import cuhk03
from reidctl.metrics import relevance, score_ranking, summarize
from reidctl.model import IrBackbone, default_omz_dir, load_ir_module, normalize
from reidctl.model.backbones import OMZ_CUT, OMZ_FILES, backbone_spec

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cuhk03-labeled-pair1"


@torch.inference_mode()
def embed(module: IrBackbone, paths: list[str], size: tuple[int, int], batch: int,
          device: torch.device, gap: bool) -> np.ndarray:
    """Unit-norm features of ``paths``: (N, D) float32."""
    out = []
    for _, _, images in decoded_batches(paths, size, batch, strict=True):
        f = module(normalize(images.to(device)))  # (B, 256) or (B, K, 16, 8)
        f = f.mean(dim=(2, 3)) if gap else f  # (B, D)
        out.append(torch.nn.functional.normalize(f, dim=1).cpu().numpy())
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=list(OMZ_FILES), default="omz_0286")
    ap.add_argument("--features", choices=["embedding", "gap"], default="embedding")
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--omz-dir", type=Path, default=None, help="default: $REIDCTL_OMZ_DIR or "
                    "../shared/weights/omz")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    dev = resolve_device(args.device)
    xml = (args.omz_dir or default_omz_dir()) / OMZ_FILES[args.model]
    gap = args.features == "gap"
    module = IrBackbone(load_ir_module(xml, OMZ_CUT if gap else None)).eval().to(dev)
    protocol = cuhk03(args.root, "val")
    size = backbone_spec(args.model).input_size
    start = time.perf_counter()
    q = embed(module, [m.path for m in protocol.queries], size, args.batch, dev, gap)
    g = embed(module, [m.path for m in protocol.gallery], size, args.batch, dev, gap)
    seconds = time.perf_counter() - start
    gallery_pids = np.array([m.person_id for m in protocol.gallery])
    gallery_cams = np.array([m.camera for m in protocol.gallery])
    distances = 1.0 - q @ g.T  # (Q, N) cosine distance
    scores = []
    for qi, meta in enumerate(protocol.queries):
        good, junk = relevance(meta.person_id, meta.camera, gallery_pids, gallery_cams)
        ranked = np.argsort(distances[qi], kind="stable")  # (N,) best first
        scores.append(score_ranking(ranked, good, junk))
    summary = summarize(scores)
    print(json.dumps({
        "model": args.model, "weights": str(xml),
        "features": f"{'GAP of ' + OMZ_CUT if gap else 'reid_embedding'} ({q.shape[1]}-D), "
                    "cosine distance",
        "protocol": protocol.description, "queries": len(q), "gallery": len(g),
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in summary.items()},
        "extract_seconds": round(seconds, 1), "device": str(dev),
    }, indent=2))


if __name__ == "__main__":
    main()
