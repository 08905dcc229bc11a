"""Pieces shared by the pipelines: batched extraction, collection set-up."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from reidctl.data.images import SkipImage, load
from reidctl.errors import InputError
from reidctl.model import FeatureExtractor
from reidctl.store import MilvusStore

ProgressFn = Callable[[int], None]


def to_batch(pixels: Sequence[np.ndarray]) -> torch.Tensor:
    """Stacks (3, H, W) uint8 arrays into a (B, 3, H, W) float tensor in [0, 1]."""
    return torch.from_numpy(np.stack(pixels)).float().div_(255.0)  # (B, 3, H, W)


def extract_files(
    extractor: FeatureExtractor, paths: Sequence[Path | str], batch_size: int = 32,
    on_progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of query images; any unusable image is an error.

    Returns:
        f_g (N, Dg) and f_l (N, Dl) float32, in the order of ``paths``.

    Raises:
        InputError: a path is missing or is not a usable image.
    """
    size = extractor.input_size
    out_g: list[np.ndarray] = []
    out_l: list[np.ndarray] = []

    def _load(p: Path | str) -> np.ndarray:
        if not Path(p).is_file():
            raise InputError(f"query image does not exist: {p}")
        try:
            return load(p, size)[1].pixels
        except SkipImage as e:
            raise InputError(f"cannot use query image {p}: {e}") from None

    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(paths), batch_size):
            pixels = list(pool.map(_load, paths[start:start + batch_size]))
            d = extractor.extract(to_batch(pixels))
            out_g.append(d.global_)
            out_l.append(d.local)
            if on_progress:
                on_progress(len(pixels))
    return np.concatenate(out_g), np.concatenate(out_l)


def model_record(extractor: FeatureExtractor) -> dict:
    """What the collection records about the model that made its vectors."""
    info = extractor.describe()
    return {k: (v if isinstance(v, (str, int, float)) else str(v)) for k, v in info.items()}


def ensure_collection(store: MilvusStore, extractor: FeatureExtractor) -> bool:
    """Creates the collection pair for this model, or checks it holds this model's vectors.

    Returns:
        True when the pair was created now.
    """
    if store.exists():
        store.check_model(extractor.fingerprint)
        return False
    store.create(
        global_dim=extractor.global_dim, local_dim=extractor.local_dim,
        model=model_record(extractor),
    )
    return True
