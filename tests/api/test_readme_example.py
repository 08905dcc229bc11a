"""The README's Python API example, run as written in its own process against a real gallery
laid out the way it expects: ``reidctl.db`` with the collection pair ``cuhk03_val``, a
``query.jpg`` and a ``crops/`` folder in the working directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reidctl.api import Gallery, ImageNotFound, where
from reidctl.data.images import read_bytes
from reidctl.model import FeatureExtractor
from tests.api.helpers import person

README = Path(__file__).resolve().parents[2] / "README.md"
README_MODEL = "runs/omz_0286_cuhk03.pt"  # the fitted checkpoint the example names
# The one substitution: a cheap zero-shot backbone in place of that checkpoint, which a
# checkout does not hold. Every other line runs exactly as the README prints it.
CHEAP_MODEL = "osnet_x0_25"
GALLERY_PERSONS = 4  # persons 0000-0003: their camera-B shots (05-09) are the gallery
QUERY = "0002_00.jpg"  # a camera-A shot of a stored person
CROPS = ("0050_00.jpg", "0051_05.jpg", "0052_07.jpg")  # persons not in the gallery
HIT_LINE = re.compile(r"^(\d+) (\S+) (\S*) (.+)$")  # rank, distance, person, path


def readme_example() -> str:
    """The python code block under ``## Python API`` in the README."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert m, "no python code block under '## Python API' in README.md"
    return m.group(1)


@pytest.fixture()
def workdir(tmp_path: Path, val_images: list[Path], default_model: FeatureExtractor) -> Path:
    """``reidctl.db`` holding the camera-B images of a few CUHK03 val persons (original
    names) as ``cuhk03_val``, ``query.jpg`` and ``crops/`` with three other persons."""
    by_name = {p.name: p for p in val_images}
    images = tmp_path / "gallery"
    images.mkdir()
    for p in val_images:
        if int(p.name[:4]) < GALLERY_PERSONS and int(p.stem[-2:]) >= 5:
            shutil.copy(p, images / p.name)
    shutil.copy(by_name[QUERY], tmp_path / "query.jpg")
    (tmp_path / "crops").mkdir()
    for name in CROPS:
        shutil.copy(by_name[name], tmp_path / "crops" / name)
    with Gallery(tmp_path / "reidctl.db", "cuhk03_val", model=default_model,
                 create=True) as g:  # closed before the example opens it: Lite is one process
        assert g.ingest([images]).ingested == len(list(images.iterdir())) >= 15
    return tmp_path


@pytest.mark.slow
def test_the_readme_python_example_runs(workdir: Path,
                                        default_model: FeatureExtractor) -> None:
    code = readme_example()
    assert code.count(README_MODEL) == 1, "the example no longer names " + README_MODEL
    script = workdir / "example.py"
    script.write_text(code.replace(README_MODEL, CHEAP_MODEL), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REIDCTL_")}
    run = subprocess.run([sys.executable, str(script)], cwd=workdir, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    *hit_lines, last = run.stdout.strip().splitlines()

    with Gallery(workdir / "reidctl.db", "cuhk03_val", model=default_model) as g:
        want = g.search(workdir / "query.jpg", k=5, filters=where(camera="B"))[0]
        stored = g.count()
        for crop in (workdir / "crops").iterdir():
            with pytest.raises(ImageNotFound):
                g.get(read_bytes(crop)[0])  # the id: sha256 of the file
    # what the example printed is what the API answers for the same query
    assert len(hit_lines) == len(want.hits) == 5
    for line, h in zip(hit_lines, want.hits, strict=True):
        m = HIT_LINE.match(line)
        assert m, line
        rank, distance, who, path = m.groups()
        assert (int(rank), who, path) == (h.rank, h.person, h.path)
        assert float(distance) == pytest.approx(h.distance, abs=1e-3)
        assert Path(path).parent == workdir / "gallery" and who == person(Path(path))
    no_match, total_ms = last.split()
    assert no_match == str(want.no_match) and float(total_ms) > 0
    # the example's ingest of crops/ was undone by its delete: the gallery is as it was
    assert stored == len(list((workdir / "gallery").iterdir()))
