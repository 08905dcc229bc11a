"""The one entry point the rest of reidctl uses: images in, descriptors out."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidctl.config import resolve_device
from reidctl.errors import ModelError
from reidctl.model.backbones import SPECS, build_backbone
from reidctl.model.checkpoint import ModelRecord, load_checkpoint
from reidctl.model.convnet import ConvNet, ConvNetOutput, normalize
from reidctl.model.descriptors import GLOBAL_DIM, Descriptors, describe, pool
from reidctl.model.fingerprint import fingerprint
from reidctl.model.pca import PCA

DEFAULT_MODEL = "osnet_x0_25"


class FeatureExtractor:
    """A ConvNet + PCA in eval mode that turns image batches into descriptors.

    Args:
        record: the model, its projections (``pca``: ``K -> 128`` for ``f_g``;
            ``stripe_pca``: per-stripe whitening of ``f_l``, empty: none), stripes,
            fine weight and calibrated open-set record (``"threshold"`` etc., see
            :mod:`reidctl.openset`); its ``extra`` and ``classes`` are kept for saving.
        device: where to run.
        source: where the weights came from, for reports.
        checkpoint: the checkpoint file it was loaded from, None for a backbone.

    Attributes:
        name, input_size (H, W), global_dim (128), local_dim (stripes * D: D the stripe
            projection's output, K without one),
        stripes, fingerprint, pca_kind, device, checkpoint.
    """

    def __init__(
        self, record: ModelRecord, device: str | torch.device = "cpu", source: str = "", *,
        checkpoint: Path | None = None,
    ) -> None:
        spec, pca = record.spec, record.pca
        if pca.in_dim != record.model.global_in_dim:
            raise ModelError(f"{spec.name}: PCA input dim {pca.in_dim} != "
                             f"{record.model.global_in_dim}, the size of what f_g is made from")
        self.device = torch.device(device)
        self.model = record.model.to(self.device).eval()
        if self.device.type == "cpu":  # NHWC weights as well as input: oneDNN's fastest path
            self.model.to(memory_format=torch.channels_last)
        self.spec = spec
        self.pca = pca.to(self.device)
        self.name = spec.name
        self.input_size: tuple[int, int] = spec.input_size
        self.stripes = record.stripes
        self.global_dim = pca.out_dim
        self.local_dim = record.stripes * (record.stripe_pca[0].out_dim if record.stripe_pca
                                           else spec.channels)
        self.pca_kind = pca.kind
        self.stripe_pca = tuple(p.to(self.device) for p in record.stripe_pca)
        self.fine_weight = float(record.fine_weight)
        self.source = source
        self.checkpoint = checkpoint
        self._record = record
        self._open_set = copy.deepcopy(record.open_set)
        self.fingerprint = fingerprint(record.model, spec, pca, record.stripes,
                                       record.stripe_pca)

    @property
    def record(self) -> ModelRecord:
        """What :func:`~reidctl.model.save_checkpoint` writes of this model (its current
        projections and fine weight; the open-set record a copy)."""
        return replace(self._record, model=self.model, pca=self.pca, stripe_pca=self.stripe_pca,
                       fine_weight=self.fine_weight, open_set=self.open_set)

    @property
    def open_set(self) -> dict[str, Any] | None:
        """The calibrated open-set record (a copy), None when the model has none.

        ``open_set["threshold"]``: a best hit farther than this is "no match".
        """
        return copy.deepcopy(self._open_set)

    @property
    def threshold(self) -> float | None:
        """The calibrated "no match" distance, or None when the model has none."""
        return float(self._open_set["threshold"]) if self._open_set else None

    def describe(self) -> dict[str, Any]:
        """What to print about the model: backbone, input size, K, PCA, open set, fingerprint."""
        return {
            "backbone": self.name,
            "input_size": f"{self.input_size[0]}x{self.input_size[1]}",
            "channels": self.spec.channels,
            "global_dim": self.global_dim,
            "local_dim": self.local_dim,
            "stripes": self.stripes,
            "pca": self.pca_kind,
            "pca_detail": self.pca.describe(),
            "stripe_whitening": self.stripe_pca[0].describe() if self.stripe_pca else "none",
            "fine_weight": self.fine_weight,
            "open_set": self.open_set,
            "fingerprint": self.fingerprint,
            "weights": self.source,
            "device": str(self.device),
        }

    def _check(self, batch: torch.Tensor) -> None:
        h, w = self.input_size
        if not isinstance(batch, torch.Tensor):
            raise ValueError(
                f"extract expects a torch.Tensor (B, 3, {h}, {w}), got {type(batch).__name__}"
            )
        if batch.dim() != 4 or tuple(batch.shape[1:]) != (3, h, w):
            raise ValueError(
                f"{self.name} expects images of shape (B, 3, {h}, {w}), got {tuple(batch.shape)}"
            )
        if not batch.is_floating_point():
            raise ValueError(f"extract expects float images in [0, 1], got dtype {batch.dtype}")

    def _input(self, batch: torch.Tensor, *, nhwc: bool = True) -> torch.Tensor:
        self._check(batch)
        x = normalize(batch.to(self.device, torch.float32))  # (B, 3, H, W)
        if nhwc and self.device.type == "cpu":  # oneDNN convolutions are faster on NHWC input
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.inference_mode()
    def feature_maps(self, batch: torch.Tensor) -> torch.Tensor:
        """The last convolutional map of a batch, what every descriptor is pooled from.

        Args:
            batch: as for :meth:`extract`.

        Returns:
            ``(B, K, h, w)`` on :attr:`device`.
        """
        return self.model.features(self._input(batch))

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> ConvNetOutput:
        """The ConvNet's whole output for a batch: feature map, confidence maps, class scores.

        Args:
            batch: as for :meth:`extract`.

        Returns:
            :class:`ConvNetOutput` on :attr:`device` (no classifier fields without a
            classifier block).
        """
        # in the plain layout: NHWC convolutions round differently, and the confidence maps
        # stay those the pictures in the docs were drawn from
        return self.model(self._input(batch, nhwc=False))

    @torch.inference_mode()
    def pooled(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Raw pooled features, before any projection (to fit PCA and whitening on).

        Args:
            batch: as for :meth:`extract`.

        Returns:
            What f_g is projected from ``(B, D_in)`` (the GAP, or the backbone's head
            output, see :meth:`ConvNet.global_input`) and per-stripe GAP
            ``(B, stripes, K)``, float32 numpy.
        """
        fm = self.feature_maps(batch)  # (B, K, H, W)
        _, parts = pool(fm, self.stripes)  # (B, K, stripes)
        g = self.model.global_input(fm)  # (B, D_in)
        return g.float().cpu().numpy(), parts.transpose(1, 2).float().cpu().numpy()

    @torch.inference_mode()
    def extract(self, batch: torch.Tensor) -> Descriptors[np.ndarray]:
        """Descriptors of a batch of RGB images.

        Args:
            batch: ``(B, 3, H, W)`` float in ``[0, 1]``, not normalised, ``(H, W)``
                equal to :attr:`input_size`; any device.

        Returns:
            ``Descriptors(global_ (B, 128), local (B, stripes * D))`` float32
            numpy arrays, unit-norm rows.

        Raises:
            ValueError: not a float tensor of that shape.
        """
        fm = self.feature_maps(batch)  # (B, K, H, W)
        out = describe(fm, self.pca, self.stripes, self.stripe_pca, self.model.global_input(fm))
        return Descriptors(
            out.global_.float().cpu().numpy(),
            out.local.float().cpu().numpy(),
        )


def load_model(
    spec: str | Path | None = None,
    device: str | torch.device = "cpu",
    *,
    weights: str | Path | None = None,
) -> FeatureExtractor:
    """Build the feature extractor the rest of the application uses.

    Args:
        spec: ``"osnet_x0_25"`` (default; zero-shot ONNX weights, fallback
            PCA), ``"googlenet"`` (random init seeded with 0, fallback PCA),
            ``"omz_0286"`` / ``"omz_0277"`` (zero-shot OpenVINO IR weights, fallback
            PCA), or the path of a reidctl checkpoint.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        weights: for a backbone name only: the ONNX file (OSNet), a state_dict
            file (GoogLeNet) or the IR ``.xml`` file or its folder (OMZ) instead of
            the default.

    Returns:
        A :class:`FeatureExtractor` in eval mode on ``device``.

    Raises:
        ModelError: unknown name and no such file, missing/bad weights or
            checkpoint, CUDA requested but absent.
    """
    dev = resolve_device(device)
    name = DEFAULT_MODEL if spec is None else str(spec)
    if name in SPECS:
        backbone = build_backbone(name, weights)
        model = ConvNet(backbone.module, backbone.spec.channels, num_classes=0)
        pca = PCA.fallback(model.global_in_dim, GLOBAL_DIM)
        return FeatureExtractor(ModelRecord(model, backbone.spec, pca), dev, backbone.source)
    if weights is not None:
        raise ModelError("weights= applies to a backbone name, not to a checkpoint")
    path = Path(name)
    if not path.is_file():
        raise ModelError(
            f"model {name!r} is neither a backbone ({', '.join(SPECS)}) "
            "nor an existing checkpoint file"
        )
    return FeatureExtractor(load_checkpoint(path, map_location=dev), dev, f"checkpoint:{path}",
                            checkpoint=path)
