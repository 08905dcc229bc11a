"""Every field of a checkpoint is checked before anything is built from it.

Each bad checkpoint is a real one, written by ``save_checkpoint``, with one field
changed afterwards; when the change touches what the fingerprint covers (state dict,
PCA arrays, stripes), the fingerprint is recomputed with reidctl's own function, so
the file reaches the field checks instead of failing as "altered".
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from reidctl.cli.main import app
from reidctl.errors import ModelError
from reidctl.model import (
    OSNET_X0_25,
    PCA,
    ConvNet,
    FeatureExtractor,
    ModelRecord,
    fingerprint,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from reidctl.model.backbones import backbone_spec
from tests.cli_helpers import RUNNER_ENV

Edit = Callable[[dict[str, Any]], None]
REPO = Path(__file__).resolve().parents[2]
OPEN_SET = {"threshold": 0.9, "target_fmr": 0.01, "fmr": 0.01, "tmr": 0.8,
            "calibrated_on": {"path": "train", "images": 300, "identities": 30,
                              "protocol": "cuhk03"}}


def _fitted(seed: int, whiten: bool) -> PCA:
    features = np.random.default_rng(seed).standard_normal((200, 128)).astype(np.float32)
    return PCA.fit(features, dim=128, whiten=whiten, shrinkage=0.1 if whiten else 0.0)


@pytest.fixture(scope="module")
def good(osnet: FeatureExtractor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OSNet with a 2-class classifier, a fitted PCA, stripe whitening and an open set."""
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = ConvNet(osnet.model.backbone, channels=128, num_classes=2)
    path = tmp_path_factory.mktemp("validation") / "good.pt"
    save_checkpoint(path, ModelRecord(
        model, OSNET_X0_25, _fitted(0, False), ["p1", "p2"], extra={"epochs": 1},
        stripe_pca=tuple(_fitted(j + 1, True) for j in range(4)), fine_weight=0.7,
        open_set=OPEN_SET))
    return path


class _FileState(nn.Module):
    """Hands a file's state dict to :func:`fingerprint`, which reads only ``state_dict()``."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._state = state

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self._state


def _refingerprint(data: dict[str, Any]) -> None:
    """The fingerprint ``save_checkpoint`` would have written for ``data``.

    Content no PCA can even be made of (a mean and components of different lengths)
    has no fingerprint at all; such files keep theirs, the field checks run first anyway.
    """
    try:
        pca = PCA.from_dict(data["pca"])
        stripe_pca = [PCA.from_dict(p) for p in data.get("stripe_pca", [])]
    except ModelError:
        return
    data["fingerprint"] = fingerprint(_FileState(data["state_dict"]),
                                      backbone_spec(data["backbone"]), pca, data["stripes"],
                                      stripe_pca)


def _variant(src: Path, dst: Path, edit: Edit, refingerprint: bool = False) -> Path:
    data = torch.load(src, weights_only=True)
    edit(data)
    if refingerprint:
        _refingerprint(data)
    torch.save(data, dst)
    return dst


def _set(*keys: str | int, value: Any) -> Edit:
    """An edit that sets ``data[k0][k1]... = value``."""
    def edit(data: dict[str, Any]) -> None:
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return edit


def _drop(*keys: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        target = data
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return edit


def _first_conv(data: dict[str, Any]) -> str:
    """The ONNX name of the stem convolution's weight (a 4-D initializer)."""
    graph = data["arch"]["onnx_graph"]
    return next(n for n, s in graph["initializers"].items() if len(s) == 4)


def _expect(path: Path, *fragments: str) -> str:
    with pytest.raises(ModelError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_good_checkpoint_loads_every_field(good: Path) -> None:
    loaded = load_checkpoint(good)
    assert loaded.classes == ["p1", "p2"] and loaded.model.num_classes == 2
    assert loaded.fine_weight == 0.7 and loaded.open_set == OPEN_SET
    assert len(loaded.stripe_pca) == 4 and all(p.whiten for p in loaded.stripe_pca)
    assert loaded.model.classifier is not None
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())
    extractor = load_model(good)
    assert extractor.threshold == 0.9 and extractor.fine_weight == 0.7


def test_refingerprinted_copy_still_loads(good: Path, tmp_path: Path) -> None:
    """The tests' fingerprint recomputation agrees with the file's own."""
    same = _variant(good, tmp_path / "same.pt", lambda d: None, refingerprint=True)
    assert load_checkpoint(same).fingerprint == load_checkpoint(good).fingerprint


def test_old_checkpoint_without_optional_fields_loads(good: Path, tmp_path: Path) -> None:
    def old(data: dict[str, Any]) -> None:
        for key in ("fine_weight", "open_set", "stripe_pca"):
            del data[key]
    loaded = load_checkpoint(_variant(good, tmp_path / "old.pt", old, refingerprint=True))
    assert loaded.fine_weight == 0.5 and loaded.open_set is None and loaded.stripe_pca == ()


@pytest.mark.parametrize(("edit", "fragments"), [
    (_set("fine_weight", value=float("nan")), ("fine_weight is nan", "finite")),
    (_set("fine_weight", value=float("inf")), ("fine_weight is inf",)),
    (_set("fine_weight", value=1e30), ("fine_weight is 1e+30", "[0, 100]")),
    (_set("open_set", "threshold", value=float("nan")), ("open_set.threshold is nan",)),
    (_set("open_set", "target_fmr", value=float("nan")), ("open_set.target_fmr is nan",)),
], ids=["fine_weight-nan", "fine_weight-inf", "fine_weight-huge", "threshold-nan",
        "target_fmr-nan"])
def test_non_finite_scalars(good: Path, tmp_path: Path, edit: Edit,
                            fragments: tuple[str, ...]) -> None:
    _expect(_variant(good, tmp_path / "bad.pt", edit), *fragments)


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda d: d["pca"]["mean"].__setitem__(5, float("nan")), "pca.mean holds NaN or inf"),
    (lambda d: d["stripe_pca"][2]["explained_variance"].__setitem__(0, float("inf")),
     "stripe_pca[2].explained_variance holds NaN or inf"),
    (lambda d: d["pca"]["components"].__setitem__((0, 0), float("-inf")),
     "pca.components holds NaN or inf"),
], ids=["pca-mean", "stripe-variance", "pca-components"])
def test_non_finite_arrays(good: Path, tmp_path: Path, edit: Edit, fragment: str) -> None:
    _expect(_variant(good, tmp_path / "bad.pt", edit, refingerprint=True), fragment)


def test_non_finite_weights_saved_by_a_diverged_training(
    osnet: FeatureExtractor, tmp_path: Path
) -> None:
    """NaN weights written through save_checkpoint: the fingerprint is theirs, yet refused."""
    backbone = load_model("osnet_x0_25").model.backbone  # a copy: the fixture stays intact
    name, param = next((n, p) for n, p in backbone.named_parameters() if p.dim() == 4)
    with torch.no_grad():
        param[0, 0, 0, 0] = float("nan")
    path = tmp_path / "diverged.pt"
    save_checkpoint(path, ModelRecord(ConvNet(backbone, 128), OSNET_X0_25, PCA.fallback(128)))
    _expect(path, f"'backbone.{name}'", "NaN or inf")


@pytest.mark.parametrize(("edit", "fragments"), [
    (_set("fine_weight", value=-1e30), ("fine_weight is -1e+30", "[0, 100]")),
    (_set("fine_weight", value=-0.1), ("fine_weight is -0.1",)),
    (_set("open_set", "threshold", value=-0.5), ("open_set.threshold is -0.5",)),
    (_set("open_set", "threshold", value=float("-inf")), ("open_set.threshold is -inf",)),
    (_set("open_set", "target_fmr", value=1.5), ("open_set.target_fmr is 1.5", "[0, 1]")),
    (_set("open_set", "calibrated_on", "images", value=-3),
     ("open_set.calibrated_on.images is -3",)),
    (_set("num_classes", value=-1), ("num_classes is -1",)),
    (_set("stripes", value=0), ("stripes is 0",)),
], ids=["fine_weight-1e30", "fine_weight-small", "threshold", "threshold-inf", "target_fmr",
        "images", "num_classes", "stripes"])
def test_negative_and_out_of_range(good: Path, tmp_path: Path, edit: Edit,
                                   fragments: tuple[str, ...]) -> None:
    _expect(_variant(good, tmp_path / "bad.pt", edit), *fragments)


def test_negative_variance(good: Path, tmp_path: Path) -> None:
    edit = _set("stripe_pca", 1, "explained_variance", value=-torch.ones(128))
    bad = _variant(good, tmp_path / "bad.pt", edit, refingerprint=True)
    _expect(bad, "stripe_pca[1].explained_variance holds negative values")


@pytest.mark.parametrize(("edit", "fragments"), [
    (_set("fine_weight", value=True), ("fine_weight must be a number", "bool")),
    (_set("fine_weight", value="0.5"), ("fine_weight must be a number", "str")),
    (_set("open_set", "threshold", value=True), ("open_set.threshold must be a number",)),
    (_set("open_set", "threshold", value=torch.tensor(0.5)),
     ("open_set.threshold has type Tensor",)),
    (_set("open_set", "tmr", value="high"), ("open_set.tmr must be a number",)),
    (_set("open_set", "calibrated_on", "path", value=7),
     ("open_set.calibrated_on.path must be a string",)),
    (_set("open_set", value=[0.5]), ("open_set must be None or a dict",)),
    (_set("stripes", value=4.0), ("stripes must be an integer", "float")),
    (_set("channels", value="128"), ("channels must be an integer",)),
    (_set("num_classes", value=True), ("num_classes must be an integer", "bool")),
    (_set("input_size", value=[256.0, 128]), ("input_size[0] must be an integer",)),
    (_set("input_size", value="256x128"), ("input_size must be [height, width]",)),
    (_set("backbone", value=5), ("backbone must be a string",)),
    (_set("backbone", value="resnet50"), ("backbone 'resnet50' is unknown",)),
    (_set("classes", value=[1, 2]), ("classes must be a list of strings",)),
    (_set("pca", "whiten", value="yes"), ("pca.whiten must be true or false",)),
    (_set("pca", "kind", value="magic"), ("pca.kind must be one of",)),
    (_set("pca", "shrinkage", value="0"), ("pca.shrinkage must be a number",)),
    (_set("pca", value=[1, 2]), ("pca must be a dict",)),
    (_set("extra", "note", value=torch.zeros(2)), ("extra.note has type Tensor",)),
    (_set("extra", value="notes"), ("extra must be a dict",)),
    (_set("arch", value=[]), ("arch must be a dict",)),
    (_set("fingerprint", value=123), ("fingerprint must be a string",)),
    (_set("fingerprint", value="xyz"), ("fingerprint must be 16 hex digits",)),
    (_set("state_dict", value=[1, 2]), ("state_dict is a list, not a mapping",)),
], ids=lambda v: None if callable(v) else v[0].split(" ")[0])
def test_wrong_types(good: Path, tmp_path: Path, edit: Edit, fragments: tuple[str, ...]) -> None:
    _expect(_variant(good, tmp_path / "bad.pt", edit), *fragments)


def test_wrong_tensor_dtypes(good: Path, tmp_path: Path) -> None:
    edit = _set("pca", "mean", value=torch.zeros(128, dtype=torch.int64))
    _expect(_variant(good, tmp_path / "mean.pt", edit, refingerprint=True),
            "pca.mean must be a floating-point tensor", "int64")

    def int_weight(data: dict[str, Any]) -> None:
        key = next(k for k in data["state_dict"] if k.startswith("backbone."))
        data["state_dict"][key] = data["state_dict"][key].to(torch.int32)
    _expect(_variant(good, tmp_path / "state.pt", int_weight, refingerprint=True),
            "state_dict does not fit the model", "torch.int32")


@pytest.mark.parametrize(("edit", "fragments"), [
    (_set("pca", "mean", value=torch.zeros(64)), ("pca.mean has shape [64], expected [128]",)),
    (_set("pca", "components", value=torch.eye(128)[:, :0]),
     ("pca.components projects 128-D to 0-D",)),
    (_set("pca", "components", value=torch.zeros(128, 200)),
     ("pca.components projects 128-D to 200-D",)),
    (_set("pca", "components", value=torch.zeros(128)),
     ("pca.components has shape [128], expected [128, D]",)),
    (_set("stripe_pca", 0, "components", value=torch.zeros(128, 64)),
     ("stripe_pca[0].components has shape [128, 64], expected [128, 128]",)),
    (lambda d: d["stripe_pca"].pop(), ("stripe_pca must be a list of 0 or 4",)),
    (_set("stripe_pca", 3, "explained_variance", value=torch.ones(64)),
     ("stripe_pca[3].explained_variance has shape [64], expected [128]",)),
    (_set("stripes", value=3), ("stripes is 3", "16-row feature map")),
    (_set("stripes", value=32), ("stripes is 32", "[1, 16]")),
    (_set("input_size", value=[128, 64]), ("input size 128x64", "osnet_x0_25")),
    (_set("channels", value=256), ("256 channels does not match",)),
    (_set("classes", value=["p1"]), ("1 class names for num_classes = 2",)),
], ids=lambda v: None if callable(v) else v[0].split(" ")[0])
def test_wrong_shapes(good: Path, tmp_path: Path, edit: Edit, fragments: tuple[str, ...]) -> None:
    _expect(_variant(good, tmp_path / "bad.pt", edit, refingerprint=True), *fragments)


def test_state_dict_tensor_of_another_shape(good: Path, tmp_path: Path) -> None:
    def reshape(data: dict[str, Any]) -> None:
        key = next(k for k, v in data["state_dict"].items() if v.dim() == 4)
        data["state_dict"][key] = torch.zeros(3, 3)
    bad = _variant(good, tmp_path / "bad.pt", reshape, refingerprint=True)
    _expect(bad, "state_dict does not fit the model", "is [3, 3], expected")


def test_classifier_of_another_size(good: Path, tmp_path: Path) -> None:
    """num_classes and names say 5 identities, the classifier weights hold 2."""
    bad = _variant(good, tmp_path / "bad.pt", lambda d: d.update(
        num_classes=5, classes=[f"p{i}" for i in range(5)]))
    _expect(bad, "'classifier.weight' is [2, 128, 1, 1], expected [5, 128, 1, 1]")


@pytest.mark.parametrize(("shape", "fragment"), [
    ([2**16, 2**16], "larger than 67,108,864 elements"),
    ([-1, 3, 3, 3], "a shape is a list of non-negative ints"),
    ([3.0, 3], "a shape is a list of non-negative ints"),
])
def test_impossible_or_oversized_graph_shapes(good: Path, tmp_path: Path, shape: list[Any],
                                              fragment: str) -> None:
    """The ONNX graph's initializer shapes are claims: refused before any allocation."""
    def edit(data: dict[str, Any]) -> None:
        data["arch"]["onnx_graph"]["initializers"][_first_conv(data)] = shape
    _expect(_variant(good, tmp_path / "bad.pt", edit), "arch:", "initializer", fragment)


def test_graph_shape_under_the_limit_that_does_not_run(good: Path, tmp_path: Path) -> None:
    """A large claim under the per-tensor limit: the architecture is built and probed on
    the meta device, so the failing node is named without allocating the 256 MB claimed."""
    def edit(data: dict[str, Any]) -> None:
        data["arch"]["onnx_graph"]["initializers"][_first_conv(data)] = [2**13, 2**13]
    _expect(_variant(good, tmp_path / "bad.pt", edit), "arch: ONNX node", "(Conv)")


@pytest.mark.parametrize(("attr", "value", "fragment"), [
    ("group", 7, "arch: ONNX node"),
    ("strides", [1, 1], "arch gives a feature map of [128, 32, 16]"),
    ("pads", [10**6] * 4, "pads must be 4 integers in [0, 32]"),
    ("strides", [0, 1], "strides must be 2 integers in [1, 32]"),
    ("group", "1", "bad group '1'"),
])
def test_graph_attributes(good: Path, tmp_path: Path, attr: str, value: Any,
                          fragment: str) -> None:
    """A graph whose ops cannot run, or give another feature map, is refused at load."""
    def edit(data: dict[str, Any]) -> None:
        stem = next(n for n in data["arch"]["onnx_graph"]["nodes"] if n["op"] == "Conv")
        stem["attrs"][attr] = value
    _expect(_variant(good, tmp_path / "bad.pt", edit), fragment)


@pytest.mark.parametrize("key", ["backbone", "input_size", "channels", "classes", "num_classes",
                                 "stripes", "pca", "arch", "state_dict", "extra", "fingerprint"])
def test_missing_field(good: Path, tmp_path: Path, key: str) -> None:
    _expect(_variant(good, tmp_path / "bad.pt", _drop(key)), f"field {key!r} is missing")


@pytest.mark.parametrize(("edit", "fragment"), [
    (_drop("pca", "components"), "pca.components is missing"),
    (_drop("open_set", "threshold"), "open_set must be None or a dict with a numeric"),
    (_drop("arch", "onnx_graph"), "lacks its ONNX graph"),
    (lambda d: d["arch"]["onnx_graph"]["nodes"][0].pop("inputs"), "node 0 needs op, name"),
], ids=["pca-components", "threshold", "graph", "graph-node"])
def test_missing_nested_field(good: Path, tmp_path: Path, edit: Edit, fragment: str) -> None:
    _expect(_variant(good, tmp_path / "bad.pt", edit), fragment)


def test_save_refuses_what_load_would(good: Path, tmp_path: Path) -> None:
    ck = load_checkpoint(good)
    ck = replace(ck, open_set=None)
    for weight in (float("nan"), -1.0, 1e30, True):
        with pytest.raises(ValueError, match="fine_weight"):
            save_checkpoint(tmp_path / "w.pt", replace(ck, fine_weight=weight))
    for threshold in (float("nan"), -0.1):
        with pytest.raises(ValueError, match="open_set.threshold"):
            save_checkpoint(tmp_path / "t.pt", replace(ck, open_set={"threshold": threshold}))
    nan_pca = PCA(torch.full((128,), float("nan")), torch.eye(128), None, False, "identity")
    with pytest.raises(ValueError, match=r"pca.mean holds NaN"):
        save_checkpoint(tmp_path / "p.pt", replace(ck, pca=nan_pca, stripe_pca=()))
    for name in ("w.pt", "t.pt", "p.pt"):
        assert not (tmp_path / name).exists()
    fp = save_checkpoint(tmp_path / "inf.pt", replace(
        ck, fine_weight=np.float32(0.25), open_set={"threshold": math.inf, "target_fmr": 1.0}))
    back = load_checkpoint(tmp_path / "inf.pt")  # calibrating at FMR 1 accepts every match
    assert back.fingerprint == fp and back.open_set["threshold"] == math.inf
    assert back.fine_weight == 0.25


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
        data["arch"]["onnx_graph"]["initializers"][_first_conv(data)] = [2**13, 2**13]
    graph = _variant(good, tmp_path / "graph.pt", edit)
    classes = _variant(good, tmp_path / "classes.pt", lambda d: d.update(
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
    (_set("fine_weight", value=float("nan")), "fine_weight is nan"),
    (_set("fine_weight", value=-1e30), "fine_weight is -1e+30"),
    (_set("open_set", "threshold", value=float("nan")), "open_set.threshold is nan"),
    (lambda d: d["arch"]["onnx_graph"]["initializers"].__setitem__(_first_conv(d), [-1, 3]),
     "a shape is a list of non-negative ints"),
    (lambda d: next(n for n in d["arch"]["onnx_graph"]["nodes"] if n["op"] == "Conv")[
        "attrs"].__setitem__("group", 7), "arch: ONNX node"),
    (lambda d: d["arch"]["onnx_graph"]["initializers"].__setitem__(_first_conv(d),
                                                                    [2**13, 2**13]),
     "(Conv): "),
], ids=["fine_weight-nan", "fine_weight-negative", "threshold-nan", "negative-shape",
        "impossible-group", "oversized-shape"])
def test_cli_bad_checkpoint_exits_3(zero_shot_ckpt: Path, lite_db: Path,
                                    val_images: list[Path], tmp_path: Path, edit: Edit,
                                    fragment: str) -> None:
    bad = _variant(zero_shot_ckpt, tmp_path / "bad.pt", edit)
    r = _search(bad, lite_db, val_images[0])
    assert r.exit_code == 3, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert fragment in lines[0] and str(bad) in lines[0]
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr
    assert r.stdout.strip() == "" or "NaN" not in r.stdout
