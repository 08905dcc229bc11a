"""The one path from image files to model input: batches in file order, skips reported in order."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from reidctl.config import resolve_device
from reidctl.data.batches import decoded_batches, prefetch, to_batch
from reidctl.data.images import load
from reidctl.errors import InputError, ModelError


def test_decoded_batches_keep_file_order_and_report_skips(val_images: list[Path],
                                                          tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    paths = [*val_images[:5], bad, *val_images[5:9]]
    skipped: list[tuple[Path | str, str]] = []
    out = list(decoded_batches(paths, (256, 128), 4, strict=False,
                               on_skip=lambda p, r: skipped.append((p, r))))
    assert [n for n, _, _ in out] == [4, 4, 2]
    kept = [p for _, k, _ in out for p in k]
    assert kept == [*val_images[:9]] and [p for p, _ in skipped] == [bad]
    want = to_batch([load(p, (256, 128)).pixels for p in val_images[:9]])
    assert torch.equal(torch.cat([b for _, _, b in out]), want)
    with pytest.raises(InputError):
        list(decoded_batches(paths, (256, 128), 4, strict=True))


def test_prefetch_yields_in_order_and_raises_where_the_failure_is() -> None:
    def job(i: int) -> int:
        if i == 3:
            raise ValueError("three")
        return i * i

    got: list[int] = []
    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="three"):
        for r in prefetch(range(6), job, pool, ahead=2):
            got.append(r)
    assert got == [0, 1, 4]


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="--device"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
