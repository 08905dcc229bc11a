"""Checkpoint checks that run other processes: the peak memory of a load that claims
huge sizes, and bad checkpoints given to the command line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app
from reidctl.model import (
    OSNET_X0_25,
    ConvNet,
    FeatureExtractor,
    ModelRecord,
    save_checkpoint,
)
from tests.cli_helpers import RUNNER_ENV
from tests.model.checkpoint_edits import (
    REPO,
    Edit,
    first_conv,
    set_field,
    variant,
)

PEAK_RSS = """
import resource, sys
from reidctl.errors import ModelError
from reidctl.model import load_checkpoint
try:
    load_checkpoint(sys.argv[1])
except ModelError as exc:
    print("refused:", exc, file=sys.stderr)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def _peak_mb(path: Path) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, str(path)], capture_output=True,
                         text=True, check=True, cwd=REPO, timeout=300)
    return int(out.stdout.strip())


@pytest.mark.slow
def test_oversized_claims_allocate_nothing(good: Path, tmp_path: Path) -> None:
    """Loading a file that claims 256 MB graph weights and 1 GB of classifier peaks no
    higher than loading the good file (each in a fresh process)."""
    def edit(data: dict[str, Any]) -> None:
        data["arch"]["onnx_graph"]["initializers"][first_conv(data)] = [2**13, 2**13]
    graph = variant(good, tmp_path / "graph.pt", edit)
    classes = variant(good, tmp_path / "classes.pt", lambda d: d.update(
        num_classes=2 * 10**6, classes=[""] * (2 * 10**6)))
    base = _peak_mb(good)
    assert _peak_mb(graph) < base + 100
    assert _peak_mb(classes) < base + 300  # the 2M names themselves take ~150 MB


# --- through the command line ------------------------------------------------------------

runner = CliRunner()


@pytest.fixture(scope="module")
def lite_db(val_images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Lite database holding 4 val images under the default model (OSNet, fallback PCA)."""
    root = tmp_path_factory.mktemp("validation-cli")
    uri = root / "gallery.db"
    r = runner.invoke(app, ["ingest", *map(str, val_images[:4]), "--uri", str(uri), "-q"],
                      env=RUNNER_ENV)
    assert r.exit_code == 0, r.output + r.stderr
    return uri


@pytest.fixture(scope="module")
def zero_shot_ckpt(osnet: FeatureExtractor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model as a checkpoint: its fingerprint is the one the database holds."""
    path = tmp_path_factory.mktemp("validation-cli-model") / "zero_shot.pt"
    save_checkpoint(path, ModelRecord(ConvNet(osnet.model.backbone, 128), OSNET_X0_25, osnet.pca,
                                      open_set={"threshold": 0.8}))
    return path


def _search(model: Path, db: Path, image: Path) -> Any:
    return runner.invoke(app, ["search", str(image), "--uri", str(db), "--model", str(model),
                               "--json"], env=RUNNER_ENV)


def test_cli_good_checkpoint_searches(zero_shot_ckpt: Path, lite_db: Path,
                                      val_images: list[Path]) -> None:
    r = _search(zero_shot_ckpt, lite_db, val_images[0])
    assert r.exit_code == 0, r.stderr
    hits = json.loads(r.stdout)["results"][0]["hits"]
    assert hits and all(math.isfinite(h["distance"]) for h in hits)


@pytest.mark.parametrize(("edit", "fragment"), [
    (set_field("fine_weight", value=float("nan")), "fine_weight is nan"),
    (set_field("fine_weight", value=-1e30), "fine_weight is -1e+30"),
    (set_field("open_set", "threshold", value=float("nan")), "open_set.threshold is nan"),
    (lambda d: d["arch"]["onnx_graph"]["initializers"].__setitem__(first_conv(d), [-1, 3]),
     "a shape is a list of non-negative ints"),
    (lambda d: next(n for n in d["arch"]["onnx_graph"]["nodes"] if n["op"] == "Conv")[
        "attrs"].__setitem__("group", 7), "arch: ONNX node"),
    (lambda d: d["arch"]["onnx_graph"]["initializers"].__setitem__(first_conv(d),
                                                                    [2**13, 2**13]),
     "(Conv): "),
], ids=["fine_weight-nan", "fine_weight-negative", "threshold-nan", "negative-shape",
        "impossible-group", "oversized-shape"])
def test_cli_bad_checkpoint_exits_3(zero_shot_ckpt: Path, lite_db: Path,
                                    val_images: list[Path], tmp_path: Path, edit: Edit,
                                    fragment: str) -> None:
    bad = variant(zero_shot_ckpt, tmp_path / "bad.pt", edit)
    r = _search(bad, lite_db, val_images[0])
    assert r.exit_code == 3, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert fragment in lines[0] and str(bad) in lines[0]
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr
    assert r.stdout.strip() == "" or "NaN" not in r.stdout
