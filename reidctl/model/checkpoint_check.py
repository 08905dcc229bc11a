"""Every field of a checkpoint, checked before anything is built from it.

The fingerprint proves that a checkpoint was not altered after it was written, not
that what was written is usable: a training that diverged writes NaN weights, and a
file from elsewhere can claim any shape or value. So :func:`check_fields` types and
bounds each field the loader reads, and :func:`build_model` builds the declared
architecture on the meta device (nothing allocated, whatever shapes the file claims),
runs a shape-only forward pass, compares the state dict with it, and only then
allocates the real model. Each failure is a :class:`ModelError` naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from reidctl.errors import ModelError
from reidctl.model._util import check_state_dict, first_line
from reidctl.model.backbones import (
    MAX_EMBEDDING,
    SPECS,
    BackboneSpec,
    backbone_spec,
    feature_map_size,
    rebuild_backbone,
)
from reidctl.model.convnet import ConvNet
from reidctl.model.fingerprint import FINGERPRINT_CHARS
from reidctl.model.graph_exec import GraphModule
from reidctl.model.ir_backbone import IrBackbone
from reidctl.model.pca import KINDS, PCA

# Fine-stage distance d^2 = d_g^2 + FINE_WEIGHT * d_l^2 (the full descriptor [f_g, sqrt(w) f_l]).
# 0.5 was chosen on held-out CUHK03 *train* identities (docs/benchmarks.md), never on val.
DEFAULT_FINE_WEIGHT = 0.5
# Both parts are unit-norm (distances up to 2): beyond 100 the global distance no longer
# counts, and a huge weight only pushes distances towards overflow.
MAX_FINE_WEIGHT = 100.0
PLAIN = (str, int, float, bool, type(None))
_FINGERPRINT = re.compile(f"[0-9a-f]{{{FINGERPRINT_CHARS}}}")
_MISSING = object()


@dataclass(frozen=True)
class CheckedFields:
    """The fields of a checkpoint, typed and bounded (see :func:`check_fields`)."""

    spec: BackboneSpec
    classes: list[str]
    stripes: int
    pca: PCA
    stripe_pca: tuple[PCA, ...]
    fine_weight: float
    open_set: dict[str, Any] | None
    arch: dict[str, Any]
    state: Mapping[str, Any]
    extra: dict[str, Any]
    fingerprint: str


def _shown(value: Any) -> str:
    """``value`` for a message: its type, and a short repr of plain values."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(value).__name__} {text}"


def check_plain(value: Any, where: str) -> None:
    """Refuse anything but str/int/float/bool/None in nested lists and str-keyed dicts.

    Raises:
        ValueError: naming the first offending key or value (``where`` is its path).
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string")
            check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, PLAIN):
        raise ValueError(f"{where} has type {type(value).__name__}; "
                         "use str/int/float/bool/None/list/dict")


def check_int(value: Any, field: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (bools are not ints here).

    Raises:
        ValueError: naming ``field`` and what is wrong.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an integer, got {_shown(value)}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{field} is {value}, must be {bound}")
    return value


def check_real(value: Any, field: str, low: float, high: float, *, inf_ok: bool = False) -> float:
    """``value`` as a float in ``[low, high]``: a real number, not a bool, never NaN.

    Args:
        value: what the file holds.
        field: its name, for the message.
        low, high: the allowed range.
        inf_ok: accept ``high = inf`` itself (an infinite threshold accepts everything).

    Raises:
        ValueError: naming ``field`` and what is wrong.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field} must be a number, got {_shown(value)}")
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not inf_ok):
        kind = "a number" if inf_ok else "a finite number"
        raise ValueError(f"{field} is {number}, must be {kind} in [{low:g}, {high:g}]")
    if not low <= number <= high:
        raise ValueError(f"{field} is {number:g}, must be in [{low:g}, {high:g}]")
    return number


def _check_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, got {_shown(value)}")
    return value


def check_fine_weight(value: Any) -> float:
    """The fine-stage weight: a finite number in ``[0, MAX_FINE_WEIGHT]``.

    Raises:
        ValueError: naming ``fine_weight``.
    """
    return check_real(value, "fine_weight", 0.0, MAX_FINE_WEIGHT)


def check_open_set(value: Any) -> dict[str, Any] | None:
    """The open-set record (see :mod:`reidctl.openset`): None, or plain data with a threshold.

    ``threshold`` is a distance ``>= 0`` (``inf``: calibrated at target 1, every best
    hit matches; NaN would also match everything, silently); ``target_fmr`` a rate in
    [0, 1]; ``fmr``/``tmr`` measured rates (numbers, NaN when nothing was counted);
    ``calibrated_on`` says where it was measured. Only ``threshold`` is required.

    Raises:
        ValueError: naming the field (``open_set.threshold`` etc.).
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"open_set must be None or a dict with a numeric 'threshold', "
                         f"got {_shown(value)}")
    check_plain(value, "open_set")
    if "threshold" not in value:
        raise ValueError("open_set must be None or a dict with a numeric 'threshold'")
    check_real(value["threshold"], "open_set.threshold", 0.0, math.inf, inf_ok=True)
    if "target_fmr" in value:
        check_real(value["target_fmr"], "open_set.target_fmr", 0.0, 1.0)
    for key in ("fmr", "tmr"):
        if key in value and (isinstance(value[key], bool)
                             or not isinstance(value[key], (int, float))):
            raise ValueError(f"open_set.{key} must be a number, got {_shown(value[key])}")
    where = value.get("calibrated_on")
    if where is not None:
        if not isinstance(where, dict):
            raise ValueError(f"open_set.calibrated_on must be a dict, got {_shown(where)}")
        for key in ("path", "protocol"):
            if key in where:
                _check_str(where[key], f"open_set.calibrated_on.{key}")
        for key in ("images", "identities"):
            if key in where:
                check_int(where[key], f"open_set.calibrated_on.{key}", 0)
    return dict(value)


def _check_array(value: Any, field: str, shape: tuple[int | None, ...],
                 nonnegative: bool = False) -> None:
    """A finite floating-point tensor of ``shape`` (``None``: any size)."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{field} must be a tensor, got {_shown(value)}")
    if not value.is_floating_point():
        raise ValueError(f"{field} must be a floating-point tensor, got dtype {value.dtype}")
    if value.dim() != len(shape) or any(
            want is not None and got != want for got, want in zip(value.shape, shape, strict=True)):
        want = ", ".join("D" if d is None else str(d) for d in shape)
        raise ValueError(f"{field} has shape {list(value.shape)}, expected [{want}]")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{field} holds NaN or inf values")
    if nonnegative and bool((value < 0).any()):
        raise ValueError(f"{field} holds negative values")


def check_pca(value: Any, field: str, in_dim: int, out_dim: int | None = None) -> PCA:
    """A PCA dict (:meth:`PCA.to_dict`) projecting ``in_dim`` to ``out_dim`` (None: 1..in_dim).

    Raises:
        ValueError: naming the field, e.g. ``pca.components``.
    """
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be a dict, got {_shown(value)}")
    for key in ("kind", "whiten", "mean", "components", "explained_variance"):
        if key not in value:
            raise ValueError(f"{field}.{key} is missing")
    if value["kind"] not in KINDS:
        raise ValueError(f"{field}.kind must be one of {', '.join(KINDS)}, "
                         f"got {_shown(value['kind'])}")
    if not isinstance(value["whiten"], bool):
        raise ValueError(f"{field}.whiten must be true or false, got {_shown(value['whiten'])}")
    _check_array(value["mean"], f"{field}.mean", (in_dim,))
    _check_array(value["components"], f"{field}.components", (in_dim, out_dim))
    dim = int(value["components"].shape[1])
    if not 1 <= dim <= in_dim:
        raise ValueError(f"{field}.components projects {in_dim}-D to {dim}-D, "
                         f"must be to 1..{in_dim}-D")
    variance = value["explained_variance"]
    if variance is not None or value["whiten"]:
        _check_array(variance, f"{field}.explained_variance", (dim,), nonnegative=True)
    check_real(value.get("shrinkage", 0.0), f"{field}.shrinkage", 0.0, math.inf)
    return PCA.from_dict(value)


def _field(data: Mapping[str, Any], key: str, default: Any = _MISSING) -> Any:
    if key in data:
        return data[key]
    if default is _MISSING:
        raise ValueError(f"field {key!r} is missing")
    return default


def _check_fields(data: Mapping[str, Any]) -> CheckedFields:
    name = _check_str(_field(data, "backbone"), "backbone")
    if name not in SPECS:
        raise ValueError(f"backbone {name!r} is unknown (known: {', '.join(SPECS)})")
    spec = backbone_spec(name)
    size = _field(data, "input_size")
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"input_size must be [height, width], got {_shown(size)}")
    size = (check_int(size[0], "input_size[0]", 1), check_int(size[1], "input_size[1]", 1))
    channels = check_int(_field(data, "channels"), "channels", 1)
    if (size, channels) != (spec.input_size, spec.channels):
        want = f"{spec.input_size[0]}x{spec.input_size[1]} with {spec.channels}"
        raise ValueError(f"input size {size[0]}x{size[1]} with {channels} channels does not "
                         f"match the {name} architecture ({want})")
    classes = _field(data, "classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError("classes must be a list of strings")
    num_classes = check_int(_field(data, "num_classes"), "num_classes", 0)
    if len(classes) != num_classes:
        raise ValueError(f"{len(classes)} class names for num_classes = {num_classes}")
    map_h = feature_map_size(spec)[0]
    stripes = check_int(_field(data, "stripes"), "stripes", 1, map_h)
    if map_h % stripes:
        raise ValueError(f"stripes is {stripes}: the {map_h}-row feature map does not divide "
                         "into that many stripes")
    k = spec.channels
    arch = _field(data, "arch")
    head_dim = arch.get("embedding_dim") if isinstance(arch, dict) else None
    # f_g is projected from the backbone's head output when it has one, else from the GAP
    g_in = check_int(head_dim, "arch.embedding_dim", 1, MAX_EMBEDDING) if head_dim is not None \
        else k
    pca = check_pca(_field(data, "pca"), "pca", g_in)
    stripe_dicts = _field(data, "stripe_pca", [])  # absent in files older than whitening
    if not isinstance(stripe_dicts, (list, tuple)) or len(stripe_dicts) not in (0, stripes):
        raise ValueError(f"stripe_pca must be a list of 0 or {stripes} projections")
    stripe_pca = tuple(check_pca(p, f"stripe_pca[{i}]", k) for i, p in enumerate(stripe_dicts))
    if len({p.out_dim for p in stripe_pca}) > 1:
        raise ValueError("stripe_pca projections must all have one output dimension, got "
                         f"{sorted({p.out_dim for p in stripe_pca})}")
    fine_weight = check_fine_weight(_field(data, "fine_weight", DEFAULT_FINE_WEIGHT))
    open_set = check_open_set(_field(data, "open_set", None))  # absent before calibration
    extra = _field(data, "extra")
    for key, value in (("arch", arch), ("extra", extra)):
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be a dict, got {_shown(value)}")
    check_plain(extra, "extra")
    fp = _check_str(_field(data, "fingerprint"), "fingerprint")
    if not _FINGERPRINT.fullmatch(fp):
        raise ValueError(f"fingerprint must be {FINGERPRINT_CHARS} hex digits, got {fp[:40]!r}")
    return CheckedFields(spec, classes, stripes, pca, stripe_pca, fine_weight, open_set, arch,
                         _field(data, "state_dict"), dict(extra), fp)


def check_fields(data: Mapping[str, Any], where: str) -> CheckedFields:
    """Type and bound every field of a checkpoint except the state dict's tensors.

    Args:
        data: what ``torch.load`` returned (its format tag already checked).
        where: the file, for messages.

    Returns:
        The fields, ready to use.

    Raises:
        ModelError: ``"<where>: <field> ..."``, one line naming the field and what is wrong.
    """
    try:
        return _check_fields(data)
    except (ValueError, ModelError) as exc:
        raise ModelError(f"{where}: {first_line(exc)}") from exc


def build_model(fields: CheckedFields, where: str, device: str | torch.device) -> ConvNet:
    """The ConvNet the checkpoint describes, with its weights, in eval mode.

    The architecture is built on the meta device and probed with a shape-only forward
    pass; the state dict is compared with it (keys, shapes, dtype kinds, finite values)
    before the real model is allocated on ``device`` and filled.

    Raises:
        ModelError: an ``arch`` that does not build, does not run or gives another
            feature map than the backbone's; a state dict that does not fit.
    """
    spec = fields.spec
    try:
        with torch.device("meta"):
            model = ConvNet(rebuild_backbone(spec.name, fields.arch), spec.channels,
                            len(fields.classes))
            model.drop_training_blocks()  # never in a checkpoint
            backbone = model.backbone
            run = backbone.probe if isinstance(backbone, (GraphModule, IrBackbone)) else backbone
            shape = tuple(run(torch.empty(1, 3, *spec.input_size)).shape)
    except ModelError as exc:
        raise ModelError(f"{where}: arch: {first_line(exc)}") from exc
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise ModelError(f"{where}: arch does not run as a {spec.name} network: "
                         f"{first_line(exc)}") from exc
    expected = (1, spec.channels, *feature_map_size(spec))
    if shape != expected:
        raise ModelError(f"{where}: arch gives a feature map of {list(shape[1:])}, "
                         f"the {spec.name} backbone one of {list(expected[1:])}")
    if isinstance(backbone, IrBackbone) and backbone.map_at is not None:
        try:
            with torch.device("meta"):
                head = tuple(backbone.probe_embed(torch.empty(expected)).shape)
        except (ModelError, RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise ModelError(f"{where}: arch: the head does not run: {first_line(exc)}") from exc
        if head != (1, backbone.embedding_dim):
            raise ModelError(f"{where}: arch: the head gives {list(head[1:])}, not the "
                             f"declared embedding_dim {backbone.embedding_dim}")
    check_state_dict(model, fields.state, where)
    model = model.to_empty(device=device)  # shapes checked: now allocate, then fill
    try:
        model.load_state_dict(fields.state, strict=True)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(f"{where}: state_dict does not fit the model: "
                         f"{first_line(exc)}") from exc
    return model.eval()
