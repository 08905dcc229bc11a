"""Training augmentations of ReID practice, on ``(3, H, W)`` uint8 tensors.

Random horizontal flip, zero-pad then random crop back to the input size, and
random erasing (Zhong et al. 2020) filled with the ImageNet mean colour, so an
erased box is zero after normalisation. Every random draw comes from the numpy
``Generator`` passed in: seeded per sample from ``(seed, epoch, position)``, the
augmentation of an image does not depend on worker count, worker scheduling or
whether the run was resumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MEAN_RGB_UINT8 = (124, 116, 104)  # ImageNet mean (0.485, 0.456, 0.406) x 255, rounded


@dataclass(frozen=True)
class AugmentSettings:
    """What :func:`augment` does.

    Attributes:
        flip: probability of a horizontal flip.
        pad: pixels of zero padding on every side before the random crop (0: none).
        erasing: probability of erasing one random box.
        erasing_area: min and max fraction of the image the box covers.
        erasing_ratio: min and max aspect ratio (h / w) of the box.
    """

    flip: float = 0.5
    pad: int = 10
    erasing: float = 0.5
    erasing_area: tuple[float, float] = (0.02, 0.4)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)


def sample_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """The generator of one sample: a function of the run seed, epoch and position only."""
    return np.random.default_rng([seed, epoch, position])


def erase_box(h: int, w: int, s: AugmentSettings,
               rng: np.random.Generator) -> tuple[int, int, int, int] | None:
    """``(top, left, height, width)`` of a random box, or None after 10 misses."""
    log_lo, log_hi = math.log(s.erasing_ratio[0]), math.log(s.erasing_ratio[1])
    for _ in range(10):
        area = h * w * rng.uniform(*s.erasing_area)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        bh, bw = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < bh < h and 0 < bw < w:
            return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw
    return None


def augment(image: torch.Tensor, settings: AugmentSettings,
            rng: np.random.Generator) -> torch.Tensor:
    """One random training view of an image.

    Args:
        image: ``(3, H, W)`` uint8, already at the model's input size.
        settings: which augmentations, with which probabilities.
        rng: the sample's generator (:func:`sample_rng`).

    Returns:
        ``(3, H, W)`` uint8, a new tensor.
    """
    _, h, w = image.shape
    x = image
    if rng.random() < settings.flip:
        x = torch.flip(x, dims=(2,))  # (3, H, W), mirrored left-right
    if settings.pad > 0:
        p = settings.pad
        padded = F.pad(x, (p, p, p, p))  # (3, H + 2p, W + 2p), zeros around
        top, left = int(rng.integers(0, 2 * p + 1)), int(rng.integers(0, 2 * p + 1))
        x = padded[:, top:top + h, left:left + w]  # (3, H, W)
    x = x.clone()
    if rng.random() < settings.erasing:
        box = erase_box(h, w, settings, rng)
        if box is not None:
            top, left, bh, bw = box
            fill = torch.tensor(MEAN_RGB_UINT8, dtype=torch.uint8).view(3, 1, 1)  # (3, 1, 1)
            x[:, top:top + bh, left:left + bw] = fill
    return x
