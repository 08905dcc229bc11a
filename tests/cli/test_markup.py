"""Text from users or from stored data is printed as it is, never read as rich markup
(``[bold]``, ``[/bold]``) or emoji codes (``:smile:``): file names in the ingest summary
and in search hits, paths in errors, the config file in ``info``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app
from tests.cli_helpers import RUNNER_ENV

runner = CliRunner()
# real images under paths that rich would read as markup or emoji (x[/bold]y.jpg is the
# file bold]y.jpg in the folder x[)
NAMES = ("x[/bold]y.jpg", "[bold red]RED.jpg", "a:smile:b.jpg", "[i]it[/i].jpg")
BAD = "[/bold]bad.jpg"  # not an image: its path is in the skipped-file summary


def _run(*args: str):  # noqa: ANN202
    r = runner.invoke(app, list(args), env=RUNNER_ENV)
    assert "Traceback" not in r.output + r.stderr
    assert "unexpected" not in r.stderr
    return r


@pytest.fixture
def marked(tmp_path: Path, val_images: list[Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder holding imgs/ (the images under markup-like names and one
    non-image); paths are printed relative to it, so table cells stay short."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, src in zip(NAMES, val_images[:len(NAMES)], strict=True):
        (folder / name).parent.mkdir(exist_ok=True)
        shutil.copy(src, folder / name)
    (folder / BAD).parent.mkdir(exist_ok=True)
    (folder / BAD).write_text("a text file, not a JPEG\n")
    return folder


def test_ingest_and_search_print_names_verbatim(marked: Path) -> None:
    r = _run("-v", "ingest", "imgs", "--uri", "g.db")
    assert r.exit_code == 0, r.output + r.stderr
    assert f"ingested {len(NAMES)}," in r.stdout
    assert "skipped 1: not an image" in r.stdout
    assert f"imgs/{BAD}: not an image" in r.stdout

    r = _run("ingest", "imgs", "--uri", "g.db", "--json")
    assert r.exit_code == 0, r.output + r.stderr
    assert [e["path"] for e in json.loads(r.stdout)["skipped_examples"]] == [
        str(marked / BAD)]

    query = f"imgs/{NAMES[0]}"
    r = _run("search", query, "--uri", "g.db", "-k", str(len(NAMES)))
    assert r.exit_code == 0, r.output + r.stderr
    assert r.stdout.startswith(query + "  (coarse ")  # the table title: the query as given
    for name in NAMES:
        assert f"imgs/{name}" in r.stdout, name
    assert "😄" not in r.stdout

    r = _run("search", query, "--uri", "g.db", "-k", str(len(NAMES)), "--json")
    assert r.exit_code == 0, r.output + r.stderr
    hits = json.loads(r.stdout)["results"][0]["hits"]
    assert sorted(str(Path(h["path"]).relative_to(marked)) for h in hits) == sorted(NAMES)

    r = _run("search", query, "--uri", "g.db", "-k", "2", "--threshold", "0")
    assert r.exit_code == 0, r.output + r.stderr
    assert "no match: the best hit" in r.stdout  # the intended style is still there


def test_errors_and_settings_print_user_text_verbatim(marked: Path) -> None:
    missing = "imgs/[bold]gone[/bold].jpg"
    r = _run("ingest", missing, "--uri", "g.db")
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: path does not exist: {missing}"

    r = _run("search", f"imgs/{NAMES[1]}", "--uri", "[red]none.db")
    assert r.exit_code == 5
    assert "error: no Milvus Lite database at [red]none.db" in r.stderr

    config = Path("[bold]c.toml")
    config.write_text('collection = "gallery"\n[search]\nsource = ["[/red]cam:smile:"]\n',
                      encoding="utf-8")
    assert _run("ingest", f"imgs/{NAMES[2]}", "--uri", "g.db").exit_code == 0
    r = _run("--config", str(config), "info", "--uri", "g.db")
    assert r.exit_code == 0, r.output + r.stderr
    assert f"config file: {config}" in r.stdout
    assert "[/red]cam:smile:" in r.stdout
