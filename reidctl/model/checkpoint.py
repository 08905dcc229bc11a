"""Self-describing checkpoints: architecture, input size, classes, PCA and a
fingerprint travel with the state dict (one ``torch.save`` dict).

Everything in the file is a tensor or plain python data, so it loads with
``torch.load(weights_only=True)``. ONNX- and OpenVINO-IR-derived backbones store
their graph as plain data, so loading never needs the ``.onnx`` or ``.xml`` file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidctl.errors import ModelError
from reidctl.model.backbones import BackboneSpec, backbone_arch
from reidctl.model.checkpoint_check import (
    DEFAULT_FINE_WEIGHT,
    build_model,
    check_fields,
    check_fine_weight,
    check_open_set,
    check_pca,
    check_plain,
)
from reidctl.model.convnet import TRAINING_ONLY, ConvNet
from reidctl.model.descriptors import STRIPES
from reidctl.model.fingerprint import fingerprint
from reidctl.model.pca import PCA

CHECKPOINT_FORMAT = "reidctl.convnet/1"


@dataclass(frozen=True)
class ModelRecord:
    """A model and everything needed to use it: what a checkpoint holds, saved and loaded.

    Attributes:
        model: the ConvNet with its weights (after loading: on ``map_location``, in eval mode).
        spec: backbone name, input size, ``K``.
        pca: the ``f_g`` projection (fitted or fallback).
        classes: identity names, one per classifier output
            (``len(classes) == model.num_classes``; ``[]`` without classifier).
        stripes: stripes of ``f_l``.
        stripe_pca: per-stripe projection of ``f_l`` (``stripes`` projections ``K -> D``, a
            whitening with ``D = K`` or a discriminant projection, or empty).
        fine_weight: weight of the local distance in the fine stage, in
            ``[0, MAX_FINE_WEIGHT]``.
        open_set: the calibrated "no match" threshold and how it was obtained
            (``{"threshold", "target_fmr", "calibrated_on", "fmr", "tmr"}``,
            see :mod:`reidctl.openset`), or None. Not part of the fingerprint:
            it does not change the features.
        extra: free-form training settings etc.: plain str/int/float/bool/None/list/dict.
        fingerprint: 16 hex chars, verified against the weights on load; ignored when
            saving (:func:`save_checkpoint` computes it).
        path: the file it was loaded from; None for a record built to be saved.
    """

    model: ConvNet
    spec: BackboneSpec
    pca: PCA
    classes: list[str] = field(default_factory=list)
    stripes: int = STRIPES
    stripe_pca: tuple[PCA, ...] = ()
    fine_weight: float = DEFAULT_FINE_WEIGHT
    open_set: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    path: Path | None = None


def save_checkpoint(path: str | Path, record: ModelRecord) -> str:
    """Write a model and everything needed to use it to one file (atomically).

    Args:
        path: destination file (parent directories are created).
        record: the model (with or without its classifier block), its projections,
            class names, fine weight, open-set record (plain data with a
            ``"threshold" >= 0``, see :func:`check_open_set`) and extra settings.

    Returns:
        The fingerprint stored in the file.

    Raises:
        ValueError: classes/PCA/extra do not fit the model, a fine weight or an
            open-set record that :func:`load_checkpoint` would refuse.
    """
    model, spec, pca, stripes, stripe_pca = (record.model, record.spec, record.pca,
                                             record.stripes, record.stripe_pca)
    if len(record.classes) != model.num_classes:
        raise ValueError(f"{len(record.classes)} class names for a model with "
                         f"{model.num_classes} classes")
    if pca.in_dim != model.global_in_dim:
        raise ValueError(f"PCA input dim {pca.in_dim} != {model.global_in_dim}, the size of "
                         "what f_g is made from")
    extra = dict(record.extra or {})
    check_plain(extra, "checkpoint extra")
    fine_weight = record.fine_weight
    fine_weight = check_fine_weight(float(fine_weight) if isinstance(fine_weight, np.floating)
                                    else fine_weight)
    open_set = record.open_set
    check_open_set(open_set)
    # numpy scalars pass as float but would not load with weights_only; JSON makes them plain
    open_set = None if open_set is None else json.loads(json.dumps(open_set))
    if stripe_pca and (len(stripe_pca) != stripes or any(
            p.in_dim != spec.channels or p.out_dim != stripe_pca[0].out_dim
            for p in stripe_pca)):
        k = spec.channels
        raise ValueError(f"stripe_pca must be {stripes} projections {k}->D, all to one D")
    check_pca(pca.to_dict(), "pca", model.global_in_dim)  # finite, non-negative variances
    for j, sp in enumerate(stripe_pca):
        check_pca(sp.to_dict(), f"stripe_pca[{j}]", spec.channels)
    fp = fingerprint(model, spec, pca, stripes, stripe_pca)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
             if not k.startswith(TRAINING_ONLY)}  # the per-stripe and embedding classifiers
    payload = {
        "format": CHECKPOINT_FORMAT,
        "backbone": spec.name,
        "input_size": list(spec.input_size),
        "channels": spec.channels,
        "num_classes": model.num_classes,
        "classes": [str(c) for c in record.classes],
        "stripes": stripes,
        "pca": pca.to_dict(),
        "stripe_pca": [p.to_dict() for p in stripe_pca],
        "fine_weight": fine_weight,
        "arch": backbone_arch(model.backbone),
        "state_dict": state,
        "fingerprint": fp,
        "extra": extra,
        "open_set": open_set,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # readers never see a half-written checkpoint
    return fp


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, unsafe global, ...
        raise ModelError(
            f"cannot read checkpoint {path} (corrupted or not a torch file): {type(exc).__name__}"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        tag = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ModelError(
            f"{path} is not a reidctl checkpoint (format {tag!r}, expected {CHECKPOINT_FORMAT!r})"
        )
    return data


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> ModelRecord:
    """Rebuild a ConvNet from a file written by :func:`save_checkpoint`.

    Args:
        path: the checkpoint file.
        map_location: device for the tensors (as in ``torch.load``).

    Returns:
        A :class:`ModelRecord` with its ``fingerprint`` and ``path``; the model is in eval mode.

    Raises:
        ModelError: missing, truncated or corrupted file, wrong format tag, a
            field missing or of the wrong type, shape or range (every field is
            checked before anything is built, see
            :mod:`reidctl.model.checkpoint_check`), state dict not fitting the
            architecture, or weights that do not match the stored fingerprint.
    """
    path = Path(path)
    data = _read(path, map_location)
    fields = check_fields(data, str(path))
    model = build_model(fields, str(path), map_location)
    fp = fingerprint(model, fields.spec, fields.pca, fields.stripes, fields.stripe_pca)
    if fp != fields.fingerprint:
        raise ModelError(
            f"{path}: weights do not match the stored fingerprint "
            f"({fp} != {fields.fingerprint}); file altered?"
        )
    return ModelRecord(model, fields.spec, fields.pca, fields.classes, fields.stripes,
                       fields.stripe_pca, fields.fine_weight, fields.open_set, fields.extra,
                       fp, path)
