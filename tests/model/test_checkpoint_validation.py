"""Every field of a checkpoint is checked before anything is built from it.

Each bad checkpoint is a real one, written by ``save_checkpoint``, with one field
changed afterwards; when the change touches what the fingerprint covers (state dict,
PCA arrays, stripes), the fingerprint is recomputed with reidctl's own function, so
the file reaches the field checks instead of failing as "altered".
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from reidctl.model import (
    OSNET_X0_25,
    PCA,
    ConvNet,
    FeatureExtractor,
    ModelRecord,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from tests.model.checkpoint_edits import (
    OPEN_SET,
    Edit,
    drop_field,
    expect_refused,
    first_conv,
    set_field,
    variant,
)


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
    same = variant(good, tmp_path / "same.pt", lambda d: None, refingerprint=True)
    assert load_checkpoint(same).fingerprint == load_checkpoint(good).fingerprint


def test_old_checkpoint_without_optional_fields_loads(good: Path, tmp_path: Path) -> None:
    def old(data: dict[str, Any]) -> None:
        for key in ("fine_weight", "open_set", "stripe_pca"):
            del data[key]
    loaded = load_checkpoint(variant(good, tmp_path / "old.pt", old, refingerprint=True))
    assert loaded.fine_weight == 0.5 and loaded.open_set is None and loaded.stripe_pca == ()


@pytest.mark.parametrize(("edit", "fragments"), [
    (set_field("fine_weight", value=float("nan")), ("fine_weight is nan", "finite")),
    (set_field("fine_weight", value=float("inf")), ("fine_weight is inf",)),
    (set_field("fine_weight", value=1e30), ("fine_weight is 1e+30", "[0, 100]")),
    (set_field("open_set", "threshold", value=float("nan")), ("open_set.threshold is nan",)),
    (set_field("open_set", "target_fmr", value=float("nan")), ("open_set.target_fmr is nan",)),
], ids=["fine_weight-nan", "fine_weight-inf", "fine_weight-huge", "threshold-nan",
        "target_fmr-nan"])
def test_non_finite_scalars(good: Path, tmp_path: Path, edit: Edit,
                            fragments: tuple[str, ...]) -> None:
    expect_refused(variant(good, tmp_path / "bad.pt", edit), *fragments)


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda d: d["pca"]["mean"].__setitem__(5, float("nan")), "pca.mean holds NaN or inf"),
    (lambda d: d["stripe_pca"][2]["explained_variance"].__setitem__(0, float("inf")),
     "stripe_pca[2].explained_variance holds NaN or inf"),
    (lambda d: d["pca"]["components"].__setitem__((0, 0), float("-inf")),
     "pca.components holds NaN or inf"),
], ids=["pca-mean", "stripe-variance", "pca-components"])
def test_non_finite_arrays(good: Path, tmp_path: Path, edit: Edit, fragment: str) -> None:
    expect_refused(variant(good, tmp_path / "bad.pt", edit, refingerprint=True), fragment)


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
    expect_refused(path, f"'backbone.{name}'", "NaN or inf")


@pytest.mark.parametrize(("edit", "fragments"), [
    (set_field("fine_weight", value=-1e30), ("fine_weight is -1e+30", "[0, 100]")),
    (set_field("fine_weight", value=-0.1), ("fine_weight is -0.1",)),
    (set_field("open_set", "threshold", value=-0.5), ("open_set.threshold is -0.5",)),
    (set_field("open_set", "threshold", value=float("-inf")), ("open_set.threshold is -inf",)),
    (set_field("open_set", "target_fmr", value=1.5), ("open_set.target_fmr is 1.5", "[0, 1]")),
    (set_field("open_set", "calibrated_on", "images", value=-3),
     ("open_set.calibrated_on.images is -3",)),
    (set_field("num_classes", value=-1), ("num_classes is -1",)),
    (set_field("stripes", value=0), ("stripes is 0",)),
], ids=["fine_weight-1e30", "fine_weight-small", "threshold", "threshold-inf", "target_fmr",
        "images", "num_classes", "stripes"])
def test_negative_and_out_of_range(good: Path, tmp_path: Path, edit: Edit,
                                   fragments: tuple[str, ...]) -> None:
    expect_refused(variant(good, tmp_path / "bad.pt", edit), *fragments)


def test_negative_variance(good: Path, tmp_path: Path) -> None:
    edit = set_field("stripe_pca", 1, "explained_variance", value=-torch.ones(128))
    bad = variant(good, tmp_path / "bad.pt", edit, refingerprint=True)
    expect_refused(bad, "stripe_pca[1].explained_variance holds negative values")


@pytest.mark.parametrize(("edit", "fragments"), [
    (set_field("fine_weight", value=True), ("fine_weight must be a number", "bool")),
    (set_field("fine_weight", value="0.5"), ("fine_weight must be a number", "str")),
    (set_field("open_set", "threshold", value=True), ("open_set.threshold must be a number",)),
    (set_field("open_set", "threshold", value=torch.tensor(0.5)),
     ("open_set.threshold has type Tensor",)),
    (set_field("open_set", "tmr", value="high"), ("open_set.tmr must be a number",)),
    (set_field("open_set", "calibrated_on", "path", value=7),
     ("open_set.calibrated_on.path must be a string",)),
    (set_field("open_set", value=[0.5]), ("open_set must be None or a dict",)),
    (set_field("stripes", value=4.0), ("stripes must be an integer", "float")),
    (set_field("channels", value="128"), ("channels must be an integer",)),
    (set_field("num_classes", value=True), ("num_classes must be an integer", "bool")),
    (set_field("input_size", value=[256.0, 128]), ("input_size[0] must be an integer",)),
    (set_field("input_size", value="256x128"), ("input_size must be [height, width]",)),
    (set_field("backbone", value=5), ("backbone must be a string",)),
    (set_field("backbone", value="resnet50"), ("backbone 'resnet50' is unknown",)),
    (set_field("classes", value=[1, 2]), ("classes must be a list of strings",)),
    (set_field("pca", "whiten", value="yes"), ("pca.whiten must be true or false",)),
    (set_field("pca", "kind", value="magic"), ("pca.kind must be one of",)),
    (set_field("pca", "shrinkage", value="0"), ("pca.shrinkage must be a number",)),
    (set_field("pca", value=[1, 2]), ("pca must be a dict",)),
    (set_field("extra", "note", value=torch.zeros(2)), ("extra.note has type Tensor",)),
    (set_field("extra", value="notes"), ("extra must be a dict",)),
    (set_field("arch", value=[]), ("arch must be a dict",)),
    (set_field("fingerprint", value=123), ("fingerprint must be a string",)),
    (set_field("fingerprint", value="xyz"), ("fingerprint must be 16 hex digits",)),
    (set_field("state_dict", value=[1, 2]), ("state_dict is a list, not a mapping",)),
], ids=lambda v: None if callable(v) else v[0].split(" ")[0])
def test_wrong_types(good: Path, tmp_path: Path, edit: Edit, fragments: tuple[str, ...]) -> None:
    expect_refused(variant(good, tmp_path / "bad.pt", edit), *fragments)


def test_wrong_tensor_dtypes(good: Path, tmp_path: Path) -> None:
    edit = set_field("pca", "mean", value=torch.zeros(128, dtype=torch.int64))
    expect_refused(variant(good, tmp_path / "mean.pt", edit, refingerprint=True),
            "pca.mean must be a floating-point tensor", "int64")

    def int_weight(data: dict[str, Any]) -> None:
        key = next(k for k in data["state_dict"] if k.startswith("backbone."))
        data["state_dict"][key] = data["state_dict"][key].to(torch.int32)
    expect_refused(variant(good, tmp_path / "state.pt", int_weight, refingerprint=True),
            "state_dict does not fit the model", "torch.int32")


@pytest.mark.parametrize(("edit", "fragments"), [
    (set_field("pca", "mean", value=torch.zeros(64)), ("pca.mean has shape [64], expected [128]",)),
    (set_field("pca", "components", value=torch.eye(128)[:, :0]),
     ("pca.components projects 128-D to 0-D",)),
    (set_field("pca", "components", value=torch.zeros(128, 200)),
     ("pca.components projects 128-D to 200-D",)),
    (set_field("pca", "components", value=torch.zeros(128)),
     ("pca.components has shape [128], expected [128, D]",)),
    (set_field("stripe_pca", 0, "components", value=torch.zeros(128, 64)),
     ("stripe_pca[0].explained_variance has shape [128], expected [64]",)),
    (set_field("stripe_pca", 0, "components", value=torch.zeros(96, 64)),
     ("stripe_pca[0].components has shape [96, 64], expected [128, D]",)),
    (lambda d: d["stripe_pca"].pop(), ("stripe_pca must be a list of 0 or 4",)),
    (set_field("stripe_pca", 3, "explained_variance", value=torch.ones(64)),
     ("stripe_pca[3].explained_variance has shape [64], expected [128]",)),
    (set_field("stripes", value=3), ("stripes is 3", "16-row feature map")),
    (set_field("stripes", value=32), ("stripes is 32", "[1, 16]")),
    (set_field("input_size", value=[128, 64]), ("input size 128x64", "osnet_x0_25")),
    (set_field("channels", value=256), ("256 channels does not match",)),
    (set_field("classes", value=["p1"]), ("1 class names for num_classes = 2",)),
], ids=lambda v: None if callable(v) else v[0].split(" ")[0])
def test_wrong_shapes(good: Path, tmp_path: Path, edit: Edit, fragments: tuple[str, ...]) -> None:
    expect_refused(variant(good, tmp_path / "bad.pt", edit, refingerprint=True), *fragments)


def test_state_dict_tensor_of_another_shape(good: Path, tmp_path: Path) -> None:
    def reshape(data: dict[str, Any]) -> None:
        key = next(k for k, v in data["state_dict"].items() if v.dim() == 4)
        data["state_dict"][key] = torch.zeros(3, 3)
    bad = variant(good, tmp_path / "bad.pt", reshape, refingerprint=True)
    expect_refused(bad, "state_dict does not fit the model", "is [3, 3], expected")


def test_classifier_of_another_size(good: Path, tmp_path: Path) -> None:
    """num_classes and names say 5 identities, the classifier weights hold 2."""
    bad = variant(good, tmp_path / "bad.pt", lambda d: d.update(
        num_classes=5, classes=[f"p{i}" for i in range(5)]))
    expect_refused(bad, "'classifier.weight' is [2, 128, 1, 1], expected [5, 128, 1, 1]")


@pytest.mark.parametrize(("shape", "fragment"), [
    ([2**16, 2**16], "larger than 67,108,864 elements"),
    ([-1, 3, 3, 3], "a shape is a list of non-negative ints"),
    ([3.0, 3], "a shape is a list of non-negative ints"),
])
def test_impossible_or_oversized_graph_shapes(good: Path, tmp_path: Path, shape: list[Any],
                                              fragment: str) -> None:
    """The ONNX graph's initializer shapes are claims: refused before any allocation."""
    def edit(data: dict[str, Any]) -> None:
        data["arch"]["onnx_graph"]["initializers"][first_conv(data)] = shape
    expect_refused(variant(good, tmp_path / "bad.pt", edit), "arch:", "initializer", fragment)


def test_graph_shape_under_the_limit_that_does_not_run(good: Path, tmp_path: Path) -> None:
    """A large claim under the per-tensor limit: the architecture is built and probed on
    the meta device, so the failing node is named without allocating the 256 MB claimed."""
    def edit(data: dict[str, Any]) -> None:
        data["arch"]["onnx_graph"]["initializers"][first_conv(data)] = [2**13, 2**13]
    expect_refused(variant(good, tmp_path / "bad.pt", edit), "arch: ONNX node", "(Conv)")


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
    expect_refused(variant(good, tmp_path / "bad.pt", edit), fragment)


@pytest.mark.parametrize("key", ["backbone", "input_size", "channels", "classes", "num_classes",
                                 "stripes", "pca", "arch", "state_dict", "extra", "fingerprint"])
def test_missing_field(good: Path, tmp_path: Path, key: str) -> None:
    expect_refused(variant(good, tmp_path / "bad.pt", drop_field(key)), f"field {key!r} is missing")


@pytest.mark.parametrize(("edit", "fragment"), [
    (drop_field("pca", "components"), "pca.components is missing"),
    (drop_field("open_set", "threshold"), "open_set must be None or a dict with a numeric"),
    (drop_field("arch", "onnx_graph"), "lacks its ONNX graph"),
    (lambda d: d["arch"]["onnx_graph"]["nodes"][0].pop("inputs"), "node 0 needs op, name"),
], ids=["pca-components", "threshold", "graph", "graph-node"])
def test_missing_nested_field(good: Path, tmp_path: Path, edit: Edit, fragment: str) -> None:
    expect_refused(variant(good, tmp_path / "bad.pt", edit), fragment)


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
