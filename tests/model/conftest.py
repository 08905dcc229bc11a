"""Model-test fixtures: the real OSNet and OMZ weights (same default path logic as
the library) and real CUHK03 images (``cuhk03_root`` comes from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reidctl.model import FeatureExtractor, default_omz_dir, default_osnet_weights, load_model
from reidctl.model.backbones import OMZ_FILES
from tests.model.checkpoint_edits import write_good_checkpoint
from tests.model.helpers import load_image


@pytest.fixture(scope="session")
def osnet_weights() -> Path:
    path = default_osnet_weights()
    if not path.is_file():
        pytest.skip(f"OSNet weights not found at {path} (set REIDCTL_OSNET_WEIGHTS)")
    return path


@pytest.fixture(scope="session")
def omz_dir() -> Path:
    """The folder holding the OMZ ReID ``.xml``/``.bin`` pairs."""
    folder = default_omz_dir()
    missing = [f for f in OMZ_FILES.values()
               if not (folder / f).is_file() or not (folder / f).with_suffix(".bin").is_file()]
    if missing:
        pytest.skip(f"OMZ weights {missing[0]} not found in {folder} (set REIDCTL_OMZ_DIR)")
    return folder


@pytest.fixture(scope="session")
def osnet(osnet_weights: Path) -> FeatureExtractor:
    return load_model("osnet_x0_25")


@pytest.fixture(scope="session")
def googlenet() -> FeatureExtractor:
    return load_model("googlenet")


@pytest.fixture(scope="session")
def cuhk_image(cuhk03_root: Path) -> torch.Tensor:
    """``val/0000_00.jpg`` (person 0, camera A) as ``(3, 256, 128)`` in [0, 1]."""
    return load_image(cuhk03_root / "val" / "0000_00.jpg", (256, 128))


@pytest.fixture(scope="module")
def good(osnet: FeatureExtractor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint with every optional field set, for the tests that edit one."""
    return write_good_checkpoint(osnet, tmp_path_factory.mktemp("validation"))
