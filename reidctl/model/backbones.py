"""Base networks: each maps ``(B, 3, H, W)`` normalised images to ``(B, K, h, w)``.

- ``osnet_x0_25``: OSNet-x0.25 (MSMT17 weights) imported from ONNX and cut at
  its last convolutional map; 256x128 input, ``K = 128``, map 16x8.
- ``googlenet``: torchvision GoogLeNet (BatchNorm in every BasicConv2d) up to
  ``inception5b``; 512x256 input, ``K = 1024``, map 16x8 (the paper's setup).
- ``omz_0286`` / ``omz_0277``: Open Model Zoo ``person-reidentification-retail-0286``
  / ``-0277`` (OSNet with Linear Context Transform blocks) imported from OpenVINO IR
  and cut at their last conv map (layer ``1126``); 256x128 input, ``K = 384`` / ``512``,
  map 16x8. A fixed adapter turns reidctl's normalised RGB into the graphs' BGR 0-255.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torchvision
from torch import nn

from reidctl.errors import ModelError
from reidctl.model._util import load_state_dict_strict
from reidctl.model.ir_backbone import IrBackbone
from reidctl.model.ir_import import load_ir_module
from reidctl.model.ir_ops import IrGraphModule
from reidctl.model.onnx_graph import OnnxGraphModule

OSNET_ENV = "REIDCTL_OSNET_WEIGHTS"
OSNET_FILE = "osnet_x0_25_msmt17.onnx"
OSNET_CUT = "/conv5/relu/Relu_output_0"  # last conv map, before global pooling + fc
OMZ_ENV = "REIDCTL_OMZ_DIR"  # a folder holding the OMZ .xml/.bin pairs
SHARED_ENV = "REIDCTL_SHARED"  # the shared/ folder: weights/ (and datasets/) inside
OMZ_CUT = "1126"  # the last conv map's ReLU, before the pooling head
MAX_EMBEDDING = 8192  # largest head output a checkpoint may declare
GOOGLENET_SEED = 0
# torchvision GoogLeNet children kept as the feature extractor (avgpool, dropout, fc dropped).
GOOGLENET_LAYERS = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
    "inception5a", "inception5b",
)  # fmt: skip


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone expects and produces.

    Attributes:
        name: ``"osnet_x0_25"``, ``"googlenet"``, ``"omz_0286"`` or ``"omz_0277"``.
        input_size: ``(H, W)`` of the input images.
        channels: ``K``, channels of the last convolutional map.
    """

    name: str
    input_size: tuple[int, int]
    channels: int


OSNET_X0_25 = BackboneSpec("osnet_x0_25", (256, 128), 128)
GOOGLENET = BackboneSpec("googlenet", (512, 256), 1024)
OMZ_0286 = BackboneSpec("omz_0286", (256, 128), 384)
OMZ_0277 = BackboneSpec("omz_0277", (256, 128), 512)
SPECS: dict[str, BackboneSpec] = {s.name: s for s in (OSNET_X0_25, GOOGLENET, OMZ_0286, OMZ_0277)}
# input size / feature-map size of each backbone: 256x128 -> 16x8 and 512x256 -> 16x8
OUTPUT_STRIDE: dict[str, int] = {OSNET_X0_25.name: 16, GOOGLENET.name: 32, OMZ_0286.name: 16,
                                 OMZ_0277.name: 16}
OMZ_FILES: dict[str, str] = {OMZ_0286.name: "person-reidentification-retail-0286.xml",
                             OMZ_0277.name: "person-reidentification-retail-0277.xml"}


class Backbone(NamedTuple):
    """A built backbone: the module, its spec and where its weights came from."""

    module: nn.Module
    spec: BackboneSpec
    source: str


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of a known backbone.

    Raises:
        ModelError: unknown name.
    """
    if name not in SPECS:
        raise ModelError(f"unknown backbone {name!r} (known: {', '.join(SPECS)})")
    return SPECS[name]


def feature_map_size(spec: BackboneSpec) -> tuple[int, int]:
    """``(h, w)`` of the feature map the backbone gives for its input size (16x8 for all)."""
    stride = OUTPUT_STRIDE[spec.name]
    return spec.input_size[0] // stride, spec.input_size[1] // stride


def _shared_weights() -> Path:
    """``$REIDCTL_SHARED/weights`` when set, else ``shared/weights`` beside the source
    checkout (``<dir above the repository>/shared/weights``; an installed wheel has no
    such folder, so there one of the settings must name the files)."""
    env = os.environ.get(SHARED_ENV)
    if env:
        return Path(env) / "weights"
    import reidctl

    return Path(reidctl.__file__).resolve().parents[2] / "shared" / "weights"


def default_osnet_weights() -> Path:
    """Where the OSNet ONNX file is looked for.

    Returns:
        ``$REIDCTL_OSNET_WEIGHTS`` when set, else ``<shared>/weights/osnet_x0_25_msmt17.onnx``
        (see :func:`_shared_weights`).
    """
    env = os.environ.get(OSNET_ENV)
    return Path(env) if env else _shared_weights() / OSNET_FILE


def default_omz_dir() -> Path:
    """Where the OMZ IR files are looked for.

    Returns:
        ``$REIDCTL_OMZ_DIR`` when set, else ``<shared>/weights/omz`` (see
        :func:`_shared_weights`).
    """
    env = os.environ.get(OMZ_ENV)
    return Path(env) if env else _shared_weights() / "omz"


def _not_found(what: str, path: Path, env: str, points_to: str, under_shared: str) -> ModelError:
    """The one-line error for a default weights file that is not there.

    It names the setting the path came from (``env``, ``REIDCTL_SHARED``, or neither:
    the default beside the source checkout) and the settings that can point elsewhere.

    Args:
        what: e.g. ``"OSNet weights"``.
        path: the file looked for.
        env: the variable naming this file or folder directly.
        points_to: what ``env`` must name, e.g. ``"the path of osnet_x0_25_msmt17.onnx"``.
        under_shared: the file's place under the shared folder, e.g. ``"weights/omz/x.xml"``.
    """
    if os.environ.get(env):
        return ModelError(f"{what} not found at {path} (from {env}); set {env} to {points_to}")
    origin = (f"under {SHARED_ENV}" if os.environ.get(SHARED_ENV)
              else f"the default, as neither {env} nor {SHARED_ENV} is set")
    return ModelError(f"{what} not found at {path} ({origin}); set {env} to {points_to}, "
                      f"or {SHARED_ENV} to the folder holding {under_shared}")


def _check_map(module: nn.Module, spec: BackboneSpec, path: Path) -> None:
    """One cheap probe: a wrong file fails here, not at first use."""
    with torch.no_grad():
        out = module(torch.zeros(1, 3, *spec.input_size))
    h, w = feature_map_size(spec)
    if tuple(out.shape) != (1, spec.channels, h, w):
        raise ModelError(
            f"{path}: feature map {list(out.shape)[1:]} != [{spec.channels}, {h}, {w}]"
        )


def build_omz(name: str, weights: str | Path | None = None) -> Backbone:
    """An Open Model Zoo ReID network from its IR, cut at layer ``1126`` (its last conv map).

    Args:
        name: ``"omz_0286"`` or ``"omz_0277"``.
        weights: the ``.xml`` file (its ``.bin`` beside it), or a folder holding it;
            default :func:`default_omz_dir`.

    Returns:
        Backbone whose module (an :class:`IrBackbone`) maps ``(B, 3, 256, 128)``
        normalised RGB -> ``(B, K, 16, 8)``, ``K`` = 384 (0286) or 512 (0277); its
        ``embed`` runs the network's own head on that map: ``(B, 256)``, the input of f_g.

    Raises:
        ModelError: unknown name, file missing (the message says where it looked and
            which environment variable to set), malformed, or of another shape.
    """
    spec = backbone_spec(name)
    if name not in OMZ_FILES:
        raise ModelError(f"{name!r} is not an OMZ backbone (known: {', '.join(OMZ_FILES)})")
    xml = OMZ_FILES[name]
    if weights is None:
        path = default_omz_dir() / xml
        if not path.is_file() or not path.with_suffix(".bin").is_file():
            raise _not_found(f"{name} weights", path, OMZ_ENV,
                             f"the folder holding {xml} and its .bin", f"weights/omz/{xml}")
    else:
        path = Path(weights) / xml if Path(weights).is_dir() else Path(weights)
        if not path.is_file() or not path.with_suffix(".bin").is_file():
            raise ModelError(f"{name} weights not found at {path} (and its .bin)")
    graph = load_ir_module(path)  # to the embedding: the head pools the map for f_g
    with torch.no_grad():
        dim = graph(torch.zeros(1, 3, *spec.input_size)).shape
    if len(dim) != 2:
        raise ModelError(f"{path}: the network's output {list(dim)} is not one vector per image")
    module = IrBackbone(graph, OMZ_CUT, int(dim[1]))
    _check_map(module, spec, path)
    return Backbone(module, spec, f"openvino-ir:{path}")


def build_osnet_x0_25(weights: str | Path | None = None) -> Backbone:
    """OSNet-x0.25 from its ONNX export, cut at ``/conv5/relu/Relu_output_0``.

    Args:
        weights: the ``.onnx`` file; default :func:`default_osnet_weights`.

    Returns:
        Backbone whose module maps ``(B, 3, 256, 128)`` -> ``(B, 128, 16, 8)``.

    Raises:
        ModelError: file missing (the message says where it looked and which
            environment variable to set), unreadable, or of another shape.
    """
    from reidctl.model.onnx_import import load_onnx_module  # imports onnx

    path = Path(weights) if weights is not None else default_osnet_weights()
    if not path.is_file():
        if weights is not None:
            raise ModelError(f"OSNet weights not found at {path}")
        raise _not_found("OSNet weights", path, OSNET_ENV, f"the path of {OSNET_FILE}",
                         f"weights/{OSNET_FILE}")
    module = load_onnx_module(path, OSNET_CUT)
    _check_map(module, OSNET_X0_25, path)
    return Backbone(module, OSNET_X0_25, f"onnx:{path}")


def _googlenet_features(init_weights: bool) -> nn.Sequential:
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=init_weights)
    children = dict(net.named_children())
    # Same child names as torchvision, so its state dicts (minus fc/aux) load as is.
    return nn.Sequential(OrderedDict((name, children[name]) for name in GOOGLENET_LAYERS))


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"GoogLeNet state_dict file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ModelError(f"cannot read state_dict file {path}: {type(exc).__name__}") from exc
    if not isinstance(state, dict):
        raise ModelError(f"{path} does not hold a state_dict (got {type(state).__name__})")
    return state


def build_googlenet(weights: str | Path | None = None, seed: int = GOOGLENET_SEED) -> Backbone:
    """GoogLeNet (with BatchNorm) feature layers up to ``inception5b``.

    Args:
        weights: optional ``torch.save``-d state_dict (torchvision GoogLeNet
            names; ``fc.*``/``aux*`` entries are ignored). ``None``: random
            init, seeded with ``seed`` without touching the global RNG state.
        seed: seed for the random initialisation.

    Returns:
        Backbone whose module maps ``(B, 3, 512, 256)`` -> ``(B, 1024, 16, 8)``.

    Raises:
        ModelError: unreadable or mismatched state_dict file.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = _googlenet_features(init_weights=True)
    if weights is None:
        return Backbone(module, GOOGLENET, f"random-init (seed {seed})")
    path = Path(weights)
    state = _load_state_dict_file(path)
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "aux1.", "aux2."))}
    load_state_dict_strict(module, state, f"{path} (GoogLeNet)")
    return Backbone(module, GOOGLENET, f"state_dict:{path}")


def build_backbone(name: str, weights: str | Path | None = None) -> Backbone:
    """Build a backbone by name with its default (or the given) weights.

    Args:
        name: ``"osnet_x0_25"``, ``"googlenet"``, ``"omz_0286"`` or ``"omz_0277"``.
        weights: ONNX file for OSNet, state_dict file for GoogLeNet, IR ``.xml`` file
            (or its folder) for the OMZ networks, or ``None``.

    Raises:
        ModelError: unknown name, missing or bad weights.
    """
    backbone_spec(name)
    if name == OSNET_X0_25.name:
        return build_osnet_x0_25(weights)
    if name in OMZ_FILES:
        return build_omz(name, weights)
    return build_googlenet(weights)


def backbone_arch(module: nn.Module) -> dict[str, Any]:
    """Architecture data a checkpoint needs to rebuild ``module`` without files.

    Returns:
        ``{"onnx_graph": GraphSpec}`` for an ONNX-imported module,
        ``{"ir_graph": GraphSpec}`` for an IR-imported one (plus ``"ir_map"`` and
        ``"embedding_dim"`` when it has a head), else ``{}``.
    """
    if isinstance(module, OnnxGraphModule):
        return {"onnx_graph": module.graph_spec()}
    if isinstance(module, IrBackbone):
        head = ({"ir_map": module.map_at, "embedding_dim": module.embedding_dim}
                if module.map_at is not None else {})
        return {"ir_graph": module.graph.graph_spec(), **head}
    return {}


def rebuild_backbone(name: str, arch: dict[str, Any]) -> nn.Module:
    """An uninitialised backbone of the recorded architecture (load a state dict next).

    Args:
        name: backbone name from the checkpoint.
        arch: what :func:`backbone_arch` returned at save time.

    Raises:
        ModelError: unknown name or missing/malformed architecture data.
    """
    backbone_spec(name)
    if name == OSNET_X0_25.name:
        if "onnx_graph" not in arch:
            raise ModelError("checkpoint of an osnet_x0_25 model lacks its ONNX graph")
        return OnnxGraphModule(arch["onnx_graph"])
    if name in OMZ_FILES:
        if "ir_graph" not in arch:
            raise ModelError(f"checkpoint of an {name} model lacks its IR graph")
        map_at, dim = arch.get("ir_map"), arch.get("embedding_dim")
        if map_at is not None and (not isinstance(map_at, str) or isinstance(dim, bool)
                                   or not isinstance(dim, int) or not 1 <= dim <= MAX_EMBEDDING):
            raise ModelError(f"checkpoint of an {name} model has a malformed head: ir_map "
                             f"{str(map_at)[:40]!r}, embedding_dim {str(dim)[:40]!r}")
        return IrBackbone(IrGraphModule(arch["ir_graph"]), map_at, dim)
    with torch.random.fork_rng(devices=[]):  # default init draws from the global RNG
        return _googlenet_features(init_weights=False)
