"""Market-1501 protocol through the eval pipeline: junk is ignored, distractors are not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from reidctl.data.datasets import market1501
from reidctl.model import load_model
from reidctl.pipeline.evaluate import evaluate
from reidctl.store import MilvusStore


def _market_root(root: Path, val: Path, n_query: int, junk: str) -> Path:
    """CUHK03 val images under Market-1501 names: camera A -> c1 queries, camera B -> c2.

    ``junk``: "" none; "minus1": id -1 detections of other people; "same_camera": a copy
    of each query taken by its own camera (junk for that query; use one query only, since
    for other queries it is a true negative).
    """
    (root / "query").mkdir(parents=True)
    (root / "bounding_box_test").mkdir()
    for frame, p in enumerate(sorted(val.glob("*.jpg"))):
        pid, shot = int(p.name[:4]), int(p.name[5:7])
        gallery = root / "bounding_box_test"
        if pid < n_query and shot == 0:
            shutil.copy(p, root / "query" / f"{pid + 1:04d}_c1s1_{frame:06d}_00.jpg")
            if junk == "same_camera":
                shutil.copy(p, gallery / f"{pid + 1:04d}_c1s1_{frame:06d}_01.jpg")
        elif pid < 8 and shot >= 5:
            shutil.copy(p, gallery / f"{pid + 1:04d}_c2s1_{frame:06d}_00.jpg")
        elif 8 <= pid < 12 and shot >= 5:  # distractors stay in the gallery
            shutil.copy(p, gallery / f"0000_c3s1_{frame:06d}_00.jpg")
        elif junk == "minus1" and 12 <= pid < 15:
            shutil.copy(p, gallery / f"-1_c2s1_{frame:06d}_00.jpg")
    return root


@pytest.mark.slow
@pytest.mark.parametrize(("junk", "n_query", "m"),
                         [("minus1", 8, 500), ("minus1", 8, 10), ("same_camera", 1, 500)])
def test_junk_does_not_change_scores(
    cuhk03_root: Path, tmp_path: Path, junk: str, n_query: int, m: int
) -> None:
    ex = load_model("osnet_x0_25")
    results = []
    for kind in (junk, ""):
        root = _market_root(tmp_path / f"market_{kind}", cuhk03_root / "val", n_query, kind)
        with MilvusStore(str(tmp_path / f"m_{kind}.db"), "mk") as store:
            results.append(evaluate(market1501(root), store, ex, m=m, device=torch.device("cpu")))
    with_junk, without = results
    assert with_junk.gallery_size > without.gallery_size
    assert with_junk.num_queries == without.num_queries == n_query
    # a cut-off coarse list may hold junk instead of real images, so compare the exact ones
    methods = ("coarse", "c2f", "linear") if m >= with_junk.gallery_size else ("linear",)
    for method in methods:
        for k in ("mAP", "mAP_trapz", "rank1", "rank5"):
            assert getattr(with_junk.methods[method], k) == pytest.approx(
                getattr(without.methods[method], k)), (method, k)
    assert without.methods["linear"].rank1 > 0
    assert all(r.single_shot is None for r in without.methods.values())  # CUHK03 only
    distractors = [g for g in market1501(tmp_path / "market_").gallery if g.person_id == "0000"]
    assert len(distractors) > 0
