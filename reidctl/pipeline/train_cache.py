"""Training with a frozen backbone prefix: its outputs computed once, cached, batched from disk.

With ``TrainSettings.freeze`` the backbone is split at a graph tensor (the *cut*):
the prefix (input adapter and the graph up to the cut) is frozen, and its output for
every training image, as is and flipped left-right, is stored once in
``<out>.cache/`` (an fp16 ``.npy`` memory map of shape ``(2, N, C, h, w)`` and a
``manifest.json``). The manifest records the image files' content sha256, the
prefix's fingerprint (its nodes and weights), the cut and the input size; when any
of them differs the cache is computed again. Training batches then read the cached
maps and run only the suffix and the classifier blocks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from reidctl.data.augment import AugmentSettings, erase_box, sample_rng
from reidctl.data.batches import decoded_batches
from reidctl.data.images import SkipImage, read_file
from reidctl.errors import InputError, ModelError
from reidctl.model import STRIPES, BackboneSpec, ConvNet, FeatureExtractor, normalize, pool
from reidctl.model.graph_exec import GraphSegment
from reidctl.pipeline.common import ProgressFn
from reidctl.pipeline.fit import pool_images
from reidctl.pipeline.stages import StageFn
from reidctl.pipeline.train_data import LabeledFiles

CACHE_FORMAT = "reidctl.prefixcache/1"
CACHE_SUFFIX = ".cache"
MAPS_FILE = "maps.npy"
MANIFEST_FILE = "manifest.json"
CACHE_BATCH = 32  # images per prefix pass


class Pooled(NamedTuple):
    """Pooled features of the training images, to imprint the classifier blocks from.

    Attributes:
        gap: ``(N, K)`` GAP of the last conv map.
        labels: ``(N,)`` class indices.
        parts: ``(N, stripes, K)`` per-stripe GAP.
        embedding: ``(N, D_head)`` the backbone's head output, None without a head.
    """

    gap: np.ndarray
    labels: np.ndarray
    parts: np.ndarray
    embedding: np.ndarray | None


def cache_dir(out: Path) -> Path:
    """Where the prefix cache of checkpoint ``out`` lives: ``<out>.cache/``."""
    out = Path(out)
    return out.with_name(out.name + CACHE_SUFFIX)


def split_model(model: ConvNet, cut: str) -> tuple[nn.Module, nn.Module]:
    """Splits the backbone at ``cut`` and freezes the prefix.

    Args:
        model: a ConvNet whose backbone is a graph (OSNet ONNX or an OMZ IR backbone).
        cut: the graph tensor to split at, e.g. ``"941"`` (start of conv4 of omz_0286).

    Returns:
        ``(prefix, suffix)`` sharing the model's parameters; the prefix's parameters
        (those the suffix does not also read) have ``requires_grad`` off.

    Raises:
        InputError: the backbone cannot be split, or ``cut`` is unknown or not a clean
            cut (one line, with a few valid cut names).
    """
    split = getattr(model.backbone, "split", None)
    if split is None:
        raise InputError("--freeze needs a graph backbone (osnet_x0_25, omz_0286, omz_0277)")
    try:
        prefix, suffix = split(cut)
    except ModelError as e:
        raise InputError(f"--freeze {cut!r}: {e}") from None
    trained = {id(p) for p in suffix.parameters()}
    for p in prefix.parameters():
        if id(p) not in trained:
            p.requires_grad_(False)
    return prefix, suffix


class _SuffixWithHead(nn.Module):
    """A backbone suffix that keeps the whole backbone's pooling head (``embed``)."""

    def __init__(self, suffix: nn.Module, backbone: nn.Module) -> None:
        super().__init__()
        self.suffix = suffix
        object.__setattr__(self, "_backbone", backbone)  # its weights stay the model's
        self.embedding_dim = backbone.embedding_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.suffix(x)  # (B, K, H, W)

    def embed(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self._backbone.embed(feature_map)  # (B, D_head)


def suffix_net(model: ConvNet, suffix: nn.Module) -> ConvNet:
    """A ConvNet over cached maps: ``suffix`` as its backbone (with the backbone's pooling
    head, when it has one), ``model``'s classifier blocks."""
    net = ConvNet(_SuffixWithHead(suffix, model.backbone) if model.has_head else suffix,
                  model.channels)
    net.classifier, net.part_classifiers = model.classifier, model.part_classifiers
    net.embedding_classifier = model.embedding_classifier
    net.num_classes = model.num_classes
    return net


def prefix_fingerprint(prefix: nn.Module, backbone: str) -> str:
    """sha256 of the prefix: backbone name, module structure, graph nodes and weights."""
    h = hashlib.sha256(f"{backbone};{prefix!r};".encode())
    for m in prefix.modules():
        if isinstance(m, GraphSegment):
            h.update(m.spec_digest().encode())
    state = prefix.state_dict()
    for name in sorted(state):
        data = state[name].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{list(data.shape)};".encode())
        h.update(data.numpy().tobytes())
    return h.hexdigest()


def files_sha256(files: Sequence[Path]) -> str:
    """sha256 over the names and contents of ``files``, in order (bounded reads).

    Raises:
        InputError: a file that cannot be read as an image file (missing, special, too large).
    """
    h = hashlib.sha256()
    for f in files:
        h.update(f"{Path(f).name};".encode())
        try:
            h.update(read_file(f))
        except SkipImage as e:
            raise InputError(f"cannot use training image {f}: {e}") from None
    return h.hexdigest()


@torch.inference_mode()
def build_cache(
    prefix: nn.Module, files: LabeledFiles, input_size: tuple[int, int], folder: Path,
    manifest: dict[str, object], device: torch.device, on_stage: StageFn | None = None,
) -> np.ndarray:
    """The cached prefix maps, computed now unless ``folder`` holds them for ``manifest``.

    Args:
        prefix: the frozen prefix, on ``device``.
        files: the training images.
        input_size: ``(H, W)`` the images are resized to.
        folder: the cache folder (created).
        manifest: what identifies the cache (see the module docstring).
        device: where the prefix runs.
        on_stage: ``(name, total) -> advance``, stage ``"cache prefix"``.

    Returns:
        ``(2, N, C, h, w)`` float16 read-only memory map; ``[0]`` the images, ``[1]``
        them flipped left-right.

    Raises:
        InputError: an image that cannot be decoded.
    """
    folder.mkdir(parents=True, exist_ok=True)
    mpath, maps_path = folder / MANIFEST_FILE, folder / MAPS_FILE
    manifest = {"format": CACHE_FORMAT, **manifest}
    try:
        if json.loads(mpath.read_text()) == manifest and maps_path.is_file():
            return np.load(maps_path, mmap_mode="r")
    except (OSError, ValueError):
        pass  # absent or unreadable: recompute
    mpath.unlink(missing_ok=True)
    prefix.eval()
    n = len(files.files)
    probe = prefix(normalize(torch.zeros(1, 3, *input_size, device=device)))  # (1, C, h, w)
    tmp = folder / (MAPS_FILE + ".tmp")
    maps = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                     shape=(2, n, *probe.shape[1:]))
    advance: ProgressFn | None = on_stage("cache prefix", n) if on_stage else None
    i = 0
    for read, kept, batch in decoded_batches(files.files, input_size, CACHE_BATCH, strict=True):
        x = normalize(batch.to(device)).contiguous(memory_format=torch.channels_last)
        for variant, inputs in enumerate((x, x.flip(3))):  # (B, 3, H, W), then mirrored
            maps[variant, i:i + len(kept)] = prefix(inputs).half().cpu().numpy()  # (B, C, h, w)
        i += len(kept)
        if advance:
            advance(read)
    maps.flush()
    del maps
    os.replace(tmp, maps_path)
    (folder / (MANIFEST_FILE + ".tmp")).write_text(json.dumps(manifest, indent=1))
    os.replace(folder / (MANIFEST_FILE + ".tmp"), mpath)
    return np.load(maps_path, mmap_mode="r")


def prefix_cache(prefix: nn.Module, files: LabeledFiles, spec: BackboneSpec, cut: str,
                 out: Path, device: torch.device, on_stage: StageFn | None) -> np.ndarray:
    """:func:`build_cache` in :func:`cache_dir` of ``out``, for the prefix cut at ``cut``."""
    manifest: dict[str, object] = {
        "files_sha256": files_sha256(files.files), "cut": cut,
        "prefix": prefix_fingerprint(prefix, spec.name), "input_size": list(spec.input_size)}
    return build_cache(prefix, files, spec.input_size, cache_dir(out), manifest, device, on_stage)


def erase_map(x: np.ndarray, settings: AugmentSettings, rng: np.random.Generator) -> None:
    """Random erasing on a ``(C, h, w)`` map, in place: one box set to 0 (no activation).

    The box area and aspect ratio are drawn as for images (``erasing_area``,
    ``erasing_ratio``), on the map's grid; nothing is erased after 10 misses.
    """
    _, h, w = x.shape
    box = erase_box(h, w, settings, rng)
    if box is not None:
        top, left, bh, bw = box
        x[:, top:top + bh, left:left + bw] = 0


def cached_batches(
    maps: np.ndarray, labels: Sequence[int], batches: Sequence[Sequence[int]], epoch: int,
    seed: int, settings: AugmentSettings,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of one epoch from the cache, augmented per sample.

    Each sample's draws come from :func:`~reidctl.data.augment.sample_rng` of
    ``(seed, epoch, position)``: the flip variant (even odds), then random erasing on
    the map with probability ``settings.erasing``. Pad-and-crop is not applied (the
    maps are computed once).

    Args:
        maps: ``(2, N, C, h, w)`` cached maps.
        labels: ``(N,)`` class indices.
        batches: file indices of each batch.
        epoch: 0-based epoch.

    Yields:
        ``(B, C, h, w)`` float16 maps and ``(B,)`` int64 labels.
    """
    position = 0
    for batch in batches:
        out = np.empty((len(batch), *maps.shape[2:]), dtype=np.float16)
        for j, i in enumerate(batch):
            rng = sample_rng(seed, epoch, position + j)
            out[j] = maps[int(rng.random() < 0.5), i]
            if rng.random() < settings.erasing:
                erase_map(out[j], settings, rng)
        position += len(batch)
        yield torch.from_numpy(out), torch.tensor([labels[i] for i in batch], dtype=torch.int64)


def prepare_maps(maps: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``(B, C, h, w)`` cached float16 maps -> float32 on ``device``, channels last."""
    return maps.to(device).float().contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def pooled_cache(net: ConvNet, maps: np.ndarray, files: LabeledFiles, device: torch.device,
                 advance: ProgressFn | None = None) -> Pooled:
    """What :func:`pooled_features` gives, from the unflipped cached images.

    Args:
        net: the :func:`suffix_net` over the cache.
    """
    net.eval()
    gap, parts, heads = [], [], []
    for start in range(0, maps.shape[1], CACHE_BATCH):
        chunk = torch.from_numpy(np.array(maps[0, start:start + CACHE_BATCH]))  # (B, C, h, w)
        fm = net.features(prepare_maps(chunk, device)).float()  # (B, K, H, W)
        g, p = pool(fm, STRIPES)  # (B, K), (B, K, stripes)
        gap.append(g.cpu().numpy())
        parts.append(p.transpose(1, 2).cpu().numpy())
        if net.has_head:
            heads.append(net.global_input(fm).float().cpu().numpy())  # (B, D_head)
        if advance:
            advance(len(g))
    return Pooled(np.concatenate(gap), np.asarray(files.labels, dtype=np.int64),
                  np.concatenate(parts), np.concatenate(heads) if heads else None)


def pooled_features(extractor: FeatureExtractor, files: LabeledFiles,
                    advance: ProgressFn | None) -> Pooled:
    """The pooled features of the (unaugmented) training images, to imprint the classifier
    blocks from; undecodable images are left out."""
    label = dict(zip(files.files, files.labels, strict=True))
    g, parts, used = pool_images(extractor, files.files, 64, advance)
    gap = parts.mean(axis=1)  # (N, K): equal stripes, so their mean is the map's GAP
    return Pooled(gap, np.asarray([label[Path(f)] for f in used], dtype=np.int64), parts,
                  g if extractor.model.has_head else None)
