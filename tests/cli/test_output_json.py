"""``--json`` output is strict JSON (no NaN / Infinity), and reidctl's stderr carries only
its own lines: gRPC's C core log (Milvus Lite's GOAWAY lines) is silenced unless debugging."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from reidctl.cli.common import print_json
from reidctl.cli.main import app
from tests.cli_helpers import RUNNER_ENV, lite_gallery

runner = CliRunner()
REIDCTL = Path(sys.executable).with_name("reidctl")


def strict_loads(text: str) -> object:
    """json.loads that refuses NaN, Infinity and -Infinity, as any strict parser does."""
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, val_images: list[Path]) -> Path:
    """A Lite database with the pair 'gallery': 6 val images, default model."""
    return lite_gallery(tmp_path_factory.mktemp("json-gallery"), val_images[:6])


def test_strict_loads_refuses_what_python_writes_by_default() -> None:
    with pytest.raises(ValueError, match="Infinity"):
        strict_loads(json.dumps({"x": math.inf}))


def test_print_json_writes_strict_json(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"inf": math.inf, "ninf": -math.inf, "nan": float("nan"),
                "f32": np.float32(0.5), "nested": [np.float64("inf"), {"p": Path("/x")}],
                "ok": 1.25, "n": np.int64(3), "flag": True, "none": None})
    doc = strict_loads(capsys.readouterr().out)
    assert doc == {"inf": None, "ninf": None, "nan": None, "f32": 0.5,
                   "nested": [None, {"p": "/x"}], "ok": 1.25, "n": 3, "flag": True,
                   "none": None}


def test_search_threshold_inf_json(gallery: Path, val_images: list[Path]) -> None:
    threshold = "inf"
    r = runner.invoke(app, ["search", str(val_images[0]), "--uri", str(gallery), "-k", "3",
                            "--threshold", threshold, "--json"], env=RUNNER_ENV)
    assert r.exit_code == 0, r.output + r.stderr
    doc = strict_loads(r.stdout)
    res = doc["results"][0]
    assert res["threshold"] is None  # not representable in JSON
    assert len(res["hits"]) == 3
    assert all(math.isfinite(h["distance"]) for h in res["hits"])
    text = runner.invoke(app, ["search", str(val_images[0]), "--uri", str(gallery), "-k", "3",
                               "--threshold", threshold], env=RUNNER_ENV)
    assert text.exit_code == 0, text.output + text.stderr
    assert f"threshold {threshold}" in text.stdout


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REIDCTL_") and k != "GRPC_VERBOSITY"}
    return env | extra


@pytest.mark.parametrize(("setup", "expected"), [
    ("", "NONE"),
    ("from reidctl.cli.common import set_verbosity\n"
     "set_verbosity(quiet=False, verbose=True)\n", None),  # reidctl -v
])
def test_grpc_log_silenced_unless_verbose(setup: str, expected: str | None) -> None:
    code = setup + "import os, reidctl.store\nprint(os.environ.get('GRPC_VERBOSITY'))\n"
    got = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                         text=True, check=True).stdout.strip()
    assert got == str(expected)
    debug = subprocess.run([sys.executable, "-c", code], env=_env(REIDCTL_DEBUG="1"),
                           capture_output=True, text=True, check=True).stdout.strip()
    assert debug == "None"  # REIDCTL_DEBUG keeps gRPC's own default
    mine = subprocess.run([sys.executable, "-c", code], env=_env(GRPC_VERBOSITY="DEBUG"),
                          capture_output=True, text=True, check=True).stdout.strip()
    assert mine == "DEBUG"  # the user's own setting wins


@pytest.mark.slow  # real processes of several commands
def test_processes_stderr_is_clean(val_images: list[Path], tmp_path: Path) -> None:
    """Real ``reidctl ingest`` and ``search`` processes: strict JSON on stdout, nothing
    on stderr (no gRPC core lines, no absl preamble), GRPC_VERBOSITY in effect in them."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(  # reports the process's setting at exit
        "import atexit, os\natexit.register(lambda: open(os.environ['PROBE_OUT'], 'w')"
        ".write(str(os.environ.get('GRPC_VERBOSITY'))))\n")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in val_images[:4]:
        shutil.copy(p, folder / p.name)
    db = tmp_path / "g.db"
    for i, args in enumerate((["ingest", str(folder)],
                              ["search", str(val_images[1]), "-k", "4", "--threshold", "inf"])):
        seen = tmp_path / f"grpc_verbosity_{i}.txt"
        r = subprocess.run([str(REIDCTL), *args, "--uri", str(db), "--json"],
                           env=_env(PYTHONPATH=str(probe), PROBE_OUT=str(seen)),
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
        assert seen.read_text() == "NONE"
        doc = strict_loads(r.stdout)
    assert len(doc["results"][0]["hits"]) == 4


# --- output files: checked before any work ------------------------------------------------


def test_check_output_file_and_dir(tmp_path: Path) -> None:
    from reidctl.cli.common import check_output_dir, check_output_file
    from reidctl.errors import InputError

    (tmp_path / "f.png").write_bytes(b"x")
    assert check_output_file(tmp_path / "f.png", "--out") == tmp_path / "f.png"  # replaced
    assert check_output_file(tmp_path / "new.png", "--out") == tmp_path / "new.png"
    with pytest.raises(InputError, match="--grid .* is a folder"):
        check_output_file(tmp_path, "--grid")
    assert check_output_file(tmp_path / "no" / "p.png", "--plot")  # folders made on write
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="--plot: .*file is a file"):
        check_output_file(tmp_path / "file" / "p.png", "--plot")
    assert check_output_dir(tmp_path, "--grid") == tmp_path
    assert check_output_dir(tmp_path / "new", "--grid") == tmp_path / "new"  # made later
    with pytest.raises(InputError, match="--grid .* is a file"):
        check_output_dir(tmp_path / "f.png", "--grid")
    assert check_output_dir(tmp_path / "no" / "dir", "--grid")  # made with its parents
    with pytest.raises(InputError, match="--grid: .*file is a file"):
        check_output_dir(tmp_path / "file" / "dir", "--grid")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InputError, match="permission denied"):
            check_output_file(locked / "x.png", "--out")
        with pytest.raises(InputError, match="permission denied"):
            check_output_dir(locked, "--grid")


@pytest.mark.parametrize("argv", [
    ["explain", "{image}", "--out", "{target}"],
    ["calibrate", "{data}", "--out", "{target}"],
    ["train", "--data", "{data}", "--out", "{target}"],
    ["bench", "--root", "{data}", "--plot", "{target}", "--n", "0"],
])
@pytest.mark.parametrize("target", ["folder", "file in the way"])
def test_output_file_options_fail_fast(argv: list[str], target: str, tmp_path: Path,
                                       val_images: list[Path]) -> None:
    (tmp_path / "blocker").write_text("a file where a folder would be made\n")
    path = tmp_path if target == "folder" else tmp_path / "blocker" / "missing" / "out.png"
    values = {"{image}": str(val_images[0]), "{data}": str(val_images[0].parent.parent),
              "{target}": str(path)}
    r = runner.invoke(app, [values.get(a, a) for a in argv], env=RUNNER_ENV)
    assert r.exit_code == 2, r.output + r.stderr
    line = r.stderr.strip()
    assert line.startswith(f"error: {argv[argv.index('{target}') - 1]}")
    assert ("is a folder" if target == "folder" else "blocker is a file") in line
    assert r.stdout == ""
