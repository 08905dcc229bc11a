"""Synthetic retrieval distractors for the Person-520K-style scale benchmark.

The paper's Person-520K adds 500K images of people who are in no query to the
CUHK03 + Market-1501 test galleries. Those images are not available, so
``reidctl bench`` makes its own from the CUHK03 *train* split, whose 743
identities are disjoint from the val identities that query the gallery.

Distractor ``i`` (0-based) is a pure function of ``(seed, i)`` and the sorted list
of train file names: :func:`plan` draws every random choice from
``numpy.random.default_rng([TAG, seed, i])`` and :func:`render` applies them
with Pillow only. With probability 1/2 it is

- an **augmented variant** of one train image, chosen uniformly; or
- a **splice**: train image A (uniform) and train image B of another person
  (uniform over the other persons' images, by rejection) are both resized to A's
  size; rows above a cut drawn uniformly at 45-55% of the height come from A
  (upper body), rows below from B (lower body), blended linearly over a seam
  band of 4% of the height (at least 4 px); the result is then augmented.

The augmentation, in this order: horizontal flip (p = 1/2); a crop keeping
85-100% of the width and of the height (independently, uniform offset) resized
back to the original size; brightness and contrast x U(0.75, 1.25), saturation
x U(0.7, 1.3); a rotation by U(-5, 5) degrees about the centre, corners filled
with the image's mean colour; a Gaussian blur of radius U(0.3, 1.0) (p = 0.3).
The output has the size of the (top) source image, like a train crop (about
100 x 300 px); it never goes through JPEG encoding.

Each distractor carries person id ``d<i>``, unique per distractor, camera
``"X"``, source ``"distractor"``, so it is never relevant to any query, and its
primary key is the sha256 of ``"<recipe key>:<i>"`` (:func:`distractor_id`),
where the recipe key hashes :data:`RECIPE_VERSION`, the seed and the train file
names: stable across runs and machines and independent of the model.

What it implies for mAP: distractors are only ever negatives, so adding them can
only push relevant images down a ranking; for an exact ranking (the linear
scan) mAP and rank-1 can only fall as N grows, never rise. They are harder than
random strangers, because every distractor wears the clothes of a real train
person (and a splice shares the upper or lower body with two of them), yet they
are not new identities: there are only 743 distinct train people behind them, so
they cover appearance space less evenly than 500K real strangers. They may
therefore be easier or harder than the paper's real distractors, and absolute
mAP at N = 520K is not comparable with the paper's Table 6; the trend with N and
the C2F-versus-linear comparison at equal N are what the benchmark measures. One
calibration point (CUHK03 val, OSNet-x0.25 with projections fitted on train,
fingerprint e9b6262a9ad53a7e, linear scan): 256 of these distractors lower mAP from
54.48 to 45.01 (``reidctl bench --n 0 --n 256 --model runs/osnet_x0_25_cuhk03.pt``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from reidctl.data.images import IMAGE_SUFFIXES
from reidctl.data.names import parse_name
from reidctl.errors import InputError
from reidctl.types import ImageMeta

RECIPE_VERSION = "reidctl.distractors/1"
CAMERA = "X"
SOURCE = "distractor"
SPLICE_PROBABILITY = 0.5
CUT_RANGE = (0.45, 0.55)  # seam position, fraction of the height from the top
SEAM_FRACTION = 0.04  # seam band height, fraction of the image height
_TAG = 0x5D157  # separates these draws from other users of (seed, i) generators
_MAX_REDRAWS = 1000


@dataclass(frozen=True)
class Plan:
    """Every random choice behind one distractor.

    Attributes:
        index: the distractor's index ``i``.
        kind: ``"augment"`` or ``"splice"``.
        top: index into the train files of the (upper-body) source.
        bottom: index of the lower-body source (``== top`` for ``"augment"``).
        cut: seam position as a fraction of the height (splice only, else 0).
        flip: mirror left-right.
        crop: (left, top, right, bottom) of the kept box, fractions of the size.
        brightness, contrast, saturation: ``ImageEnhance`` factors.
        angle: rotation in degrees (counter-clockwise).
        blur: Gaussian blur radius in px, 0 for none.
    """

    index: int
    kind: str
    top: int
    bottom: int
    cut: float
    flip: bool
    crop: tuple[float, float, float, float]
    brightness: float
    contrast: float
    saturation: float
    angle: float
    blur: float


def train_pool(folder: Path) -> list[Path]:
    """The image files of a train folder, sorted by name (the order distractors index).

    Raises:
        InputError: no such folder, or images of fewer than two persons.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"expected a folder of training images at {folder}")
    files = sorted((f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda f: f.name)
    if len({person_of(f) for f in files}) < 2:
        raise InputError(f"distractors need images of at least two persons in {folder}")
    return files


def person_of(path: Path | str) -> str:
    """The person id in a file name; a name without one counts as its own person."""
    return parse_name(path).person_id or f"?{Path(path).name}"


def recipe_key(train_files: Sequence[Path | str], seed: int) -> str:
    """16 hex chars naming the distractor set: recipe version, seed, train file names."""
    h = hashlib.sha256(f"{RECIPE_VERSION};seed={int(seed)};".encode())
    h.update("\n".join(Path(f).name for f in train_files).encode())
    return h.hexdigest()[:16]


def distractor_id(key: str, i: int) -> str:
    """The primary key of distractor ``i``: sha256 hex (64 chars) of ``"<key>:<i>"``."""
    return hashlib.sha256(f"{key}:{int(i)}".encode()).hexdigest()


def distractor_meta(key: str, i: int) -> ImageMeta:
    """Metadata of distractor ``i``: person ``d<i>``, camera ``X``, source ``distractor``."""
    return ImageMeta(f"distractor://{key}/{int(i)}", f"d{int(i)}", CAMERA, SOURCE)


def plan(i: int, train_files: Sequence[Path | str], seed: int) -> Plan:
    """The random choices of distractor ``i`` (a function of ``seed``, ``i`` and the files).

    Raises:
        ValueError: ``i`` or ``seed`` negative, or a splice found no second person.
    """
    if i < 0 or seed < 0:
        raise ValueError(f"distractor index and seed must be >= 0, got i={i}, seed={seed}")
    rng = np.random.default_rng([_TAG, int(seed), int(i)])
    n = len(train_files)
    top = int(rng.integers(n))
    bottom, cut = top, 0.0
    kind = "splice" if rng.random() < SPLICE_PROBABILITY else "augment"
    if kind == "splice":
        who = person_of(train_files[top])
        for _ in range(_MAX_REDRAWS):
            bottom = int(rng.integers(n))
            if person_of(train_files[bottom]) != who:
                break
        else:
            raise ValueError("no image of a second person among the train files")
        cut = float(rng.uniform(*CUT_RANGE))
    flip = bool(rng.random() < 0.5)
    kw, kh = rng.uniform(0.85, 1.0, size=2)  # kept fraction of width, height
    left, top_off = rng.uniform(0.0, 1.0 - kw), rng.uniform(0.0, 1.0 - kh)
    crop = (float(left), float(top_off), float(left + kw), float(top_off + kh))
    brightness, contrast = (float(v) for v in rng.uniform(0.75, 1.25, size=2))
    saturation = float(rng.uniform(0.7, 1.3))
    angle = float(rng.uniform(-5.0, 5.0))
    blur = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.3 else 0.0
    return Plan(i, kind, top, bottom, cut, flip, crop, brightness, contrast, saturation,
                angle, blur)


def splice(upper: Image.Image, lower: Image.Image, cut: float) -> Image.Image:
    """Upper body of ``upper`` over the lower body of ``lower``, at ``upper``'s size.

    ``lower`` is resized to ``upper``'s size; rows above ``cut * H - band / 2`` are
    ``upper``'s, rows from ``cut * H + band / 2`` on are ``lower``'s, and the band
    between blends them linearly (band = 4% of H, at least 4 px).

    Args:
        upper, lower: RGB images.
        cut: seam position, fraction of the height from the top.

    Returns:
        An RGB image of ``upper.size``.
    """
    w, h = upper.size
    a = np.asarray(upper.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    b = np.asarray(lower.convert("RGB").resize((w, h), Image.Resampling.BILINEAR),
                   dtype=np.float32)  # (H, W, 3)
    band = max(4.0, SEAM_FRACTION * h)
    y = np.arange(h, dtype=np.float32) + 0.5  # pixel-centre rows
    alpha = np.clip((cut * h + band / 2 - y) / band, 0.0, 1.0)[:, None, None]  # (H, 1, 1)
    out = alpha * a + (1.0 - alpha) * b  # (H, W, 3)
    return Image.fromarray(np.rint(out).astype(np.uint8), "RGB")


def seam_rows(height: int, cut: float) -> tuple[int, int]:
    """First blended row and first pure-lower row of :func:`splice` at ``height``."""
    band = max(4.0, SEAM_FRACTION * height)
    lo = cut * height - band / 2
    first_blend = int(np.floor(lo - 0.5)) + 1  # first y with y + 0.5 > lo
    first_lower = int(np.ceil(cut * height + band / 2 - 0.5))  # first y with y + 0.5 >= hi
    return max(first_blend, 0), min(first_lower, height)


def augment_image(img: Image.Image, p: Plan) -> Image.Image:
    """Applies the flip, crop, colour, rotation and blur of ``p``; keeps the size."""
    w, h = img.size
    if p.flip:
        img = ImageOps.mirror(img)
    box = (p.crop[0] * w, p.crop[1] * h, p.crop[2] * w, p.crop[3] * h)
    img = img.resize((w, h), Image.Resampling.BILINEAR, box=box)
    img = ImageEnhance.Brightness(img).enhance(p.brightness)
    img = ImageEnhance.Contrast(img).enhance(p.contrast)
    img = ImageEnhance.Color(img).enhance(p.saturation)
    mean = tuple(int(v) for v in np.asarray(img).reshape(-1, 3).mean(0))
    img = img.rotate(p.angle, Image.Resampling.BILINEAR, fillcolor=mean)
    if p.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(p.blur))
    return img


def render(p: Plan, train_files: Sequence[Path | str], *, augment: bool = True) -> Image.Image:
    """The distractor image of a plan (``augment=False``: the splice or source alone)."""
    with Image.open(train_files[p.top]) as f:
        img = f.convert("RGB")
    if p.kind == "splice":
        with Image.open(train_files[p.bottom]) as f:
            img = splice(img, f.convert("RGB"), p.cut)
    return augment_image(img, p) if augment else img


def make_distractor(i: int, train_files: Sequence[Path | str], seed: int) -> Image.Image:
    """Distractor ``i``: an RGB image, a pure function of ``(seed, i)`` and the files.

    Args:
        i: 0-based index.
        train_files: the train images (:func:`train_pool`), in this order.
        seed: the distractor set's seed.
    """
    return render(plan(i, train_files, seed), train_files)


def to_pixels(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Model input from an in-memory image, as :func:`reidctl.data.images.decode` makes it.

    Args:
        size: (H, W).

    Returns:
        (3, H, W) uint8 RGB.
    """
    h, w = size
    arr = np.asarray(img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), np.uint8)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))  # (H, W, 3) -> (3, H, W)
