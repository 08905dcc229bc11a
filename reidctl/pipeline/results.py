"""Typed results of fit-pca, calibrate, train and info; ``to_dict()`` is their ``--json`` form.

The fields are declared in the order of the JSON keys. Nothing here imports torch or
the store, so ``reidctl info`` stays light.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the types only: importing them would load torch
    from reidctl.pipeline.train import TrainSettings
    from reidctl.store import StoreInfo


class _Report:
    """``to_dict()`` for a dataclass whose fields are its JSON keys, in order."""

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object: every field, nested dataclasses as objects."""
        return asdict(self)  # every subclass is a dataclass


@dataclass(frozen=True)
class FitReport(_Report):
    """What ``reidctl fit-pca`` reports (see :func:`reidctl.pipeline.fit.fit_model`).

    Attributes:
        out: the checkpoint written.
        fingerprint: its feature-space fingerprint.
        images: training images the projections were fitted on.
        skipped: unusable files by reason.
        pca: description of the f_g PCA; stripe_whitening: of the first stripe's whitening.
        fine_weight: the local distance's weight saved with the checkpoint.
        seconds: wall time, rounded to 0.1 s.
    """

    out: str
    fingerprint: str
    images: int
    skipped: dict[str, int]
    pca: str
    stripe_whitening: str
    fine_weight: float
    seconds: float

    @property
    def skipped_total(self) -> int:
        """Files skipped for any reason."""
        return sum(self.skipped.values())


@dataclass(frozen=True)
class CalibrateReport(_Report):
    """What ``reidctl calibrate`` reports (see
    :func:`reidctl.pipeline.calibrate.calibrate_model`).

    Attributes:
        out: the checkpoint written; fingerprint: its (unchanged) fingerprint.
        threshold: the "no match" distance.
        fmr, tmr: false- and true-match rates (fractions) at ``threshold`` on the
            calibration split itself (NaN without impostor or genuine queries).
        queries_genuine, queries_impostor: the queries the rates are measured over.
        target_fmr: the false-match rate asked for.
        images, identities: the calibration split's size.
        skipped: unusable files by reason.
        protocol: the split's description.
        fine_weight: the weight of the local distance in the calibrated distance.
        model: where the model came from.
        seconds: wall time, rounded to 0.1 s.
    """

    out: str
    fingerprint: str
    threshold: float
    fmr: float
    tmr: float
    queries_genuine: int
    queries_impostor: int
    target_fmr: float
    images: int
    identities: int
    skipped: dict[str, int]
    protocol: str
    fine_weight: float
    model: str
    seconds: float


@dataclass(frozen=True)
class TrainReport(_Report):
    """What ``reidctl train`` reports (see :func:`reidctl.pipeline.train.train`).

    Attributes:
        out: the checkpoint written; state: the training state file beside it.
        fingerprint: the checkpoint's fingerprint.
        backbone: base network name; input_size: ``"HxW"``; device: where it trained.
        images, identities: the training data's size.
        epochs: epochs of the recipe; resumed_from_epoch: epochs a saved state had done
            (0 for a fresh run).
        final_loss, final_acc: the last epoch's means (None without an epoch).
        history: one ``{"epoch", "epochs", "loss", "ce", "triplet", "acc", "seconds"}``
            per epoch, including those of a resumed state.
        seconds_per_epoch: mean training seconds per epoch (None without an epoch).
        train_wall_s: training seconds over all epochs; fit_s: fitting the projections;
            seconds: this call's wall time (all rounded to 0.1 s).
        pca: description of the f_g PCA; stripe_whitening: of the first stripe's whitening.
        settings: the recipe.
    """

    out: str
    state: str
    fingerprint: str
    backbone: str
    input_size: str
    device: str
    images: int
    identities: int
    epochs: int
    resumed_from_epoch: int
    final_loss: float | None
    final_acc: float | None
    history: list[dict[str, Any]]
    seconds_per_epoch: float | None
    train_wall_s: float
    fit_s: float
    seconds: float
    pca: str
    stripe_whitening: str
    settings: TrainSettings


@dataclass(frozen=True)
class PairInfo:
    """One collection pair in ``reidctl info``.

    Attributes:
        name: the pair name.
        global_count, local_count: rows in each collection.
        global_dim, local_dim: dimensions of f_g and f_l.
        model: fingerprint of the model that made the vectors; backbone: its base network.
        index: the global ANN index ``{"type", "metric", "params"}``.
        schemas: schema tag per role.
    """

    name: str
    global_count: int
    local_count: int
    global_dim: int
    local_dim: int
    model: str | None
    backbone: str | None
    index: dict[str, Any]
    schemas: dict[str, str]

    @classmethod
    def from_store(cls, i: StoreInfo) -> PairInfo:
        """The row of :meth:`reidctl.store.MilvusStore.info`'s answer."""
        return cls(i.name, i.global_count, i.local_count, i.global_dim, i.local_dim,
                   i.model.get("fingerprint"), i.model.get("backbone"), i.index, i.schemas)


@dataclass(frozen=True)
class SettingInfo:
    """A setting as ``reidctl info`` shows it: its printable value and where it came from."""

    name: str
    value: Any
    source: str


@dataclass(frozen=True)
class InfoReport(_Report):
    """What ``reidctl info`` reports.

    Attributes:
        uri: the database URI without credentials; backend: ``"milvus-lite"`` or
            ``"milvus-server"``.
        disk_bytes: the Lite database's size on disk (None for a server).
        collections: the pairs shown.
        config_file: the configuration file read, if any.
        settings: every setting that applies, with its source.
    """

    uri: str
    backend: str
    disk_bytes: int | None
    collections: list[PairInfo]
    config_file: str | None
    settings: list[SettingInfo]
