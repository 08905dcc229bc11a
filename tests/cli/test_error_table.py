"""Every row of the error table in docs/errors.md is a test.

The table is read from the doc; each command line is run (through typer's
CliRunner, or as a real process for the Ctrl-C row) with its ``{placeholders}``
replaced by files made here, and the exit code and the message are checked. So the
doc cannot drift from what reidctl does.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidctl.cli.main import app
from reidctl.store.schema import load_spec
from tests.cli_helpers import RUNNER_ENV, SETTINGS_ENV, interrupt_ingest
from tests.data.helpers import SYSTEM_PATH_MAX, make_file
from tests.milvus_server import SERVER_CREDENTIALS

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
HEADER = ["#", "situation", "command", "exit", "what you see"]
CODES_HEADER = ["code", "meaning"]
DAGGER = "†"
MIN_ROWS = 20

# Rows marked † in the doc: what should happen and does not yet. Keyed by the
# situation cell (without the †); remove an entry, and the † in the doc, once fixed.
KNOWN_PROBLEMS: dict[str, str] = {}


runner = CliRunner()


# --- reading the doc ------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of the error table."""

    number: int
    situation: str  # without the † marker
    command: str
    exit: int
    stream: str  # "stderr" or "stdout"
    fragment: str  # pieces separated by "…" must appear in this order
    known_problem: bool  # marked † in the doc

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.situation.lower()).strip("-")
        return f"{self.number}-{slug[:60]}"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _unquote(text: str) -> str:
    return text.replace("`", "").strip()


def read_table(lines: list[str], header: list[str]) -> list[list[str]]:
    """The body rows (cells) of the markdown table whose header is ``header``."""
    i = next((i for i, line in enumerate(lines) if line.lstrip().startswith("|")
              and [c.lower() for c in _cells(line)] == header), None)
    assert i is not None, f"no table with header {header} in {DOC}"
    assert set(lines[i + 1].replace("|", "").strip()) <= set("-: "), "no separator row"
    rows = []
    for line in lines[i + 2:]:
        if not line.lstrip().startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(header), f"{len(cells)} cells, want {len(header)}: {line}"
        rows.append(cells)
    return rows


def parse_rows() -> list[Row]:
    rows = []
    for num, situation, command, code, seen in read_table(DOC.read_text("utf-8").splitlines(),
                                                          HEADER):
        m = re.fullmatch(r"(stderr|stdout):\s*`([^`]+)`", seen)
        assert m, f"row {num}: 'what you see' must be 'stderr: `...`' or 'stdout: `...`'"
        rows.append(Row(int(num), situation.replace(DAGGER, "").strip(), _unquote(command),
                        int(code), m.group(1), m.group(2).strip(), DAGGER in situation))
    return rows


def documented_codes() -> set[int]:
    return {int(code) for code, _ in read_table(DOC.read_text("utf-8").splitlines(),
                                                CODES_HEADER)}


ROWS = parse_rows()


def _params() -> list:
    params = []
    for row in ROWS:
        marks = []
        if row.situation in KNOWN_PROBLEMS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_PROBLEMS[row.situation]))
        if "{server}" in row.command:
            marks.append(pytest.mark.server)
        if "(Ctrl-C)" in row.situation:  # a real ingest, interrupted, then run again
            marks.append(pytest.mark.slow)
        params.append(pytest.param(row, id=row.id, marks=marks))
    return params


# --- the files the placeholders stand for ------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, val_images: list[Path]) -> dict[str, Path]:
    """Inputs shared by the rows (none of them is modified by a row)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("error-table")
    f: dict[str, Path] = {}

    f["gallery_dir"] = root / "gallery"  # what {db} holds
    f["gallery_dir"].mkdir()
    for p in val_images[:6]:
        shutil.copy(p, f["gallery_dir"] / p.name)
    f["val_image"] = f["gallery_dir"] / val_images[0].name

    f["empty_dir"] = root / "empty"
    f["empty_dir"].mkdir()
    f["text_dir"] = root / "texts"
    f["text_dir"].mkdir()
    (f["text_dir"] / "notes.txt").write_text("no images here\n")
    f["fake_dir"] = root / "fakes"
    f["fake_dir"].mkdir()
    (f["fake_dir"] / "a.jpg").write_text("a text file, not a JPEG\n")
    (f["fake_dir"] / "b.png").write_text("a text file, not a PNG\n")
    f["mixed_dir"] = root / "mixed"  # 3 new images and a text file named .jpg
    f["mixed_dir"].mkdir()
    for p in val_images[6:9]:
        shutil.copy(p, f["mixed_dir"] / p.name)
    (f["mixed_dir"] / "x.jpg").write_text("a text file, not a JPEG\n")

    f["not_image"] = root / "x.jpg"
    f["not_image"].write_text("a text file, not a JPEG\n")
    data = val_images[0].read_bytes()
    f["truncated"] = root / "truncated.jpg"
    f["truncated"].write_bytes(data[: len(data) // 2])
    f["tiny"] = root / "tiny.png"
    Image.new("RGB", (8, 8), (90, 60, 30)).save(f["tiny"])
    f["huge"] = root / "huge.png"  # 48 MP: over MAX_PIXELS (40 MP), under PIL's bomb limit
    Image.new("1", (8000, 6000)).save(f["huge"])
    f["bomb"] = root / "bomb.png"  # 400 MP of one colour: ~50 KB on disk
    Image.new("1", (20000, 20000)).save(f["bomb"])
    f["junk_model"] = root / "junk.pt"
    f["junk_model"].write_bytes(os.urandom(4096))

    f["fifo"] = root / "fifo.jpg"  # a named pipe: opening it would block
    os.mkfifo(f["fifo"])
    f["sparse_1g"] = root / "sparse.jpg"  # 1 GiB with no block on disk
    with f["sparse_1g"].open("wb") as fh:
        fh.truncate(1 << 30)
    (root / "long").mkdir()
    path_limit = load_spec("global").field("path").max_length or 0
    f["long_path"] = Path(make_file(root / "long", path_limit + 67, val_images[9].read_bytes()))
    f["deep_path"] = Path(make_file(root / "long", SYSTEM_PATH_MAX + 200,
                                    val_images[0].read_bytes()))
    f["text_db"] = root / "text.db"  # a text file where a Lite database (a folder) belongs
    f["text_db"].write_text("a text file, not a database\n", encoding="utf-8")
    f["foreign_db"] = root / "photos.db"  # a folder of the user's that Milvus Lite did not make
    f["foreign_db"].mkdir()
    (f["foreign_db"] / "notes.txt").write_text("mine\n", encoding="utf-8")

    f["bad_toml"] = root / "bad.toml"
    f["bad_toml"].write_text('colection = "gallery"\n', encoding="utf-8")
    f["invalid_toml"] = root / "invalid.toml"
    f["invalid_toml"].write_text("uri = \n", encoding="utf-8")
    return f


@pytest.fixture(scope="module")
def db(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Lite database with the pair 'gallery': 6 images, default model."""
    uri = tmp_path_factory.mktemp("error-table-db") / "gallery.db"
    r = runner.invoke(app, ["ingest", str(files["gallery_dir"]), "--uri", str(uri), "-q"],
                      env=RUNNER_ENV)
    assert r.exit_code == 0, r.output + r.stderr
    return uri


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A valid checkpoint (OSNet, fallback PCA, no classifier) and broken variants."""
    import torch

    from reidctl.model import PCA, ConvNet, ModelRecord, build_backbone, save_checkpoint

    root = tmp_path_factory.mktemp("error-table-ckpt")
    bb = build_backbone("osnet_x0_25")
    model = ConvNet(bb.module, bb.spec.channels, num_classes=0)
    good = root / "good.pt"
    save_checkpoint(good, ModelRecord(model, bb.spec, PCA.fallback(bb.spec.channels, 128)))
    out: dict[str, Path] = {}

    data = good.read_bytes()
    out["truncated_ckpt"] = root / "truncated.pt"
    out["truncated_ckpt"].write_bytes(data[: len(data) // 2])

    out["state_dict"] = root / "state_dict.pt"
    torch.save(model.state_dict(), out["state_dict"])

    payload = torch.load(good, weights_only=True)  # OSNet weights labelled GoogLeNet
    payload.update(backbone="googlenet", input_size=[512, 256], channels=1024,
                   pca=PCA.fallback(1024, 128).to_dict())
    out["other_arch_ckpt"] = root / "other_arch.pt"
    torch.save(payload, out["other_arch_ckpt"])

    payload = torch.load(good, weights_only=True)  # one weight changed after saving
    state = payload["state_dict"]
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key] = state[key] + 1.0
    out["altered_ckpt"] = root / "altered.pt"
    torch.save(payload, out["altered_ckpt"])

    payload = torch.load(good, weights_only=True)  # NaN fine-stage weight (outside the fingerprint)
    payload["fine_weight"] = float("nan")
    out["nan_weight_ckpt"] = root / "nan_weight.pt"
    torch.save(payload, out["nan_weight_ckpt"])

    payload = torch.load(good, weights_only=True)  # NaN open-set threshold
    payload["open_set"] = {"threshold": float("nan")}
    out["nan_threshold_ckpt"] = root / "nan_threshold.pt"
    torch.save(payload, out["nan_threshold_ckpt"])

    payload = torch.load(good, weights_only=True)  # a graph weight of impossible shape
    shapes = payload["arch"]["onnx_graph"]["initializers"]
    shapes[next(name for name, shape in shapes.items() if len(shape) == 4)] = [-1, 3]
    out["bad_shape_ckpt"] = root / "bad_shape.pt"
    torch.save(payload, out["bad_shape_ckpt"])

    nan_model = ConvNet(build_backbone("osnet_x0_25").module, bb.spec.channels, num_classes=0)
    with torch.no_grad():  # as a diverged training leaves it; saved normally, fingerprint and all
        next(nan_model.parameters()).view(-1)[0] = float("nan")
    out["nan_weights_ckpt"] = root / "nan_weights.pt"
    save_checkpoint(out["nan_weights_ckpt"],
                    ModelRecord(nan_model, bb.spec, PCA.fallback(bb.spec.channels, 128)))
    return out


@pytest.fixture(scope="module")
def val_dir(tmp_path_factory: pytest.TempPathFactory, val_images: list[Path]) -> Path:
    """256 images: 32 batches of 8 for the Ctrl-C row (enough that the signal arrives
    while batches are still being written, even on a fast machine)."""
    folder = tmp_path_factory.mktemp("error-table-ctrlc") / "val"
    folder.mkdir()
    for p in val_images[:256]:
        shutil.copy(p, folder / p.name)
    return folder


def _value(name: str, request: pytest.FixtureRequest, tmp: Path) -> str:
    """The text a placeholder stands for (fixtures are only built when a row uses them)."""
    if name == "tmp":
        return str(tmp)
    if name == "missing":
        return str(tmp / "nope")
    if name == "db":
        return str(request.getfixturevalue("db"))
    if name == "val_dir":
        return str(request.getfixturevalue("val_dir"))
    if name == "cuhk03_root":
        return str(request.getfixturevalue("small_root"))
    if name == "server":
        return request.getfixturevalue("milvus_server").replace(f"{SERVER_CREDENTIALS}@", "")
    if name in ("truncated_ckpt", "state_dict", "other_arch_ckpt", "altered_ckpt",
                "nan_weight_ckpt", "nan_threshold_ckpt", "bad_shape_ckpt", "nan_weights_ckpt"):
        return str(request.getfixturevalue("checkpoints")[name])
    f = request.getfixturevalue("files")
    if name in f:
        return str(f[name])
    raise AssertionError(f"no value for the placeholder {{{name}}}")


def substitute(command: str, request: pytest.FixtureRequest, tmp: Path) -> list[str]:
    """The row's command as arguments (without the leading ``reidctl``)."""
    args = shlex.split(command)
    assert args and args[0] == "reidctl", f"a command starts with 'reidctl': {command}"
    names = sorted(set(re.findall(r"\{(\w+)\}", command)))
    values = {n: _value(n, request, tmp) for n in names}
    return [re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], a) for a in args[1:]]


# --- checking what the user sees ------------------------------------------------------------


def contains_in_order(text: str, fragment: str) -> bool:
    """Whether every "…"-separated piece of ``fragment`` is in ``text``, in order."""
    pos = 0
    for piece in (p.strip() for p in fragment.split("…")):
        found = text.find(piece, pos)
        if found < 0:
            return False
        pos = found + len(piece)
    return True


def check(row: Row, code: int, stdout: str, stderr: str) -> None:
    everything = stdout + stderr
    assert "Traceback" not in everything, everything
    assert code == row.exit, f"exit {code}, want {row.exit}\nstdout: {stdout}\nstderr: {stderr}"
    if row.stream == "stderr":
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, f"want one line on stderr, got:\n{stderr}"
        assert lines[0].startswith("error:"), lines[0]
        assert contains_in_order(lines[0], row.fragment), f"{row.fragment!r} not in {lines[0]!r}"
    else:
        assert contains_in_order(stdout, row.fragment), f"{row.fragment!r} not in:\n{stdout}"


def _console_script() -> list[str]:
    exe = Path(sys.executable).parent / "reidctl"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "reidctl.cli.main"]


def run_interrupted(row: Row, args: list[str]) -> None:
    """Runs the ingest as a real process, sends SIGINT once a batch is stored, checks
    the one-line error, then that the same command run again completes the ingest.
    A run that finished before the signal arrived is retried on a fresh database."""
    uri = Path(args[args.index("--uri") + 1])
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    code, stdout, stderr = interrupt_ingest([*_console_script(), *args], uri, env)
    check(row, code, stdout, stderr)

    r = runner.invoke(app, [*args, "--json"], env=RUNNER_ENV)
    assert r.exit_code == 0, r.output + r.stderr
    rep = json.loads(r.stdout)
    assert rep["skipped"] == 0
    assert rep["ingested"] + rep["updated"] + rep["unchanged"] == rep["files"]
    assert rep["unchanged"] > 0, rep  # what the first run stored was not recomputed


# --- the tests ------------------------------------------------------------------------------


def test_table_is_complete_and_consistent() -> None:
    from reidctl import errors

    assert len(ROWS) >= MIN_ROWS
    assert [r.number for r in ROWS] == list(range(1, len(ROWS) + 1)), "rows numbered 1..N"
    codes = documented_codes()
    library = {c.exit_code for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.ReidctlError)}
    assert library | {0, 130} <= codes, "every exit code of reidctl.errors is documented"
    for r in ROWS:
        assert r.exit in codes, f"row {r.number}: exit {r.exit} is not a documented code"
        assert r.command.startswith("reidctl "), f"row {r.number}"
        if r.stream == "stdout":
            assert r.exit == 0, f"row {r.number}: a stdout row is a run that succeeds"
    assert len({r.situation for r in ROWS}) == len(ROWS), "situations are unique"
    marked = {r.situation for r in ROWS if r.known_problem}
    assert marked == set(KNOWN_PROBLEMS), "rows marked † in the doc == KNOWN_PROBLEMS"


@pytest.mark.parametrize("row", _params())
def test_error_table_row(row: Row, request: pytest.FixtureRequest, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    if "(no GPU)" in row.situation:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    work = tmp_path / "work"  # no ./reidctl.toml, and relative outputs land here
    work.mkdir()
    monkeypatch.chdir(work)
    args = substitute(row.command, request, tmp_path)
    if "(Ctrl-C)" in row.situation:
        run_interrupted(row, args)
        return
    r = runner.invoke(app, args, env=RUNNER_ENV)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    check(row, r.exit_code, r.stdout, r.stderr)
