"""An imported IR graph as a reidctl backbone: a fixed input adapter, the conv map, the head.

reidctl hands every backbone ImageNet-normalised RGB; the OMZ graphs expect BGR in 0-255.
"""

from __future__ import annotations

import torch
from torch import nn

from reidctl.errors import ModelError
from reidctl.model.convnet import denormalize
from reidctl.model.graph_exec import GraphSegment
from reidctl.model.ir_ops import IrGraphModule


class IrBackbone(nn.Module):
    """An IR graph behind a fixed adapter from reidctl's input to the graph's.

    The adapter undoes the ImageNet normalisation, scales to 0-255 and reverses the
    channels (RGB -> BGR); it has no parameters. The graph's own preprocessing
    (channel reorder, mean/scale, MVN) stays in the graph.

    With ``map_at``, the graph runs on to its own output (the network's embedding) and
    is read at two places: :meth:`forward` returns the conv map at ``map_at``, and
    :meth:`embed` runs the rest of the graph (the network's pooling head) on that map.

    Args:
        graph: the imported graph, taking ``(B, 3, H, W)`` BGR in 0-255.
        map_at: the tensor of the last conv map, for a graph that goes past it; None: the
            graph's output is the map.
        embedding_dim: the head's output size (required with ``map_at``).

    Raises:
        ModelError: ``map_at`` is not a clean cut of the graph, or no ``embedding_dim``.
    """

    def __init__(self, graph: IrGraphModule, map_at: str | None = None,
                 embedding_dim: int | None = None) -> None:
        super().__init__()
        self.graph = graph
        self.map_at = map_at
        self.embedding_dim = embedding_dim if map_at is not None else None
        if map_at is not None:
            if not embedding_dim or embedding_dim < 1:
                raise ModelError(f"IR backbone cut at {map_at!r} needs its embedding size")
            body, head = graph.split(map_at)
            # plain attributes: the weights stay the graph's (one copy in the state dict)
            object.__setattr__(self, "_body", body)
            object.__setattr__(self, "_head", head)

    @property
    def head(self) -> GraphSegment | None:
        """The head as a module (its parameters are the graph's), None without one."""
        return self._head if self.map_at is not None else None

    @staticmethod
    def adapt(x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised RGB -> ``(B, 3, H, W)`` BGR in 0-255."""
        return (denormalize(x) * 255.0).flip(1)  # (B, 3, H, W), channels reversed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the adapter and the graph up to the conv map.

        Args:
            x: ``(B, 3, H, W)`` RGB normalised with the ImageNet statistics.

        Returns:
            The conv map, e.g. ``(B, K, 16, 8)`` (without ``map_at``: the graph's output).
        """
        x = self.adapt(x)
        return self._body(x) if self.map_at is not None else self.graph(x)

    def embed(self, feature_map: torch.Tensor) -> torch.Tensor:
        """The network's own head on its conv map.

        Args:
            feature_map: ``(B, K, h, w)`` from :meth:`forward`.

        Returns:
            ``(B, embedding_dim)``.

        Raises:
            ModelError: the backbone has no head (made without ``map_at``).
        """
        if self.map_at is None:
            raise ModelError("this IR backbone ends at its conv map: it has no head")
        return self._head(feature_map)

    def probe(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` naming a node that cannot run (see :meth:`GraphModule.probe`);
        with a head, the map's shape (the head is probed by :meth:`probe_embed`)."""
        x = self.adapt(x)
        if self.map_at is None:
            return self.graph.probe(x)
        return self._body.probe(x)

    def probe_embed(self, feature_map: torch.Tensor) -> torch.Tensor:
        """:meth:`embed` naming a node that cannot run (for meta tensors)."""
        if self.map_at is None:
            raise ModelError("this IR backbone ends at its conv map: it has no head")
        return self._head.probe(feature_map)

    def split(self, cut: str) -> tuple[nn.Module, GraphSegment]:
        """The backbone as ``(prefix, suffix)`` at graph tensor ``cut``, sharing the weights.

        The prefix runs the adapter, then the graph up to ``cut``; the suffix runs on to
        the conv map (not the head); see :meth:`GraphModule.split`, which raises
        ModelError for a bad cut.
        """
        prefix, suffix = self.graph.split(cut)
        if self.map_at is not None:
            if prefix.stop >= self._body.stop:
                raise ModelError(f"IR cut {cut!r} is not before the conv map {self.map_at!r}")
            suffix = GraphSegment(self.graph, prefix.stop, self._body.stop, cut, self.map_at)
        return nn.Sequential(_Adapter(), prefix), suffix


class _Adapter(nn.Module):
    """:meth:`IrBackbone.adapt` as a module (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return IrBackbone.adapt(x)  # (B, 3, H, W)
