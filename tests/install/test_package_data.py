"""The collection definitions as package data: read through ``reidctl.store``'s package
path in the checkout, and carried as files by the wheel the checkout builds."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest

from reidctl.store import schema
from reidctl.store.schema import ROLES, SCHEMA_DIR, load_spec

REPO = Path(__file__).resolve().parents[2]
TOP_LEVEL = sorted((REPO / "schemas").glob("*.json"))


def test_the_loader_reads_every_schema_through_the_package_path() -> None:
    assert SCHEMA_DIR == files("reidctl.store") / "schemas"
    assert {p.name for p in TOP_LEVEL} == {f"{role}.json" for role in ROLES}
    packaged = {t.name: t.read_bytes() for t in SCHEMA_DIR.iterdir() if t.name.endswith(".json")}
    # the package path shows the top-level files themselves, byte for byte
    assert packaged == {p.name: p.read_bytes() for p in TOP_LEVEL}
    load_spec.cache_clear()
    try:
        for role in ROLES:
            spec = load_spec(role)
            assert spec.role == role and spec.tag == f"reidctl.{role}/1"
    finally:
        load_spec.cache_clear()


def test_a_missing_definition_names_the_package_path(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setattr(schema, "SCHEMA_DIR", tmp_path)
    load_spec.cache_clear()
    try:
        missing = re.escape(f"{tmp_path / 'global.json'} is missing")
        with pytest.raises(schema.StoreError, match=missing):
            load_spec("global")
    finally:
        load_spec.cache_clear()


def test_the_wheel_carries_the_schemas(tmp_path: Path) -> None:
    """Builds a wheel from a copy of what the Dockerfile copies (no build/ left over from
    an earlier build can feed it) and reads the JSON files out of it."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "reidctl", src / "reidctl", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "schemas", src / "schemas")
    out = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (wheel,) = out.glob("reidctl-*.whl")
    with zipfile.ZipFile(wheel) as z:
        carried = {Path(n).name: z.read(n) for n in z.namelist()
                   if n.startswith("reidctl/store/schemas/")}
    assert carried == {p.name: p.read_bytes() for p in TOP_LEVEL}
