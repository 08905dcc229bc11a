"""PCA that maps the ``K``-D pooled feature to the 128-D global descriptor.

A fitted PCA comes from training features. When none has been fitted (a
zero-shot model) :meth:`PCA.fallback` gives an identity (``K == 128``, e.g.
OSNet-x0.25) or a seeded random orthogonal projection (``K > 128``, e.g.
GoogLeNet's 1024); :attr:`PCA.kind` records which, so reports can state it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reidctl.errors import ModelError

KINDS = ("pca", "identity", "random-orthogonal", "lda")
WHITEN_EPS = 1e-6  # keeps whitening finite for (near) zero-variance directions
FALLBACK_SEED = 0


@dataclass(frozen=True, eq=False)
class PCA:
    """A linear projection ``y = (x - mean) @ components`` (optionally whitened).

    Attributes:
        mean: ``(K,)`` float32, subtracted before projecting.
        components: ``(K, D)`` float32, orthonormal columns (kind ``"lda"``: the
            discriminant directions, not orthonormal).
        explained_variance: ``(D,)`` float32 variance along each component (fitted PCA;
            kind ``"lda"``: the between-class to within-class variance ratio of each
            direction), else ``None``.
        whiten: divide each output by ``sqrt(explained_variance + shrinkage * mean + eps)``.
        kind: ``"pca"``, ``"identity"``, ``"random-orthogonal"`` or ``"lda"``.
        shrinkage: of the whitening (``"pca"``), or of the within-class covariance
            (``"lda"``, see :meth:`fit_lda`).
    """

    mean: torch.Tensor
    components: torch.Tensor
    explained_variance: torch.Tensor | None = None
    whiten: bool = False
    kind: str = "pca"
    shrinkage: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"PCA kind must be one of {KINDS}, got {self.kind!r}")
        if (
            self.mean.dim() != 1
            or self.components.dim() != 2
            or self.components.shape[0] != self.mean.shape[0]
        ):
            raise ValueError(
                f"PCA shapes do not fit: mean {list(self.mean.shape)}, "
                f"components {list(self.components.shape)}"
            )
        if self.whiten and (
            self.explained_variance is None or self.explained_variance.shape != (self.out_dim,)
        ):
            raise ValueError("a whitening PCA needs explained_variance of shape (D,)")

    @property
    def in_dim(self) -> int:
        """``K``, the input dimension."""
        return int(self.components.shape[0])

    @property
    def out_dim(self) -> int:
        """``D``, the output dimension."""
        return int(self.components.shape[1])

    @classmethod
    def fit(
        cls, features: torch.Tensor | np.ndarray, dim: int = 128, whiten: bool = False,
        shrinkage: float = 0.0,
    ) -> PCA:
        """Fit on pooled features by SVD of the centred data (float64).

        Each component's sign is fixed so that its largest-magnitude entry is
        positive, which makes the result unique and reproducible.

        Args:
            features: ``(N, K)`` training features (GAP of the feature maps).
            dim: ``D``, number of components kept, ``1 <= D <= min(N, K)``.
            whiten: scale outputs to unit variance.
            shrinkage: with ``whiten``, add ``shrinkage`` times the mean variance to
                every component's variance before dividing: full whitening (0)
                amplifies noisy low-variance directions; shrinkage keeps its gain
                on the dominant ones (measured on CUHK03 train, see docs/benchmarks.md).

        Returns:
            A PCA of kind ``"pca"``: mean ``(K,)``, components ``(K, D)``.

        Raises:
            ValueError: wrong rank, too few samples or dimensions, non-finite input.
        """
        x = torch.as_tensor(features).detach().to("cpu", torch.float64)
        if x.dim() != 2:
            raise ValueError(f"PCA.fit expects (N, K) features, got shape {list(x.shape)}")
        n, k = x.shape
        if not 1 <= dim <= min(n, k):
            raise ValueError(f"PCA.fit: dim={dim} must be in [1, min(N={n}, K={k})]")
        if not torch.isfinite(x).all():
            raise ValueError("PCA.fit: features contain NaN or inf")
        mean = x.mean(dim=0)  # (K,)
        # s: (min(N, K),), vh: (min(N, K), K)
        _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
        components = vh[:dim].T  # (K, D)
        rows = components.abs().argmax(dim=0)  # (D,)
        signs = torch.sign(components[rows, torch.arange(dim)])  # (D,)
        components = components * signs
        variance = s[:dim] ** 2 / max(n - 1, 1)  # (D,)
        return cls(mean.float(), components.float(), variance.float(), whiten, "pca", shrinkage)

    @classmethod
    def fit_lda(
        cls, features: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
        dim: int, shrinkage: float = 0.1,
    ) -> PCA:
        """Fit a linear discriminant projection (Fisher LDA) on labelled features (float64).

        Whitens the within-class covariance ``S_w`` (shrunk towards its mean variance:
        ``S_w + shrinkage * tr(S_w) / K * I``, so directions that barely vary within the
        training identities are not blown up), then keeps the ``dim`` directions of largest
        between-class variance in that space: distances after the projection weigh a
        direction by how well it told the training identities apart, not by how much it
        varies. Each direction's sign is fixed as in :meth:`fit`.

        Args:
            features: ``(N, K)`` training features.
            labels: ``(N,)`` identity of each row.
            dim: ``D``, ``1 <= D <= min(K, identities - 1)``.
            shrinkage: of the within-class covariance, ``>= 0``.

        Returns:
            A projection of kind ``"lda"``: mean ``(K,)``, components ``(K, D)``, the
            between/within variance ratio of each direction ``(D,)``, no whitening.

        Raises:
            ValueError: wrong shapes, too few identities, non-finite input.
        """
        x = torch.as_tensor(features).detach().to("cpu", torch.float64)
        y = torch.as_tensor(labels).detach().to("cpu").long()
        if x.dim() != 2 or y.shape != (x.shape[0],):
            raise ValueError(f"PCA.fit_lda expects (N, K) features and (N,) labels, got "
                             f"{list(x.shape)} and {list(y.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("PCA.fit_lda: features contain NaN or inf")
        if shrinkage < 0:
            raise ValueError(f"PCA.fit_lda: shrinkage must be >= 0, got {shrinkage}")
        classes, y = torch.unique(y, return_inverse=True)  # y: (N,) in [0, C)
        n, k = x.shape
        if not 1 <= dim <= min(k, len(classes) - 1):
            raise ValueError(f"PCA.fit_lda: dim={dim} must be in [1, min(K={k}, "
                             f"identities - 1 = {len(classes) - 1})]")
        mean = x.mean(dim=0)  # (K,)
        xc = x - mean  # (N, K)
        counts = torch.bincount(y).double()  # (C,)
        means = torch.zeros(len(classes), k, dtype=torch.float64).index_add_(0, y, xc)
        means = means / counts[:, None]  # (C, K) class means, centred
        within = xc - means[y]  # (N, K)
        s_w = within.T @ within / n  # (K, K)
        s_w = s_w + shrinkage * torch.trace(s_w) / k * torch.eye(k, dtype=torch.float64)
        s_b = (means.T * counts) @ means / n  # (K, K)
        w_val, w_vec = torch.linalg.eigh(s_w)  # ascending, all > 0 after shrinkage
        white = w_vec / w_val.clamp_min(1e-12).sqrt()  # (K, K): S_w^-1/2 (up to rotation)
        b_val, b_vec = torch.linalg.eigh(white.T @ s_b @ white)  # ascending
        order = torch.argsort(b_val, descending=True)[:dim]
        components = white @ b_vec[:, order]  # (K, D)
        rows = components.abs().argmax(dim=0)  # (D,)
        components = components * torch.sign(components[rows, torch.arange(dim)])
        ratio = b_val[order].clamp_min(0.0)  # (D,)
        return cls(mean.float(), components.float(), ratio.float(), False, "lda",
                   float(shrinkage))

    @classmethod
    def fallback(cls, in_dim: int, dim: int = 128) -> PCA:
        """The projection used when no PCA has been fitted.

        Args:
            in_dim: ``K`` of the backbone.
            dim: ``D`` wanted (128).

        Returns:
            Identity when ``K == D``; a random orthogonal ``(K, D)`` projection
            (``torch.Generator`` seeded with 0, QR with signs fixed by ``diag(R)``)
            when ``K > D``. Either way the mean is zero.

        Raises:
            ValueError: ``K < D``, a projection cannot raise the dimension.
        """
        mean = torch.zeros(in_dim)
        if in_dim == dim:
            return cls(mean, torch.eye(dim), None, False, "identity")
        if in_dim < dim:
            raise ValueError(
                f"no fallback projection from {in_dim}-D up to {dim}-D (K must be >= {dim})"
            )
        gen = torch.Generator().manual_seed(FALLBACK_SEED)
        gauss = torch.randn(in_dim, dim, generator=gen, dtype=torch.float64)  # (K, D)
        q, r = torch.linalg.qr(gauss)  # q (K, D), r (D, D)
        q = q * torch.sign(torch.diagonal(r))  # (K, D), unique Q
        return cls(mean, q.float(), None, False, "random-orthogonal")

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Project features.

        Args:
            x: ``(N, K)`` features on any device.

        Returns:
            ``(N, D)`` projected features, on ``x``'s device and dtype.
        """
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"PCA expects (N, {self.in_dim}) features, got shape {list(x.shape)}")
        mean = self.mean.to(x.device, x.dtype)
        y = (x - mean) @ self.components.to(x.device, x.dtype)  # (N, D)
        if self.whiten and self.explained_variance is not None:
            var = self.explained_variance.to(x.device, x.dtype)  # (D,)
            y = y / torch.sqrt(var + self.shrinkage * var.mean() + WHITEN_EPS)
        return y

    def to(self, device: str | torch.device) -> PCA:
        """The same projection with its tensors on ``device``."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        mean, components = self.mean.to(device), self.components.to(device)
        return PCA(
            mean, components, move(self.explained_variance), self.whiten, self.kind, self.shrinkage
        )

    def describe(self) -> str:
        """One line for reports, e.g. ``"pca 1024->128 (fitted, whitened)"``."""
        dims = f"{self.in_dim}->{self.out_dim}"
        if self.kind == "pca":
            shrink = f", whitened, shrinkage {self.shrinkage:g}" if self.whiten else ""
            return f"pca {dims} (fitted{shrink})"
        if self.kind == "identity":
            return f"identity {dims} (no PCA fitted)"
        if self.kind == "lda":
            return f"lda {dims} (fitted on identities, shrinkage {self.shrinkage:g})"
        return f"random-orthogonal {dims} (seed {FALLBACK_SEED}, no PCA fitted)"

    def arrays(self) -> list[torch.Tensor]:
        """The tensors that define the projection (for fingerprints)."""
        extra = [] if self.explained_variance is None else [self.explained_variance]
        return [self.mean, self.components, *extra]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of CPU tensors / str / bool, loadable with ``weights_only=True``."""
        variance = (
            None
            if self.explained_variance is None
            else self.explained_variance.detach().cpu().clone()
        )
        return {
            "kind": self.kind,
            "whiten": self.whiten,
            "mean": self.mean.detach().cpu().clone(),
            "components": self.components.detach().cpu().clone(),
            "explained_variance": variance,
            "shrinkage": float(self.shrinkage),
        }

    @classmethod
    def from_dict(cls, data: Any) -> PCA:
        """Inverse of :meth:`to_dict`.

        Raises:
            ModelError: missing fields, wrong types or shapes (a bad checkpoint).
        """
        try:
            variance = data["explained_variance"]
            return cls(
                mean=data["mean"].float(),
                components=data["components"].float(),
                explained_variance=None if variance is None else variance.float(),
                whiten=bool(data["whiten"]),
                kind=str(data["kind"]),
                shrinkage=float(data.get("shrinkage", 0.0)),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ModelError(f"malformed PCA in checkpoint: {exc}") from exc
