"""Fitting the descriptor projections on training images: the PCA of f_g, and per f_l
stripe a discriminant projection (when the images' names give identities) or a whitening."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from reidctl.data.batches import decoded_batches
from reidctl.data.names import parse_name
from reidctl.errors import InputError
from reidctl.model import GLOBAL_DIM, PCA, FeatureExtractor, save_checkpoint
from reidctl.model.checkpoint_check import check_fine_weight
from reidctl.pipeline.common import DEFAULT_BATCH, ProgressFn
from reidctl.pipeline.results import FitReport
from reidctl.timing import Stopwatch
from reidctl.types import UNKNOWN

DEFAULT_SHRINKAGE = 2.0  # chosen on held-out CUHK03 train identities (docs/benchmarks.md)
# The stripes' discriminant projection (PCA.fit_lda), its within-class shrinkage and the fine
# weight that goes with it: chosen on held-out CUHK03 train identities (docs/benchmarks.md).
LDA_DIM = 32
LDA_SHRINKAGE = 0.1
LDA_FINE_WEIGHT = 0.5


def pool_images(
    extractor: FeatureExtractor, files: Sequence[Path | str], batch_size: int = DEFAULT_BATCH,
    on_progress: ProgressFn | None = None,
    on_skip: Callable[[Path | str, str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Path | str]]:
    """What f_g is projected from and per-stripe GAP of the (unaugmented) images;
    undecodable ones are left out.

    Returns:
        ``(N, D_in)`` global input (:meth:`ConvNet.global_input`: the GAP, or the backbone's
        head output), ``(N, stripes, K)`` stripe GAP, and the ``N`` files they come from.
    """
    pooled: list[np.ndarray] = []
    stripes: list[np.ndarray] = []
    used: list[Path | str] = []
    batches = decoded_batches(files, extractor.input_size, batch_size, strict=False,
                              on_skip=on_skip)
    for n_read, kept, batch in batches:
        if kept:
            g, s = extractor.pooled(batch)  # (B, D_in), (B, stripes, K)
            pooled.append(g)
            stripes.append(s)
            used.extend(kept)
        if on_progress:
            on_progress(n_read)
    if not pooled:
        k, d = extractor.spec.channels, extractor.model.global_in_dim
        return np.zeros((0, d), np.float32), np.zeros((0, extractor.stripes, k), np.float32), []
    return np.concatenate(pooled), np.concatenate(stripes), used


def fit_projections(
    extractor: FeatureExtractor, files: Sequence[Path], *, dim: int = GLOBAL_DIM,
    shrinkage: float = DEFAULT_SHRINKAGE, batch_size: int = DEFAULT_BATCH,
    on_progress: ProgressFn | None = None, global_lda: bool = True,
) -> tuple[PCA, list[PCA], Counter[str]]:
    """Fits the f_g PCA and one projection per stripe.

    When the file names give identities (:func:`identities`), both are discriminant
    projections (``PCA.fit_lda``) fitted on them: f_g from the GAP or the backbone's
    head output to ``dim`` (with more than ``dim`` identities, and ``global_lda``), each
    stripe K -> ``LDA_DIM``. ``train`` passes ``global_lda=False``: on held-out identities
    the discriminant f_g added 8 mAP to a pretrained head but cost a fine-tuned head 2.5
    points of rank-1 (docs/benchmarks.md).
    Otherwise f_g is K -> dim whitened with shrinkage from the GAP, or D_head -> dim without
    whitening from the backbone's head output, and each stripe a K -> K whitening with
    ``shrinkage``.

    Returns:
        (global PCA, per-stripe PCAs, skipped files by reason).

    Raises:
        InputError: fewer usable images than dimensions to fit.
    """
    skipped: Counter[str] = Counter()
    g_all, s_all, used = pool_images(extractor, files, batch_size, on_progress,
                                  on_skip=lambda _p, reason: skipped.update([reason]))
    n, k = len(g_all), extractor.spec.channels
    need = max(dim, k, extractor.model.global_in_dim)
    if n <= need:
        raise InputError(f"need more than {need} usable training images to fit, got {n}")
    labels = identities(used, min(LDA_DIM, k))
    if global_lda and labels is not None and len(np.unique(labels)) > dim:
        pca = PCA.fit_lda(g_all, labels, dim, LDA_SHRINKAGE)
    else:
        # a network's own head already gives a trained embedding: whitening it lowers mAP
        # (held-out CUHK03 train ids, docs/benchmarks.md), so it is only projected
        whiten = not extractor.model.has_head
        pca = PCA.fit(g_all, dim=dim, whiten=whiten, shrinkage=shrinkage if whiten else 0.0)
    if labels is not None:
        stripe_pca = [PCA.fit_lda(s_all[:, i], labels, min(LDA_DIM, k), LDA_SHRINKAGE)
                      for i in range(s_all.shape[1])]
    else:
        stripe_pca = [PCA.fit(s_all[:, i], dim=k, whiten=True, shrinkage=shrinkage)
                      for i in range(s_all.shape[1])]
    return pca, stripe_pca, skipped


def identities(files: Sequence[Path | str], dim: int) -> np.ndarray | None:
    """Identity labels of training images, from their names (``parse_name``), when every
    image has one and there are more than ``dim`` identities, some with two images or more
    (what a ``dim``-D discriminant projection needs); else None.

    Returns:
        ``(N,)`` integer labels, or None.
    """
    persons = [parse_name(f).person_id for f in files]
    if any(p in (UNKNOWN, "-1") for p in persons):  # unknown, or Market-1501's junk
        return None
    _, labels, counts = np.unique(persons, return_inverse=True, return_counts=True)
    if len(counts) <= dim or counts.max() < 2:
        return None
    return labels


def fine_weight_for(stripe_pca: Sequence[PCA], current: float) -> float:
    """The fine weight that goes with a fitted stripe projection: ``LDA_FINE_WEIGHT`` after
    a discriminant projection, else ``current`` (the model's)."""
    return LDA_FINE_WEIGHT if stripe_pca and stripe_pca[0].kind == "lda" else current


def fit_model(
    extractor: FeatureExtractor, files: Sequence[Path], out: Path, *, dim: int = GLOBAL_DIM,
    shrinkage: float = DEFAULT_SHRINKAGE, fine_weight: float | None = None,
    on_progress: ProgressFn | None = None,
) -> FitReport:
    """Fits the projections and writes a self-describing checkpoint with them.

    Returns:
        What was written: output path, fingerprint, images used and skipped, the
        projections, seconds.

    Raises:
        InputError: ``fine_weight`` is not a finite number in [0, 100].
    """
    if fine_weight is not None:  # before the fit, not when the checkpoint is written
        try:
            check_fine_weight(fine_weight)
        except ValueError as e:
            raise InputError(str(e)) from None
    clock = Stopwatch.started()
    pca, stripe_pca, skipped = fit_projections(
        extractor, files, dim=dim, shrinkage=shrinkage, on_progress=on_progress)
    model = extractor.model
    if model.num_classes:
        model.drop_classifier()  # descriptors never use it; a fitted model is for retrieval
    used = len(files) - sum(skipped.values())
    weight = (fine_weight_for(stripe_pca, extractor.fine_weight) if fine_weight is None
              else fine_weight)
    extra = {
        "fitted_on": sorted({str(Path(f).parent) for f in files})[:20],
        "fit_images": used,
        "fit_skipped": dict(skipped),
        "pca_dim": dim,
        "shrinkage": shrinkage,
        "projection": stripe_pca[0].kind,  # "lda": fitted on the images' identities
        "base_model": extractor.source,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    # a new projection invalidates any calibrated threshold: the record is left without one
    fp = save_checkpoint(out, replace(extractor.record, pca=pca, stripe_pca=tuple(stripe_pca),
                                      fine_weight=weight, classes=[], open_set=None, extra=extra))
    return FitReport(out=str(out), fingerprint=fp, images=used, skipped=dict(skipped),
                     pca=pca.describe(), stripe_whitening=stripe_pca[0].describe(),
                     fine_weight=weight, seconds=round(clock.elapsed(), 1))
