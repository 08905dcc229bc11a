"""What a newcomer's first run shows: eval's notes under its table, progress lines when
stderr is a log file, and the bench plot's title and overlapping mAP series. Real CUHK03
images, the real default model, real Milvus Lite files and real CLI processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from reidctl.cli.bench_cmd import backend_label, draw_plot
from reidctl.cli.eval_notes import KNOWN_SCORES, model_recipe
from reidctl.cli.main import app
from reidctl.cli.progress_lines import PROGRESS_INTERVAL_ENV, LineProgress
from reidctl.pipeline.reports import BenchReport, BenchRun, MethodReport
from reidctl.viz_bench import (
    SERIES_COLOURS,
    SIZE,
    TITLE_BOX,
    bench_title,
    draw_title,
    overlapping,
)
from tests.cli_helpers import RUNNER_ENV, SETTINGS_ENV, one_line_error

runner = CliRunner()
REIDCTL = [sys.executable, "-m", "reidctl.cli.main"]
FIT_IMAGES = 160  # more than the 128 dimensions fit-pca needs for OSNet-x0.25
LINE = re.compile(r"^fit: (\d+)/(\d+) \((\d+)%\), [0-9.]+/s, elapsed \d+:\d\d, "
                  r"eta (\d+:\d\d|\?)$")
DONE = re.compile(r"^fit: (\d+)/(\d+) done in \d+:\d\d \([0-9.]+/s\)$")


def _known(backbone: str, recipe: str):  # noqa: ANN202
    return next(k for k in KNOWN_SCORES if (k.backbone, k.recipe) == (backbone, recipe))


def _eval(root: Path, uri: Path, *extra: str, env: dict | None = None):  # noqa: ANN202
    r = runner.invoke(app, ["eval", "-d", "cuhk03", "--root", str(root), "--uri", str(uri),
                            *extra], env={**RUNNER_ENV, **(env or {})})
    assert r.exit_code == 0, r.output + r.stderr
    return r


# --- 1. eval's notes -----------------------------------------------------------------------


@pytest.mark.slow  # two evaluations of 50 queries
def test_eval_explains_its_table(small_root: Path, tmp_path: Path) -> None:
    uri = tmp_path / "e.db"
    r = _eval(small_root, uri, "--grid", str(tmp_path / "pics"), "-q")
    out = r.stdout
    assert "how to read the table:" in out
    assert re.search(r"^  coarse  ANN search on the 128-D f_g only", out, re.M)
    assert re.search(r"^  c2f     coarse top-M \(M = \d+\), then those M re-ranked exactly "
                     r"with f_g and the stripes f_l", out, re.M)
    assert re.search(r"^  linear  exact distance of the full descriptor \(f_g \+ f_l\) to "
                     r"every gallery image", out, re.M)
    n = len(list((small_root / "val").glob("*_0[5-9].jpg")))  # camera B: the gallery
    # --m 500 covers this gallery: C2F and linear rank alike, and the note says why
    assert f"M = {n} covers the whole gallery ({n} images)" in out
    assert "so it ranks exactly like linear (same scores)" in out
    assert "the linear scan grows with the gallery while c2f stays about constant" in out
    for where in ("docs/benchmarks.md", "docs/scaling.md", "reidctl bench"):
        assert where in out
    # the default model is the zero-shot OSNet-x0.25: its documented scores, and a warning
    # that this small split is not the one they were measured on
    k = _known("osnet_x0_25", "zero-shot")
    line = next(x for x in out.splitlines() if "expected scores:" in x)
    assert f"C2F mAP {k.c2f[0]:.1f} / rank-1 {k.c2f[1]:.1f}" in line and k.where in line
    assert "not comparable" in line
    picture = tmp_path / "pics" / "eval_cuhk03_c2f.png"
    assert f"picture of c2f ranked lists: {picture}" in out and picture.is_file()

    # a smaller M than the gallery: the note says C2F re-ranks the coarse top M only; a
    # query option asked for is explained too, and only that one
    r = _eval(small_root, uri, "--m", "10", "--kreciprocal", "-q")
    assert "re-ranks the coarse top 10 only" in r.stdout and "covers the whole" not in r.stdout
    assert "  c2f+kr  c2f, then k-reciprocal re-ranking" in r.stdout
    assert "query expansion" not in r.stdout
    assert "picture of" not in r.stdout  # no --grid, no picture line

    # --json carries the report alone: no notes
    r = _eval(small_root, uri, "--m", "10", "--json", "-q")
    assert json.loads(r.stdout)["M"] == 10 and "how to read" not in r.stdout


def test_model_recipe_from_what_the_checkpoint_records() -> None:
    assert model_recipe(False, {}) == "zero-shot"
    assert model_recipe(True, {"training": {"epochs": 4}, "base_model": "x"}) == "train"
    assert model_recipe(True, {"base_model": "onnx:x", "pca_dim": 128,
                               "shrinkage": 2.0}) == "fit-pca"
    assert model_recipe(True, {"base_model": "onnx:x", "pca_dim": 64}) == "other"
    assert model_recipe(True, {}) == "other"


# --- 2. progress lines when stderr is a file ------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    return env | {"PYTHONUNBUFFERED": "1"} | extra


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, cuhk03_root: Path) -> tuple[Path, str]:
    """A real ``reidctl fit-pca`` process on FIT_IMAGES CUHK03 train images, its stderr
    a file and the progress interval 0: (the checkpoint, what stderr got)."""
    tmp = tmp_path_factory.mktemp("fit")
    folder = tmp / "train"
    folder.mkdir()
    for p in sorted((cuhk03_root / "train").glob("*.jpg"))[:FIT_IMAGES]:
        shutil.copy(p, folder / p.name)
    ckpt, log = tmp / "m.pt", tmp / "stderr.log"
    with log.open("w") as stderr:
        done = subprocess.run([*REIDCTL, "fit-pca", str(folder), "--out", str(ckpt),
                               "--device", "cpu"], stdout=subprocess.PIPE, stderr=stderr,
                              text=True, timeout=600,
                              env=_clean_env(**{PROGRESS_INTERVAL_ENV: "0"}))
    text = log.read_text()
    assert done.returncode == 0, text
    return ckpt, text


@pytest.mark.slow  # a real fit-pca process
def test_fit_pca_writes_progress_lines_to_a_log_file(fitted: tuple[Path, str]) -> None:
    _, text = fitted
    assert "\x1b" not in text and "\r" not in text  # no terminal codes in a file
    lines = text.splitlines()
    steps = [LINE.match(x) for x in lines[:-1]]
    assert lines and all(steps), text
    counts = [int(m.group(1)) for m in steps]
    assert counts == sorted(counts) and counts[0] > 0
    assert {int(m.group(2)) for m in steps} == {FIT_IMAGES}
    assert [m.group(3) for m in steps] == [f"{100 * c / FIT_IMAGES:.0f}" for c in counts]
    last = DONE.match(lines[-1])
    assert last and last.group(1) == last.group(2) == str(FIT_IMAGES), text


@pytest.mark.slow  # an evaluation with the fitted checkpoint
def test_eval_names_the_documented_scores_of_a_fit_pca_model(
        fitted: tuple[Path, str], small_root: Path, tmp_path: Path) -> None:
    ckpt, _ = fitted
    r = _eval(small_root, tmp_path / "e.db", "--model", str(ckpt), "-q")
    k = _known("osnet_x0_25", "fit-pca")
    line = next(x for x in r.stdout.splitlines() if "expected scores:" in x)
    assert f"documented for {k.what} (fingerprint {k.fingerprint})" in line
    assert f"C2F mAP {k.c2f[0]:.1f} / rank-1 {k.c2f[1]:.1f}" in line


def test_a_bad_progress_interval_is_one_line(val_images: list[Path], tmp_path: Path) -> None:
    r = runner.invoke(app, ["ingest", str(val_images[0]), "--uri", str(tmp_path / "a.db")],
                      env={**RUNNER_ENV, PROGRESS_INTERVAL_ENV: "soon"})
    assert r.exit_code == 2
    assert one_line_error(r) == (f"error: {PROGRESS_INTERVAL_ENV} must be a number of "
                                 "seconds >= 0, got 'soon'")


def test_line_progress_waits_for_the_interval() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = LineProgress(lines.append, interval=5.0, clock=lambda: now[0])
    quick = progress.stage("quick", 10)
    for _ in range(10):  # done within the interval: nothing at all
        now[0] += 0.4
        quick.advance(1)
    assert lines == []
    slow = progress.stage("ingest", 100)
    for _ in range(20):  # 20 steps of 5, 1.5 s apart: a line once 5 s passed since the last
        now[0] += 1.5  # (or since the start: the first step, at 5.5 s)
        slow.advance(5)
    counts = [int(x.split("/")[0].removeprefix("ingest: ")) for x in lines]
    assert counts == [5, 25, 45, 65, 85, 100]  # at 5.5, 11.5, 17.5, 23.5, 29.5 s, then done
    assert lines[1] == "ingest: 25/100 (25%), 3.3/s, elapsed 0:08, eta 0:22"
    assert lines[-1] == "ingest: 100/100 done in 0:30 (3.3/s)"
    slow.advance(5)  # past the end: nothing more
    assert len(lines) == 6


# --- 3. the bench plot ----------------------------------------------------------------------


def _method(mAP: float, rank1: float, ms: float) -> MethodReport:  # noqa: N803
    return MethodReport(mAP, mAP - 1.5, rank1, rank1 + 12.0, rank1 + 17.0, 451, ms, ms * 1.9)


def _report(uri: str, backend: str) -> BenchReport:
    """The scale benchmark's figures (docs/benchmarks.md, Milvus server, M = 100), where
    C2F and the linear scan have almost the same mAP at every N."""
    rows = [(0, 74.61, 74.19, 74.25, 1.7, 5.1, 0.1, 0.10), (10_000, 47.35, 45.68, 45.86, 2.2,
            6.0, 3.3, 0.17), (100_000, 27.93, 26.35, 26.59, 2.2, 6.0, 75.5, 1.41),
            (520_000, 17.53, 16.51, 16.67, 2.8, 7.8, 441.0, 7.91)]
    runs = [BenchRun(backend, f"bench_x_{n}", n, 487 + n, 451, 100,
                     {"coarse": _method(co, co + 3, ms_co), "c2f": _method(c2f, c2f + 3, ms_c2f),
                      "linear": _method(lin, lin + 3, ms_lin)},
                     {"extract": 6.5, "coarse": ms_co, "fetch": 3.6, "rerank": 0.1}, 300.0,
                     2400.0, 487 + n, 1.0, _method(c2f, c2f + 3, ms_np))
            for n, co, c2f, lin, ms_co, ms_c2f, ms_lin, ms_np in rows]
    return BenchReport(runs, {}, "CUHK03 val", "91fdfdcdf5821fa2", "bench_91fd_<seed>_<N>",
                       uri, 100, "sqrt(d_g^2 + 0.5 * d_l^2)", {}, {})


def _title_band(title: str) -> Image.Image:
    band = Image.new("RGB", SIZE, "white")
    draw_title(ImageDraw.Draw(band), title)
    return band.crop(TITLE_BOX)


@pytest.mark.parametrize(("uri", "backend", "label"), [
    ("runs/bench.db", "milvus-lite", "Milvus Lite, bench.db"),
    ("http://root:Milvus@127.0.0.1:19530", "milvus-server", "Milvus server, http://127.0.0.1:19530"),
], ids=["lite-file", "remote-uri"])
def test_bench_plot_title_names_the_backend(uri: str, backend: str, label: str,
                                            tmp_path: Path) -> None:
    assert backend_label(uri) == label  # the kind of Milvus, never the credentials
    png = draw_plot(_report(uri, backend), tmp_path / "p.png")
    img = Image.open(png).convert("RGB")
    assert img.size == SIZE
    title = bench_title(label, "M = 100, model 91fdfdcdf5821fa2")
    assert title.startswith(f"reidctl bench on {label} (")
    assert img.crop(TITLE_BOX).tobytes() == _title_band(title).tobytes()
    other = bench_title("Milvus Lite" if "server" in label else "Milvus server", "M = 100")
    assert img.crop(TITLE_BOX).tobytes() != _title_band(other).tobytes()


def test_bench_plot_keeps_overlapping_map_series_apart(tmp_path: Path) -> None:
    png = draw_plot(_report("runs/bench.db", "milvus-lite"), tmp_path / "p.png")
    img = Image.open(png).convert("RGB")
    map_frame = img.crop((SIZE[0] // 2 + 65, 69, SIZE[0] - 17, SIZE[1] - 49))  # inside it
    colours = {tuple(int(c) for c in px) for px in np.asarray(map_frame).reshape(-1, 3)}
    for name in ("coarse", "c2f", "linear"):  # every series shows, none hidden under another
        assert SERIES_COLOURS[name] in colours, name


def test_overlapping_series_are_those_drawn_on_each_other() -> None:
    a = [(10.0, 100.0), (50.0, 200.0), (90.0, 300.0)]
    near = [(x, y + 2.5) for x, y in a]  # within 3 px at every point
    apart = [*near[:2], (90.0, 310.0)]  # one point 10 px away
    assert overlapping({"c2f": a, "linear": near}) == [("c2f", "linear")]
    assert overlapping({"c2f": a, "linear": apart, "coarse": near}) == [("c2f", "coarse")]
