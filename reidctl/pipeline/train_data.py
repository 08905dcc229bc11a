"""Training data: a labeled folder -> files, class indices, and batches of augmented images."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from reidctl.data.augment import AugmentSettings, augment, sample_rng
from reidctl.data.images import SkipImage, discover, load
from reidctl.data.names import parse_name
from reidctl.errors import InputError

NOT_IDENTITIES = frozenset({"-1", "0000"})  # Market-1501 junk and distractors (no identity)


@dataclass(frozen=True)
class LabeledFiles:
    """The training set.

    Attributes:
        root: the data folder.
        files: ``(N,)`` image paths, sorted.
        labels: ``(N,)`` class index of each file.
        classes: identity names, ``classes[label]``; sorted.
        excluded: files left out by reason (e.g. Market-1501 junk).
        sha256: hash of the sorted relative file paths, to recognise the same data.
    """

    root: Path
    files: list[Path]
    labels: list[int]
    classes: list[str]
    excluded: dict[str, int]
    sha256: str


def labeled_files(root: Path, max_identities: int | None = None) -> LabeledFiles:
    """Lists a labeled image folder (recursively); identity = person id in the file name.

    Args:
        root: folder of ``PPPP_KK.jpg`` (CUHK03) or Market-1501-named images.
        max_identities: keep only the first N identities (sorted by name).

    Raises:
        InputError: missing or empty folder, a file whose name gives no person id,
            fewer than 2 identities.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"training data folder does not exist: {root}")
    files = discover([root])
    metas = [parse_name(f) for f in files]
    unnamed = [f for f, m in zip(files, metas, strict=True) if not m.person_id]
    if unnamed:
        raise InputError(
            f"{len(unnamed)} file(s) in {root} give no person id (expected CUHK03 PPPP_KK.jpg "
            f"or Market-1501 names), e.g. {unnamed[0].name}")
    sources = {m.source for m in metas}
    excluded: Counter[str] = Counter()
    keyed: list[tuple[Path, str]] = []
    for f, m in zip(files, metas, strict=True):
        if m.source == "market1501" and m.person_id in NOT_IDENTITIES:
            excluded["market1501 junk/distractor"] += 1
            continue
        key = m.person_id if len(sources) == 1 else f"{m.source}/{m.person_id}"
        keyed.append((f, key))
    classes = sorted({key for _, key in keyed})
    if max_identities is not None:
        classes = classes[:max_identities]
    if len(classes) < 2:
        raise InputError(f"training needs at least 2 identities, {root} gives {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    kept = [(f, index[key]) for f, key in keyed if key in index]
    base = root.resolve()  # discover() returns resolved paths
    names = "\n".join(f.relative_to(base).as_posix() if f.is_relative_to(base) else str(f)
                      for f, _ in kept)
    return LabeledFiles(root, [f for f, _ in kept], [y for _, y in kept], classes,
                        dict(excluded), hashlib.sha256(names.encode()).hexdigest())


class AugmentedImages(Dataset):
    """Decodes and augments one training image per item.

    Items are ``(file index, epoch, position in the epoch)``; the augmentation is
    drawn from :func:`~reidctl.data.augment.sample_rng` of ``(seed, epoch, position)``.
    A file that cannot be decoded yields a zero image and its error text, which
    the training loop turns into one InputError (exceptions raised in a DataLoader
    worker would reach the user wrapped in a traceback).
    """

    def __init__(self, files: Sequence[Path], labels: Sequence[int], size: tuple[int, int],
                 seed: int, settings: AugmentSettings) -> None:
        self.files = list(files)
        self.labels = list(labels)
        self.size = size
        self.seed = seed
        self.settings = settings

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int, int]) -> tuple[torch.Tensor, int, str]:
        i, epoch, position = item
        try:
            pixels = torch.from_numpy(load(self.files[i], self.size).pixels)  # (3, H, W)
        except (SkipImage, OSError) as e:
            return torch.zeros(3, *self.size, dtype=torch.uint8), self.labels[i], \
                f"cannot use training image {self.files[i]}: {e}"
        return augment(pixels, self.settings, sample_rng(self.seed, epoch, position)), \
            self.labels[i], ""


def _seed_worker(worker_id: int) -> None:
    """Seeds python and numpy in a worker from its torch seed (set by the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def epoch_batches(
    dataset: AugmentedImages, batches: Sequence[Sequence[int]], epoch: int, workers: int,
    seed: int, pin: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Decoded, augmented batches of one epoch, in order, decoding ahead in workers.

    Args:
        batches: file indices of each batch (:func:`~reidctl.data.sampler.pk_batches`).
        epoch: 0-based epoch.
        workers: DataLoader worker processes (0: decode in this process).
        pin: pin host memory (for CUDA).

    Yields:
        ``(B, 3, H, W)`` uint8 images and ``(B,)`` int64 labels.

    Raises:
        InputError: an image could not be decoded.
    """
    items: list[list[tuple[int, int, int]]] = []
    position = 0
    for batch in batches:
        items.append([(i, epoch, position + j) for j, i in enumerate(batch)])
        position += len(batch)
    loader = DataLoader(
        dataset, batch_sampler=items, num_workers=workers, worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed * 100_003 + epoch),
        prefetch_factor=4 if workers else None, pin_memory=pin,
    )
    for images, labels, errors in loader:
        bad = [e for e in errors if e]
        if bad:
            raise InputError(bad[0])
        yield images, labels
