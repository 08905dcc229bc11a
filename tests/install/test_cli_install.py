"""What an installed reidctl shows on the command line: its version, and the settings
to set when the default weights files are not there (as in an installed wheel)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

import reidctl
from reidctl.cli.main import app
from tests.cli_helpers import RUNNER_ENV, one_line_error

runner = CliRunner()
# the weights settings, unset unless a test sets them
WEIGHTS_ENV = dict(RUNNER_ENV, REIDCTL_OSNET_WEIGHTS=None, REIDCTL_OMZ_DIR=None,
                   REIDCTL_SHARED=None)


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_comes_from_the_package_metadata(flag: str) -> None:
    r = runner.invoke(app, [flag], env=RUNNER_ENV)
    assert r.exit_code == 0, r.output
    assert r.stdout == f"reidctl {version('reidctl')}\n"
    assert reidctl.__version__ == version("reidctl")


def test_the_console_script_prints_the_version_without_loading_torch() -> None:
    script = Path(sys.executable).with_name("reidctl")
    if not script.is_file():
        pytest.skip(f"no console script beside {sys.executable}")
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"reidctl {version('reidctl')}\n", "")
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom reidctl.cli.main import app\n"
            "r = CliRunner().invoke(app, ['--version'])\nassert r.exit_code == 0, r.output\n"
            "assert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _ingest(tmp_path: Path, image: Path, env: dict[str, str | None], *extra: str):  # noqa: ANN202
    return runner.invoke(app, ["ingest", str(image), "--uri", str(tmp_path / "g.db"), "-q",
                               *extra], env=env)


def test_missing_osnet_file_names_its_variable(tmp_path: Path, val_images: list[Path]) -> None:
    missing = tmp_path / "weights" / "osnet.onnx"
    r = _ingest(tmp_path, val_images[0], dict(WEIGHTS_ENV, REIDCTL_OSNET_WEIGHTS=str(missing)))
    assert r.exit_code == 3
    line = one_line_error(r)
    assert line == (f"error: OSNet weights not found at {missing} (from REIDCTL_OSNET_WEIGHTS); "
                    "set REIDCTL_OSNET_WEIGHTS to the path of osnet_x0_25_msmt17.onnx")


def test_missing_omz_folder_names_its_variable(tmp_path: Path, val_images: list[Path]) -> None:
    folder = tmp_path / "omz"
    r = _ingest(tmp_path, val_images[0], dict(WEIGHTS_ENV, REIDCTL_OMZ_DIR=str(folder)),
                "--model", "omz_0286")
    assert r.exit_code == 3
    line = one_line_error(r)
    xml = folder / "person-reidentification-retail-0286.xml"
    assert f"omz_0286 weights not found at {xml} (from REIDCTL_OMZ_DIR)" in line
    assert "REIDCTL_SHARED" not in line


@pytest.mark.parametrize(("model", "under"), [
    ("osnet_x0_25", "weights/osnet_x0_25_msmt17.onnx"),
    ("omz_0286", "weights/omz/person-reidentification-retail-0286.xml"),
])
def test_missing_shared_folder_names_both_variables(tmp_path: Path, val_images: list[Path],
                                                    model: str, under: str) -> None:
    shared = tmp_path / "shared"
    r = _ingest(tmp_path, val_images[0], dict(WEIGHTS_ENV, REIDCTL_SHARED=str(shared)),
                "--model", model)
    assert r.exit_code == 3
    line = one_line_error(r)
    assert f"not found at {shared / under} (under REIDCTL_SHARED)" in line
    direct = "REIDCTL_OSNET_WEIGHTS" if model == "osnet_x0_25" else "REIDCTL_OMZ_DIR"
    assert f"set {direct} to" in line
    assert f"or REIDCTL_SHARED to the folder holding {under}" in line
