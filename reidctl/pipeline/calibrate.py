"""Open-set calibration: the "no match" distance threshold for a target false-match rate.

Descriptors of a labeled split are extracted in process and compared
exhaustively with the model's fine distance sqrt(d_g^2 + w d_l^2) (no database:
calibration splits are small). Genuine and leave-identity-out impostor scores
(:mod:`reidctl.openset`) give the threshold, written into a copy of the
checkpoint as ``open_set``; the features, hence the fingerprint, are unchanged.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidctl.data.batches import decoded_batches
from reidctl.data.datasets import Protocol, cuhk03
from reidctl.data.images import IMAGE_SUFFIXES
from reidctl.data.names import parse_name
from reidctl.errors import InputError, ModelError
from reidctl.model import FeatureExtractor, load_checkpoint, save_checkpoint
from reidctl.openset import OpenSetScores, calibrate, operating_point, scores_from_distances
from reidctl.pipeline.common import DEFAULT_BATCH, ProgressFn
from reidctl.pipeline.results import CalibrateReport
from reidctl.rerank import full_distances
from reidctl.timing import Stopwatch
from reidctl.types import ImageMeta

MARKET_JUNK = frozenset({"-1"})
MARKET_DISTRACTOR = "0000"
_CHUNK = 1024  # queries per block of the distance matrix: (1024, G) float32 at a time


def folder_protocol(folder: Path) -> Protocol:
    """Queries and gallery of a labeled folder whose file names give person and camera.

    CUHK03 names (``PPPP_KK.jpg``): camera-A images query the camera-B gallery,
    as in :func:`reidctl.data.datasets.cuhk03`. Market-1501 names: every image
    queries all the others; same person by the same camera is junk (so a query
    never finds itself), id ``-1`` is junk, ``0000`` distractors stay in the
    gallery only.

    Raises:
        InputError: no folder, no images, names of neither or of both conventions.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"expected a folder of labeled images at {folder}")
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images in {folder}")
    metas = [parse_name(f.resolve()) for f in files]
    unparsed = [m.path for m in metas if not m.person_id]
    if unparsed:
        raise InputError(
            f"{len(unparsed)} file(s) in {folder} name no person/camera (CUHK03 PPPP_KK.jpg or "
            f"Market-1501 PPPP_cXsY_FFFFFF_NN.jpg), e.g. {Path(unparsed[0]).name}")
    sources = {m.source for m in metas}
    if sources == {"cuhk03"}:
        return cuhk03(folder.parent, folder.name)
    if sources == {"market1501"}:
        return Protocol(
            dataset="market1501",
            description=f"{folder.name}: every image against all others, same-person "
                        "same-camera and id -1 ignored as junk, id 0000 kept as distractor",
            queries=[m for m in metas if m.person_id not in MARKET_JUNK | {MARKET_DISTRACTOR}],
            gallery=metas,
            junk_person_ids=MARKET_JUNK,
        )
    raise InputError(f"{folder} mixes naming conventions ({', '.join(sorted(sources))})")


def restrict(protocol: Protocol, person_ids: Collection[str]) -> Protocol:
    """The protocol with only the queries and gallery images of ``person_ids``."""
    keep = set(person_ids)
    return Protocol(
        protocol.dataset, f"{protocol.description}; {len(keep)} identities",
        [m for m in protocol.queries if m.person_id in keep],
        [m for m in protocol.gallery if m.person_id in keep],
        protocol.junk_person_ids,
    )


@dataclass(frozen=True)
class SplitFeatures:
    """Descriptors of a protocol's usable images.

    Attributes:
        queries, gallery: the images kept (unusable ones are left out).
        q_g (Q, Dg), q_l (Q, Dl), g_g (G, Dg), g_l (G, Dl): float32 descriptors.
        junk_ids: person ids ignored in the gallery.
        skipped: unusable images by reason.
    """

    queries: list[ImageMeta]
    q_g: np.ndarray
    q_l: np.ndarray
    gallery: list[ImageMeta]
    g_g: np.ndarray
    g_l: np.ndarray
    junk_ids: frozenset[str] = frozenset()
    skipped: Counter[str] = field(default_factory=Counter)

    def subset(self, person_ids: Collection[str]) -> SplitFeatures:
        """Only the queries and gallery images of ``person_ids`` (no re-extraction)."""
        keep = set(person_ids)
        qi = [i for i, m in enumerate(self.queries) if m.person_id in keep]
        gi = [i for i, m in enumerate(self.gallery) if m.person_id in keep]
        return SplitFeatures([self.queries[i] for i in qi], self.q_g[qi], self.q_l[qi],
                             [self.gallery[i] for i in gi], self.g_g[gi], self.g_l[gi],
                             self.junk_ids, self.skipped)

    def identities(self) -> list[str]:
        """Person ids seen in queries or gallery, junk excluded, sorted."""
        ids = {m.person_id for m in (*self.queries, *self.gallery)}
        return sorted(ids - self.junk_ids)


def extract_split(
    extractor: FeatureExtractor, protocol: Protocol, *, batch_size: int = DEFAULT_BATCH,
    on_progress: ProgressFn | None = None,
) -> SplitFeatures:
    """Descriptors of the protocol's images, each image extracted once.

    Raises:
        InputError: no usable query or gallery image.
    """
    paths = list(dict.fromkeys([m.path for m in (*protocol.queries, *protocol.gallery)]))
    skipped: Counter[str] = Counter()
    row: dict[str, int] = {}
    gs: list[np.ndarray] = []
    ls: list[np.ndarray] = []
    batches = decoded_batches(paths, extractor.input_size, batch_size, strict=False,
                              on_skip=lambda _p, reason: skipped.update([reason]))
    for n_read, kept, batch in batches:
        if kept:
            d = extractor.extract(batch)
            for p in kept:
                row[str(p)] = len(row)
            gs.append(d.global_)
            ls.append(d.local)
        if on_progress:
            on_progress(n_read)
    queries = [m for m in protocol.queries if m.path in row]
    gallery = [m for m in protocol.gallery if m.path in row]
    if not queries or not gallery:
        raise InputError(f"no usable {'query' if not queries else 'gallery'} image to calibrate "
                         f"on ({protocol.description})")
    f_g, f_l = np.concatenate(gs), np.concatenate(ls)  # (N, Dg), (N, Dl)
    qi = [row[m.path] for m in queries]
    gi = [row[m.path] for m in gallery]
    return SplitFeatures(queries, f_g[qi], f_l[qi], gallery, f_g[gi], f_l[gi],
                         protocol.junk_person_ids, skipped)


def split_scores(
    features: SplitFeatures, fine_weight: float, device: torch.device | None = None,
) -> OpenSetScores:
    """Genuine and leave-identity-out impostor scores under the fine distance (exhaustive).

    Gallery images of the query's person from the query's camera are junk, as in evaluation.
    """
    device = device or torch.device("cpu")
    g_g = torch.as_tensor(features.g_g, device=device)  # (G, Dg)
    g_l = torch.as_tensor(features.g_l, device=device)  # (G, Dl)
    g_ids = np.array([m.person_id for m in features.gallery])
    g_cams = np.array([m.camera for m in features.gallery])
    parts = []
    for s in range(0, len(features.queries), _CHUNK):
        q = features.queries[s:s + _CHUNK]
        d = full_distances(features.q_g[s:s + _CHUNK], features.q_l[s:s + _CHUNK], g_g, g_l,
                           fine_weight)  # (B, G)
        parts.append(scores_from_distances(
            d.cpu().numpy(), [m.person_id for m in q], g_ids, [m.camera for m in q],
            g_cams, junk_ids=features.junk_ids))
    return OpenSetScores.concat(parts)


def _common_folder(metas: Sequence[ImageMeta]) -> str:
    return os.path.commonpath([str(Path(m.path).parent) for m in metas])


def _write(extractor: FeatureExtractor, out: Path, open_set: dict[str, Any]) -> str:
    """The extractor's checkpoint (or the built-in model as one) with ``open_set``."""
    if extractor.checkpoint is not None:
        # the file as it is now: a change since it was loaded shows in the fingerprint below
        fp = save_checkpoint(out, replace(load_checkpoint(extractor.checkpoint),
                                          open_set=open_set))
    else:
        if extractor.model.num_classes:
            raise ModelError("a model with a classifier block but no checkpoint cannot be saved")
        extra = {"base_model": extractor.source,
                 "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        fp = save_checkpoint(out, replace(extractor.record, extra=extra, open_set=open_set))
    if fp != extractor.fingerprint:
        raise ModelError(f"{extractor.checkpoint} changed while calibrating "
                         f"(fingerprint {fp} != {extractor.fingerprint})")
    return fp


def calibrate_model(
    extractor: FeatureExtractor, protocol: Protocol, target_fmr: float, out: Path, *,
    device: torch.device | None = None, batch_size: int = DEFAULT_BATCH,
    on_stage: Callable[[str, int], ProgressFn] | None = None,
) -> CalibrateReport:
    """Calibrates the "no match" threshold on a labeled split; writes the checkpoint with it.

    The threshold is the largest distance whose false-match rate over the
    split's leave-identity-out impostor scores is at most ``target_fmr``
    (:func:`reidctl.openset.calibrate`). The output is the model's checkpoint
    (or the built-in model saved as one) plus ``open_set = {"threshold",
    "target_fmr", "calibrated_on": {"path", "images", "identities", "protocol"},
    "fmr", "tmr"}``, FMR and TMR measured on the calibration split itself.

    Args:
        extractor: the model; its fine weight defines the distance.
        protocol: the calibration split (queries, gallery, junk ids); never the
            data the model is evaluated on.
        target_fmr: tolerated false-match rate in [0, 1].
        out: checkpoint to write (may be the input checkpoint).
        device: where to compute distances.
        on_stage: called with (stage name, total steps); returns a progress callback.

    Returns:
        The checkpoint written, the threshold, its operating point on the split, the
        split's size and the seconds taken.

    Raises:
        InputError: target outside [0, 1], no usable query or gallery image.
        ModelError: the checkpoint cannot be read or written back unchanged.
    """
    if not 0.0 <= target_fmr <= 1.0:
        raise InputError(f"target FMR must be in [0, 1], got {target_fmr}")
    clock = Stopwatch.started()
    n_paths = len({m.path for m in (*protocol.queries, *protocol.gallery)})
    advance = on_stage("extract", n_paths) if on_stage else None
    features = extract_split(extractor, protocol, batch_size=batch_size, on_progress=advance)
    scores = split_scores(features, extractor.fine_weight, device)
    threshold = calibrate(scores.impostor, target_fmr)
    point = operating_point(scores, threshold)
    images = len({m.path for m in (*features.queries, *features.gallery)})
    identities = len(features.identities())
    open_set = {
        "threshold": threshold,
        "target_fmr": float(target_fmr),
        "calibrated_on": {"path": _common_folder([*features.queries, *features.gallery]),
                          "images": images, "identities": identities,
                          "protocol": protocol.description},
        "fmr": point["fmr"],
        "tmr": point["tmr"],
    }
    fp = _write(extractor, Path(out), open_set)
    return CalibrateReport(
        out=str(out), fingerprint=fp, threshold=float(point["threshold"]),
        fmr=float(point["fmr"]), tmr=float(point["tmr"]),
        queries_genuine=int(point["queries_genuine"]),
        queries_impostor=int(point["queries_impostor"]), target_fmr=float(target_fmr),
        images=images, identities=identities, skipped=dict(features.skipped),
        protocol=protocol.description,
        fine_weight=extractor.fine_weight, model=extractor.source,
        seconds=round(clock.elapsed(), 1))
