"""Pictures made by the commands: search --grid and eval --grid, on real CUHK03 images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from reidctl.cli.main import app
from reidctl.viz import GREEN, RED, GridLayout

runner = CliRunner()




def _frame_colour(png: Path, row: int, col: int) -> tuple[int, ...]:
    x0, y0, _, _ = GridLayout().frame_box(row, col)
    return tuple(np.asarray(Image.open(png).convert("RGB"))[y0 + 1, x0 + 1])


def test_eval_grid_draws_the_c2f_lists_of_sample_queries(small_root: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["eval", "-d", "cuhk03", "--root", str(small_root), "--uri",
                            str(tmp_path / "e.db"), "--grid", str(tmp_path / "pics"),
                            "--grid-queries", "3", "--json", "-q"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    png = Path(rep["grid"])
    assert png == tmp_path / "pics" / "eval_cuhk03_c2f.png" and "examples" not in rep
    n_hits = min(10, rep["gallery_size"])
    assert Image.open(png).size == GridLayout().size(3, n_hits)
    colours = {_frame_colour(png, row, col) for row in range(3) for col in range(n_hits)}
    assert colours <= {GREEN, RED} and GREEN in colours  # identities known on both sides


def test_search_grid_matches_the_printed_ranking(small_root: Path, tmp_path: Path) -> None:
    uri = str(tmp_path / "s.db")
    images = sorted((small_root / "val").glob("*.jpg"))
    gallery = [p for p in images if int(p.stem.split("_")[1]) >= 5]
    queries = [p for p in images if int(p.stem.split("_")[1]) < 5][:2]
    folder = tmp_path / "gallery"
    folder.mkdir()
    for p in gallery:
        shutil.copy(p, folder / p.name)
    assert runner.invoke(app, ["ingest", str(folder), "--uri", uri, "-q"]).exit_code == 0
    png = tmp_path / "out" / "grid.png"
    r = runner.invoke(app, ["search", *map(str, queries), "--uri", uri, "-k", "4",
                            "--grid", str(png), "--json"])
    assert r.exit_code == 0, r.output
    results = json.loads(r.stdout)["results"]
    assert Image.open(png).size == GridLayout().size(2, 4)
    for row, res in enumerate(results):
        query_person = Path(res["query"]).name[:4]
        for col, hit in enumerate(res["hits"]):
            want = GREEN if hit["person_id"] == query_person else RED
            assert _frame_colour(png, row, col) == want
