"""Selectors and filters can only narrow: blank values are refused, a delete of the whole
pair needs --all, and random selector values (quotes, backslashes, wildcards, newlines,
unicode, very long) select exactly what an exact computation over the stored rows
selects, on Milvus Lite and on a server."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app
from tests.cli_helpers import RUNNER_ENV
from tests.milvus_server import drop_all

runner = CliRunner()

# folder -> the --source its images are ingested with: characters that need quoting or
# escaping in a Milvus expression, LIKE wildcards, and non-ASCII text
FOLDERS = {
    "plain": "s1",
    'q"uote': 'a"b',
    "back\\slash": "c\\d",
    "per%cent_under": "%",
    "ünïcode": "ü-ö",
    "sp ace": "_x",
}
PER_FOLDER = 4


def invoke(args: list[str]) -> tuple[int, str, str]:
    r = runner.invoke(app, args, env=RUNNER_ENV)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stdout, r.stderr


def ok_json(args: list[str]) -> dict:
    code, out, err = invoke([*args, "--json"])
    assert code == 0, out + err
    return json.loads(out)


def one_error(code: int, err: str, want_code: int, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert code == want_code and len(lines) == 1 and lines[0].startswith("error:"), (code, err)
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.fixture(scope="module", params=["lite", "server"])
def gallery(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            val_images: list[Path]) -> Iterator[dict]:
    """24 images in folders with awkward names, each folder ingested with its own awkward
    source, into a fresh pair; yields the URI, base options, and the stored rows read
    back without any filter (the reference for the exact computations)."""
    root = tmp_path_factory.mktemp("safety")
    if request.param == "lite":
        uri = str(root / "g.db")
    else:
        uri = request.getfixturevalue("milvus_server")
        drop_all(uri)
    base = ["--uri", uri, "-c", "safety"]
    picks = iter(val_images[::7])
    for folder, source in FOLDERS.items():
        d = root / "g" / folder
        d.mkdir(parents=True)
        for _ in range(PER_FOLDER):
            p = next(picks)
            shutil.copy(p, d / p.name)
        rep = ok_json(["ingest", str(d), *base, "--source", source, "-q"])
        assert rep["ingested"] == PER_FOLDER, rep
    yield {"uri": uri, "base": base, "root": root, "rows": stored_rows(uri)}
    if request.param == "server":
        drop_all(uri)


def stored_rows(uri: str) -> list[dict]:
    from reidctl.store import MilvusStore

    with MilvusStore(uri, "safety") as store:
        return [{"id": pk, **m} for b in store.iterate(with_vectors=False)
                for pk, m in zip(b["id"], b["meta"], strict=True)]


def count(gallery: dict) -> int:
    return ok_json(["info", *gallery["base"]])["collections"][0]["global_count"]


# --- blank values and the whole pair ------------------------------------------------------


BLANK = [["--path-prefix", ""], ["--path-prefix", "  "], ["--camera", ""], ["--source", "\t"],
         ["--person", " "], [""], ["--camera", "A", "--source", ""]]


@pytest.mark.parametrize("selector", BLANK, ids=lambda s: repr(s))
def test_blank_selector_deletes_nothing(gallery: dict, selector: list[str]) -> None:
    before = count(gallery)
    code, _, err = invoke(["delete", *selector, *gallery["base"], "--yes"])
    one_error(code, err, 2, "is empty")
    assert count(gallery) == before == len(gallery["rows"])


@pytest.mark.parametrize("option", ["--camera", "--exclude-camera", "--source"])
def test_blank_filter_is_refused_by_search(gallery: dict, val_images: list[Path],
                                           option: str) -> None:
    code, _, err = invoke(["search", str(val_images[0]), *gallery["base"], option, ""])
    one_error(code, err, 2, f"{option} is empty")


def test_whole_pair_needs_all(gallery: dict, tmp_path: Path) -> None:
    """A selector that happens to match every image (the common folder) is refused
    without --all; with --all it deletes them; --all alone deletes everything."""
    prefix = str(gallery["root"] / "g")
    dry = ok_json(["delete", "--path-prefix", prefix, *gallery["base"], "--dry-run"])
    assert dry["matched"] == dry["total"] == len(gallery["rows"]) and dry["whole_pair"]
    code, _, err = invoke(["delete", "--path-prefix", prefix, *gallery["base"], "--yes"])
    one_error(code, err, 2, "add --all")
    code, _, err = invoke(["delete", *gallery["base"], "--yes"])
    one_error(code, err, 2, "say what to delete")
    assert count(gallery) == len(gallery["rows"])

    # on a copy of the pair, so the module's gallery stays whole
    copy = ["--uri", str(tmp_path / "c.db"), "-c", "copy"]
    ok_json(["ingest", str(gallery["root"] / "g"), *copy, "-q"])
    r = ok_json(["delete", "--path-prefix", prefix, "--all", *copy, "--yes"])
    assert r["deleted"] == len(gallery["rows"])
    ok_json(["ingest", str(gallery["root"] / "g" / "plain"), *copy, "-q"])
    assert ok_json(["delete", "--all", *copy, "--yes"])["deleted"] == PER_FOLDER


def test_relative_and_backslash_prefixes(gallery: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative prefix is resolved like ingest resolves paths; a trailing backslash is
    a character of the path, not an escape."""
    monkeypatch.chdir(gallery["root"])
    rel = ok_json(["delete", "--path-prefix", "g/plain/", *gallery["base"], "--dry-run"])
    assert rel["matched"] == PER_FOLDER
    slash = ok_json(["delete", "--path-prefix", str(gallery["root"] / "g" / "back\\"),
                     *gallery["base"], "--dry-run"])
    assert slash["matched"] == PER_FOLDER
    assert all("back\\slash" in p for p in slash["examples"])


@pytest.mark.parametrize("args", [["delete", "--source", "a\nb", "--dry-run"],
                                  ["delete", "--path-prefix", "/x\n", "--dry-run"],
                                  ["search", "{query}", "--camera", "A\nB"]])
def test_newline_in_a_value_is_a_usage_error(gallery: dict, val_images: list[Path],
                                             args: list[str]) -> None:
    args = [a.replace("{query}", str(val_images[0])) for a in args]
    code, _, err = invoke([*args, *gallery["base"]])
    one_error(code, err, 2, "control character")


# --- random values against an exact computation -------------------------------------------


def _values(rng: random.Random, rows: list[dict], field: str) -> list[str]:
    """Stored values, their pieces, and junk with every awkward kind of character."""
    stored = sorted({str(r[field]) for r in rows})
    junk = ["", " ", "\n", "a\nb", '"', "\\", "%", "_", "*", "'", '" or 1==1 or "', "ü",
            "x" * 5000, "ü" * 1000, "\\%", '\\"', "A B"]
    cut = [v[: rng.randint(0, len(v))] for v in stored]
    return stored * 4 + cut + junk  # stored values weighted up: most cases match something


def _bad(v: str) -> bool:
    return not v.strip() or any(ord(c) < 32 or ord(c) == 127 for c in v)


def _matches(row: dict, prefix: str | None, cams: list[str], excl: list[str],
             sources: list[str], persons: list[str]) -> bool:
    return ((prefix is None or str(row["path"]).startswith(prefix))
            and (not cams or row["camera"] in cams) and row["camera"] not in excl
            and (not sources or row["source"] in sources)
            and (not persons or row["person_id"] in persons))


def test_random_selectors_delete_dry_run(gallery: dict) -> None:
    rng = random.Random(17)
    rows = gallery["rows"]
    paths = _values(rng, rows, "path")
    pools = {"--camera": _values(rng, rows, "camera"), "--source": _values(rng, rows, "source"),
             "--person": _values(rng, rows, "person_id")}
    outcomes = {"refused": 0, "none": 0, "some": 0}
    for case in range(40):
        args: list[str] = []
        prefix = rng.choice(paths) if rng.random() < 0.6 else None
        if prefix is not None:
            args += ["--path-prefix", prefix]
        chosen: dict[str, list[str]] = {}
        for opt, pool in pools.items():
            if rng.random() < 0.4 or (not args and opt == "--person"):
                chosen[opt] = rng.sample(pool, rng.randint(1, 2))
                for v in chosen[opt]:
                    args += [opt, v]
        values = ([prefix] if prefix is not None else []) + sum(chosen.values(), [])
        code, out, err = invoke(["delete", *args, *gallery["base"], "--dry-run", "--json"])
        label = f"case {case}: {args!r}"
        if any(_bad(v) for v in values):
            assert code == 2 and err.strip().startswith("error:"), (label, code, err)
            outcomes["refused"] += 1
            continue
        assert code == 0, (label, out, err)
        want = [r for r in rows if _matches(
            r, prefix if prefix is None or os.path.isabs(prefix) else None,
            chosen.get("--camera", []), [], chosen.get("--source", []),
            chosen.get("--person", []))]
        if prefix is not None and not os.path.isabs(prefix):
            continue  # resolved against the working directory: test_relative_... covers it
        got = json.loads(out)
        assert got["matched"] == len(want), label
        assert got["whole_pair"] == (len(want) == len(rows)), label
        outcomes["some" if want else "none"] += 1
    assert min(outcomes.values()) >= 3, outcomes  # every kind of outcome was exercised
    assert count(gallery) == len(rows)  # dry runs only


@pytest.mark.slow  # many real searches
def test_random_filters_search(gallery: dict, val_images: list[Path]) -> None:
    rng = random.Random(29)
    rows = gallery["rows"]
    pools = {"--camera": _values(rng, rows, "camera"),
             "--exclude-camera": _values(rng, rows, "camera"),
             "--source": _values(rng, rows, "source")}
    query = str(val_images[0])
    outcomes = {"refused": 0, "none": 0, "some": 0}
    for case in range(24):
        args: list[str] = []
        chosen: dict[str, list[str]] = {}
        for opt, pool in pools.items():
            if rng.random() < 0.5 or not args:
                chosen[opt] = rng.sample(pool, rng.randint(1, 2))
                for v in chosen[opt]:
                    args += [opt, v]
        code, out, err = invoke(["search", query, *args, *gallery["base"], "-k", "100",
                                 "--m", "100", "--json"])
        label = f"case {case}: {args!r}"
        if any(_bad(v) for v in sum(chosen.values(), [])):
            assert code == 2 and err.strip().startswith("error:"), (label, code, err)
            outcomes["refused"] += 1
            continue
        assert code == 0, (label, out, err)
        want = {r["id"] for r in rows if _matches(r, None, chosen.get("--camera", []),
                                                  chosen.get("--exclude-camera", []),
                                                  chosen.get("--source", []), [])}
        got = {h["id"] for h in json.loads(out)["results"][0]["hits"]}
        assert got == want, label
        outcomes["some" if want else "none"] += 1
    assert min(outcomes.values()) >= 2, outcomes
