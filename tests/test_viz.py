"""Pictures: ranked-list grids and confidence maps, on real CUHK03 images and the real OSNet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from reidctl.cli.viz_cmd import register
from reidctl.errors import InputError, ModelError
from reidctl.viz import (
    GREEN,
    GREY,
    PLACEHOLDER,
    RED,
    GridLayout,
    confidence_map,
    jet,
    render_confidence_map,
    render_grid,
)
from tests.cli_helpers import one_line_error, sub_app

runner = CliRunner()
N_CLASSES = 8


def _hit(rank: int, path: Path | str, person: str, distance: float) -> dict[str, Any]:
    """A hit dict as ``search --json`` prints it."""
    return {"rank": rank, "id": f"id{rank}", "distance": distance, "person_id": person,
            "camera": "A" if Path(path).name[5:7] < "05" else "B", "source": "cuhk03",
            "path": str(path)}


@pytest.fixture(scope="module")
def val(cuhk03_root: Path) -> Path:
    return cuhk03_root / "val"


@pytest.fixture(scope="module")
def rows(val: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Two queries x five hits: matches, non-matches, an unknown person, a missing file."""
    missing = tmp_path_factory.mktemp("gone") / "0001_07.jpg"
    return [
        {"query": str(val / "0000_00.jpg"), "query_person": "0000", "hits": [
            _hit(1, val / "0000_05.jpg", "0000", 0.41234),
            _hit(2, val / "0001_00.jpg", "0001", 0.52),
            _hit(3, val / "0000_06.jpg", "", 0.6),
            _hit(4, missing, "0001", 0.7),
            _hit(5, val / "0002_05.jpg", "0002", 0.8)]},
        {"query": str(val / "0001_00.jpg"), "query_person": "0001", "no_match": True,
         "threshold": 0.5, "hits": [
            _hit(1, val / "0002_00.jpg", "0002", 0.61),
            _hit(2, val / "0001_05.jpg", "0001", 0.62),
            _hit(3, val / "0003_00.jpg", "0003", 0.63),
            _hit(4, val / "0004_00.jpg", "0004", 0.64),
            _hit(5, val / "0001_06.jpg", "0001", 0.65)]},
    ]


@pytest.fixture(scope="module")
def grid(rows: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_grid(rows, tmp_path_factory.mktemp("grid") / "sub" / "dir" / "grid.png")


def _frame_pixel(img: Image.Image, row: int, col: int) -> tuple[int, int, int]:
    """A pixel inside the left frame strip of a cell, halfway down."""
    x0, y0, _, y1 = GridLayout().frame_box(row, col)
    return img.getpixel((x0 + 1, (y0 + y1) // 2))


def test_grid_has_the_expected_size_and_no_leftovers(grid: Path) -> None:
    img = Image.open(grid)
    assert img.format == "PNG" and img.mode == "RGB"
    # pad 6 + query cell 72 + gap 24 + 5 x (cell 72 + pad 6); pad 6 + 2 x (line 13 + cell 190 + 6)
    assert img.size == (492, 424) == GridLayout().size(2, 5)
    assert sorted(p.name for p in grid.parent.iterdir()) == ["grid.png"]  # atomic: no tmp left


def test_grid_frames_are_green_for_a_match_red_for_another_person(grid: Path) -> None:
    img = Image.open(grid).convert("RGB")
    assert _frame_pixel(img, 0, 0) == GREEN  # 0000 vs 0000
    assert _frame_pixel(img, 0, 1) == RED  # 0000 vs 0001
    assert _frame_pixel(img, 0, 2) == GREY  # hit person unknown
    assert _frame_pixel(img, 0, 3) == RED  # missing file, known person
    assert _frame_pixel(img, 1, 0) == RED
    assert _frame_pixel(img, 1, 1) == GREEN
    assert _frame_pixel(img, 1, 4) == GREEN
    # the thumbnail inside a frame is the photo, not the frame colour
    x0, y0, x1, y1 = GridLayout().frame_box(0, 0)
    inner = np.asarray(img.crop((x0 + 8, y0 + 20, x1 - 8, y1 - 20)))
    assert inner.std() > 10


def test_missing_image_gets_a_grey_placeholder_with_text(grid: Path) -> None:
    img = Image.open(grid).convert("RGB")
    layout = GridLayout()
    x0, y0, x1, y1 = layout.frame_box(0, 3)
    b = layout.border
    tile = np.asarray(img.crop((x0 + b, y0 + b, x1 - b, y1 - b)))  # (128, 64, 3)
    assert tile.shape == (128, 64, 3)
    assert tuple(tile[2, 2]) == PLACEHOLDER and tuple(tile[-3, -3]) == PLACEHOLDER
    assert (tile.sum(axis=2) < 200).any()  # dark text pixels: "missing"


def test_no_match_row_says_so_in_red(grid: Path) -> None:
    img = np.asarray(Image.open(grid).convert("RGB"))
    layout = GridLayout()
    header = img[layout.pad + layout.row_h: layout.pad + layout.row_h + layout.line]
    assert (np.abs(header.astype(int) - RED).sum(axis=2) < 60).sum() > 20
    first = img[layout.pad: layout.pad + layout.line]  # an ordinary row: the query's file name
    assert (np.abs(first.astype(int) - RED).sum(axis=2) < 60).sum() == 0


def test_grid_of_a_missing_query_and_no_hits(tmp_path: Path) -> None:
    out = render_grid([{"query": str(tmp_path / "nope.jpg"), "hits": []}], tmp_path / "g.png")
    img = Image.open(out).convert("RGB")
    x0, y0, _, _ = GridLayout().frame_box(0, -1)
    assert img.getpixel((x0 + 10, y0 + 10)) == PLACEHOLDER


def test_jet_ramp_goes_blue_to_red() -> None:
    rgb = jet(np.array([[0.0, 0.5, 1.0]]))  # (1, 3, 3)
    assert rgb[0, 0, 2] > 100 and rgb[0, 0, 0] == 0  # low: blue
    assert rgb[0, 1, 1] == 255  # middle: green peak
    assert rgb[0, 2, 0] > 100 and rgb[0, 2, 2] == 0  # high: red


def test_viz_imports_neither_torch_nor_pymilvus() -> None:
    code = ("import sys, reidctl.viz, reidctl.cli.viz_cmd; "
            "print([m for m in ('torch', 'pymilvus') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


# --- confidence maps ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(cuhk03_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint with a classifier block of 8 CUHK03 train identities, in seconds: the real
    OSNet backbone plus a block imprinted from the class means, as ``reidctl train`` starts it."""
    from reidctl.model import (
        PCA,
        ConvNet,
        FeatureExtractor,
        ModelRecord,
        build_backbone,
        save_checkpoint,
    )
    from reidctl.model.backbones import default_osnet_weights
    from reidctl.pipeline.train_cache import pooled_features
    from reidctl.pipeline.train_data import labeled_files
    from reidctl.pipeline.train_loop import imprint_classifier

    if not default_osnet_weights().is_file():
        pytest.skip("OSNet weights not found (set REIDCTL_OSNET_WEIGHTS)")
    files = labeled_files(cuhk03_root / "train", max_identities=N_CLASSES)
    bb = build_backbone("osnet_x0_25")
    model = ConvNet(bb.module, bb.spec.channels, len(files.classes))
    pca = PCA.fallback(bb.spec.channels, 128)
    record = ModelRecord(model, bb.spec, pca, files.classes)
    extractor = FeatureExtractor(record, "cpu", bb.source)
    pooled = pooled_features(extractor, files, None)
    imprint_classifier(model, pooled.gap, pooled.labels, label_smoothing=0.1)
    out = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(out, record)
    return out


@pytest.fixture(scope="module")
def train_image(cuhk03_root: Path) -> Path:
    return sorted((cuhk03_root / "train").glob("0*_00.jpg"))[0]


def test_confidence_map_of_a_trained_checkpoint(checkpoint: Path, train_image: Path,
                                                tmp_path: Path) -> None:
    from reidctl.model import load_checkpoint, load_model

    classes = load_checkpoint(checkpoint).classes
    image, cmap, name, score = confidence_map(load_model(checkpoint), train_image,
                                              classes=classes)
    assert image.shape == (256, 128, 3) and image.dtype == np.uint8
    assert cmap.shape == (256, 128) and cmap.dtype == np.float32
    assert cmap.min() == 0.0 and cmap.max() == 1.0 and cmap.std() > 0.05
    assert name == train_image.name[:4]  # a training image of one of the 8 identities
    assert 1 / N_CLASSES < score <= 1.0
    out = render_confidence_map(image, cmap, tmp_path / "m" / "map.png", f"{name} {score:.2f}")
    assert Image.open(out).size == (8 + 3 * (256 + 8), 16 * 3 + 512 + 8)
    assert sorted(p.name for p in out.parent.iterdir()) == ["map.png"]


def test_confidence_map_errors(checkpoint: Path, tmp_path: Path) -> None:
    from reidctl.model import load_model

    extractor = load_model(checkpoint)
    with pytest.raises(InputError, match="does not exist"):
        confidence_map(extractor, tmp_path / "none.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="not an image"):
        confidence_map(extractor, bad)
    with pytest.raises(ModelError, match="class names"):
        confidence_map(extractor, bad, classes=["a"])


def _cli() -> typer.Typer:
    return sub_app(register)


def test_explain_command_writes_the_picture(checkpoint: Path, train_image: Path,
                                            tmp_path: Path) -> None:
    out = tmp_path / "explain.png"
    r = runner.invoke(_cli(), ["explain", str(train_image), "--out", str(out), "--model",
                               str(checkpoint), "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert set(report) == {"image", "out", "class", "score", "model"}
    assert report["out"] == str(out) and out.is_file() and report["class"] == train_image.name[:4]
    assert len(report["model"]) == 16


def test_explain_refuses_the_zero_shot_model(val: Path, tmp_path: Path) -> None:
    from reidctl.model.backbones import default_osnet_weights

    if not default_osnet_weights().is_file():
        pytest.skip("OSNet weights not found (set REIDCTL_OSNET_WEIGHTS)")
    r = runner.invoke(_cli(), ["explain", str(val / "0000_00.jpg"), "--out",
                               str(tmp_path / "x.png"), "--device", "cpu"])
    assert r.exit_code == 3
    assert "no classifier block" in one_line_error(r)
    assert not (tmp_path / "x.png").exists()


def test_explain_missing_image_is_exit_2(tmp_path: Path) -> None:
    r = runner.invoke(_cli(), ["explain", str(tmp_path / "nope.jpg"), "--out",
                               str(tmp_path / "x.png")])
    assert r.exit_code == 2
    assert "does not exist" in one_line_error(r)
