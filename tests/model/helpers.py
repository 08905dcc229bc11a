"""Helpers for the model tests (PIL is used here only, never in reidctl.model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


def load_image(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """``(3, H, W)`` float in [0, 1] from an image file, resized to ``size = (H, W)``."""
    from PIL import Image

    if not path.is_file():
        pytest.skip(f"test image not found at {path}")
    with Image.open(path) as img:
        rgb = img.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(rgb, dtype=np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (3, H, W)


def seeded_images(n: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """``(n, 3, H, W)`` reproducible uniform images in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *size, generator=gen)
