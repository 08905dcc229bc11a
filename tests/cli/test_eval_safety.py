"""eval never writes into a collection pair it did not make for itself, and never scores
against a pair that was changed after it made it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app
from tests.cli_helpers import RUNNER_ENV

runner = CliRunner()


def run(args: list[str]) -> tuple[int, str, str]:
    r = runner.invoke(app, args, env=RUNNER_ENV)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stdout, r.stderr


def counts(uri: str) -> dict[str, int]:
    """Rows per collection pair (read with the library: a reidctl.toml in the working
    directory does not narrow it)."""
    from reidctl.store import MilvusStore

    with MilvusStore(uri) as store:
        names = store.pair_names()
    out = {}
    for name in names:
        with MilvusStore(uri, name) as store:
            out[name] = store.count()
    return out


@pytest.mark.slow
def test_eval_leaves_a_production_gallery_alone(
    tmp_path: Path, small_root: Path, val_images: list[Path], monkeypatch
) -> None:
    uri = str(tmp_path / "prod.db")
    gallery = tmp_path / "crops"
    gallery.mkdir()
    for p in val_images[200:206]:
        shutil.copy(p, gallery / p.name)
    code, out, err = run(["ingest", str(gallery), "--uri", uri, "-q"])
    assert code == 0, out + err
    evaluate = ["eval", "--dataset", "cuhk03", "--root", str(small_root), "--uri", uri, "-q"]

    # named on the command line: refused before anything is written
    code, _, err = run([*evaluate, "-c", "gallery"])
    assert code == 2 and err.startswith("error: collection pair 'gallery' was made by ingest")
    assert counts(uri) == {"gallery": 6}

    # the README's reidctl.toml names the production gallery for every command: eval
    # keeps to its own pair
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reidctl.toml").write_text('collection = "gallery"\n', encoding="utf-8")
    code, out, err = run([*evaluate, "--json"])
    assert code == 0, out + err
    report = json.loads(out)
    own = report["collection"]
    assert own.startswith("eval_cuhk03_") and report["gallery_size"] > 0
    assert counts(uri) == {"gallery": 6, own: report["gallery_size"]}

    # an image ingested into eval's pair afterwards: eval refuses to score against it
    code, out, err = run(["ingest", str(val_images[300]), "--uri", uri, "-c", own, "-q"])
    assert code == 0, out + err
    code, _, err = run(evaluate)
    assert code == 2 and f"holds {report['gallery_size'] + 1} images but" in err, err
    assert counts(uri)["gallery"] == 6
