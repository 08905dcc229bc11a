"""The one entry point the rest of reidctl uses: images in, descriptors out."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidctl.errors import ModelError
from reidctl.model.backbones import SPECS, BackboneSpec, build_backbone
from reidctl.model.checkpoint import load_checkpoint
from reidctl.model.checkpoint_check import DEFAULT_FINE_WEIGHT
from reidctl.model.convnet import ConvNet
from reidctl.model.descriptors import Descriptors, describe
from reidctl.model.fingerprint import fingerprint
from reidctl.model.pca import PCA

DEFAULT_MODEL = "osnet_x0_25"
GLOBAL_DIM = 128
DEFAULT_STRIPES = 4
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureExtractor:
    """A ConvNet + PCA in eval mode that turns image batches into descriptors.

    Args:
        model: the ConvNet (its classifier block, if any, is not run).
        spec: backbone spec (input size, ``K``).
        pca: ``K -> 128`` projection for ``f_g``.
        stripes: stripes of ``f_l``.
        stripe_pca: per-stripe whitening of ``f_l`` (empty: none).
        fine_weight: weight of the local distance in the fine stage.
        source: where the weights came from, for reports.
        device: where to run.
        open_set: the checkpoint's calibrated open-set record (``"threshold"``
            etc., see :mod:`reidctl.openset`), or None.
        checkpoint: the checkpoint file it was loaded from, None for a backbone.

    Attributes:
        name, input_size (H, W), global_dim (128), local_dim (stripes * K),
        stripes, fingerprint, pca_kind, device, mean, std (ImageNet RGB),
        checkpoint.
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __init__(
        self,
        model: ConvNet,
        spec: BackboneSpec,
        pca: PCA,
        stripes: int = DEFAULT_STRIPES,
        source: str = "",
        device: str | torch.device = "cpu",
        stripe_pca: Sequence[PCA] = (),
        fine_weight: float = DEFAULT_FINE_WEIGHT,
        *,
        open_set: dict[str, Any] | None = None,
        checkpoint: Path | None = None,
    ) -> None:
        if pca.in_dim != spec.channels:
            raise ModelError(f"{spec.name}: PCA input dim {pca.in_dim} != K={spec.channels}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.spec = spec
        self.pca = pca.to(self.device)
        self.name = spec.name
        self.input_size: tuple[int, int] = spec.input_size
        self.stripes = stripes
        self.global_dim = pca.out_dim
        self.local_dim = stripes * spec.channels
        self.pca_kind = pca.kind
        self.stripe_pca = tuple(p.to(self.device) for p in stripe_pca)
        self.fine_weight = float(fine_weight)
        self.source = source
        self.checkpoint = checkpoint
        self._open_set = copy.deepcopy(open_set)
        self.fingerprint = fingerprint(model, spec, pca, stripes, stripe_pca)
        # (1, 3, 1, 1) each, broadcast over (B, 3, H, W)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

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

    def _input(self, batch: torch.Tensor) -> torch.Tensor:
        self._check(batch)
        x = batch.to(self.device, torch.float32)
        x = (x - self._mean) / self._std  # (B, 3, H, W), ImageNet-normalised
        if self.device.type == "cpu":  # oneDNN convs run ~1.5x faster on NHWC input (measured)
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.inference_mode()
    def pooled(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Raw pooled features, before any projection (to fit PCA and whitening on).

        Args:
            batch: as for :meth:`extract`.

        Returns:
            GAP ``(B, K)`` and per-stripe GAP ``(B, stripes, K)``, float32 numpy.
        """
        fm = self.model.features(self._input(batch))  # (B, K, H, W)
        b, k, h, w = fm.shape
        parts = fm.reshape(b, k, self.stripes, h // self.stripes, w)  # (B, K, stripes, h, W)
        stripes = parts.mean(dim=(3, 4)).transpose(1, 2)  # (B, stripes, K)
        return fm.mean(dim=(2, 3)).float().cpu().numpy(), stripes.float().cpu().numpy()

    @torch.inference_mode()
    def extract(self, batch: torch.Tensor) -> Descriptors[np.ndarray]:
        """Descriptors of a batch of RGB images.

        Args:
            batch: ``(B, 3, H, W)`` float in ``[0, 1]``, not normalised, ``(H, W)``
                equal to :attr:`input_size`; any device.

        Returns:
            ``Descriptors(global_ (B, 128), local (B, stripes * K))`` float32
            numpy arrays, unit-norm rows.

        Raises:
            ValueError: not a float tensor of that shape.
        """
        fm = self.model.features(self._input(batch))  # (B, K, H, W)
        out = describe(fm, self.pca, self.stripes, self.stripe_pca)
        return Descriptors(
            out.global_.float().cpu().numpy(),
            out.local.float().cpu().numpy(),
        )


def _device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!s} requested but CUDA is not available")
    return dev


def load_model(
    spec: str | Path | None = None,
    device: str | torch.device = "cpu",
    *,
    weights: str | Path | None = None,
) -> FeatureExtractor:
    """Build the feature extractor the rest of the application uses.

    Args:
        spec: ``"osnet_x0_25"`` (default; zero-shot ONNX weights, fallback
            PCA), ``"googlenet"`` (random init seeded with 0, fallback PCA), or
            the path of a reidctl checkpoint.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        weights: for a backbone name only: the ONNX file (OSNet) or a
            state_dict file (GoogLeNet) instead of the default.

    Returns:
        A :class:`FeatureExtractor` in eval mode on ``device``.

    Raises:
        ModelError: unknown name and no such file, missing/bad weights or
            checkpoint, CUDA requested but absent.
    """
    dev = _device(device)
    name = DEFAULT_MODEL if spec is None else str(spec)
    if name in SPECS:
        backbone = build_backbone(name, weights)
        model = ConvNet(backbone.module, backbone.spec.channels, num_classes=0)
        pca = PCA.fallback(backbone.spec.channels, GLOBAL_DIM)
        return FeatureExtractor(model, backbone.spec, pca, DEFAULT_STRIPES, backbone.source, dev)
    if weights is not None:
        raise ModelError("weights= applies to a backbone name, not to a checkpoint")
    path = Path(name)
    if not path.is_file():
        raise ModelError(
            f"model {name!r} is neither a backbone ({', '.join(SPECS)}) "
            "nor an existing checkpoint file"
        )
    loaded = load_checkpoint(path, map_location=dev)
    return FeatureExtractor(
        loaded.model, loaded.spec, loaded.pca, loaded.stripes, f"checkpoint:{path}", dev,
        loaded.stripe_pca, loaded.fine_weight, open_set=loaded.open_set, checkpoint=path,
    )
