"""The prefix cache: built once, reused for the same manifest, rebuilt for another; batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from reidctl.data.augment import AugmentSettings
from reidctl.data.batches import decoded_batches
from reidctl.errors import ModelError
from reidctl.model import build_backbone, normalize
from reidctl.pipeline.train_cache import build_cache, cached_batches
from reidctl.pipeline.train_data import labeled_files

CUT = "/conv2/conv2.0/Relu_output_0"  # an early clean cut of OSNet: a cheap prefix


def test_cache_holds_the_prefix_maps_and_is_rebuilt_only_for_another_manifest(
    cuhk03_root: Path, tmp_path: Path,
) -> None:
    try:
        bb = build_backbone("osnet_x0_25")
    except ModelError as e:
        pytest.skip(f"OSNet weights not found: {e}")
    prefix, _ = bb.module.split(CUT)
    files = labeled_files(cuhk03_root / "train", max_identities=2)
    stages: list[str] = []

    def stage(name: str, total: int) -> Any:
        stages.append(name)
        return lambda n: None

    manifest: dict[str, object] = {"files_sha256": "x", "cut": CUT}
    cpu = torch.device("cpu")
    maps = build_cache(prefix, files, (256, 128), tmp_path / "c", manifest, cpu, stage)
    assert maps.shape[:2] == (2, len(files.files)) and maps.dtype == np.float16
    _, _, batch = next(decoded_batches(files.files[:2], (256, 128), 2, strict=True))
    with torch.no_grad():
        x = normalize(batch)  # (2, 3, 256, 128)
        direct, mirrored = prefix(x), prefix(x.flip(3))
    stored = torch.from_numpy(np.array(maps[:, :2])).float()  # (2, 2, C, h, w)
    assert torch.allclose(stored[0], direct, atol=1e-2, rtol=1e-2)
    assert torch.allclose(stored[1], mirrored, atol=1e-2, rtol=1e-2)
    build_cache(prefix, files, (256, 128), tmp_path / "c", manifest, cpu, stage)
    assert stages == ["cache prefix"]  # the same manifest: reused
    build_cache(prefix, files, (256, 128), tmp_path / "c", manifest | {"cut": "other"}, cpu, stage)
    assert stages == ["cache prefix", "cache prefix"]

    plan = [[0, 1, 2, 3], [4, 5, 6, 7]]
    settings = AugmentSettings(erasing=0.5)
    first = list(cached_batches(maps, files.labels, plan, 1, 3, settings))
    again = list(cached_batches(maps, files.labels, plan, 1, 3, settings))
    other = list(cached_batches(maps, files.labels, plan, 2, 3, settings))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    assert first[0][1].tolist() == [files.labels[i] for i in plan[0]]
    cached = torch.from_numpy(np.array(maps[:, :4]))  # (2, 4, C, h, w)
    for j, row in enumerate(first[0][0]):  # each sample is one variant, maybe partly erased
        kept = [(row == cached[v, j]).float().mean().item() for v in (0, 1)]
        assert max(kept) > 0.5 and ((row == 0) | (row == cached[int(np.argmax(kept)), j])).all()
