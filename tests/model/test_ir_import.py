"""The OpenVINO IR importer on the real OMZ ReID networks, against the OpenVINO runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reidctl.data.batches import to_batch
from reidctl.data.images import load
from reidctl.errors import ModelError
from reidctl.model import (
    PCA,
    ConvNet,
    FeatureExtractor,
    IrBackbone,
    IrGraphModule,
    ModelRecord,
    build_omz,
    load_checkpoint,
    load_ir_module,
    load_model,
    normalize,
    save_checkpoint,
)
from reidctl.model.backbones import OMZ_CUT, OMZ_FILES, backbone_spec
from tests.model.helpers import seeded_images

SIZE = (256, 128)
IMAGES = 16


def _rel(ours: torch.Tensor, ref: np.ndarray) -> float:
    """Max abs difference over the reference's max abs value."""
    return float(np.abs(ours.detach().numpy() - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def pixels(val_images: list[Path]) -> list[np.ndarray]:
    """16 CUHK03 val images spread over the identities, decoded and resized the way
    reidctl does: (3, 256, 128) RGB uint8 each."""
    step = len(val_images) // IMAGES
    return [load(p, SIZE).pixels for p in val_images[::step][:IMAGES]]


@pytest.fixture(scope="module")
def cut_0286(omz_dir: Path) -> IrBackbone:
    return build_omz("omz_0286", omz_dir).module.eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OMZ_FILES))
def test_matches_openvino(name: str, omz_dir: Path, pixels: list[np.ndarray]) -> None:
    """The embedding and the last conv map agree with OpenVINO's own f32 inference on real
    images: reidctl's normalised RGB batch on our side, BGR 0-255 one by one on theirs."""
    ov = pytest.importorskip("openvino")
    xml = omz_dir / OMZ_FILES[name]
    core = ov.Core()
    network = core.read_model(str(xml))
    network.add_outputs([OMZ_CUT])
    compiled = core.compile_model(network, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    emb_port, map_port = compiled.outputs
    assert map_port.get_any_name() == OMZ_CUT
    refs = [compiled(p[::-1].astype(np.float32)[None]) for p in pixels]  # BGR, 0-255
    ref_emb = np.concatenate([r[emb_port] for r in refs])  # (16, 256)
    ref_map = np.concatenate([r[map_port] for r in refs])  # (16, K, 16, 8)

    x = normalize(to_batch(pixels))  # (16, 3, 256, 128), what every reidctl backbone gets
    full = IrBackbone(load_ir_module(xml)).eval()
    cut = build_omz(name, omz_dir).module.eval()
    with torch.no_grad():
        emb, fmap = full(x), cut(x)
        head = cut.embed(fmap)  # the backbone's own head on its map: what f_g is made from
    k = backbone_spec(name).channels
    assert emb.shape == ref_emb.shape == head.shape == (IMAGES, 256)
    assert fmap.shape == ref_map.shape == (IMAGES, k, 16, 8)
    assert _rel(emb, ref_emb) < 1e-3
    assert _rel(head, ref_emb) < 1e-3
    assert _rel(fmap, ref_map) < 1e-3


def test_adapter_gives_bgr_0_255() -> None:
    x = seeded_images(2, SIZE)
    bgr = IrBackbone.adapt(normalize(x))
    torch.testing.assert_close(bgr, (x * 255.0).flip(1), rtol=0, atol=1e-4)


def test_weights_are_trainable_parameters(cut_0286: IrBackbone) -> None:
    """Every weight is a graph constant turned f32 parameter (the adapter adds none), and a
    training step as reidctl's takes it (channels-last, classifier block and head output,
    backward) gives every one a gradient."""
    graph = cut_0286.graph
    params = dict(cut_0286.named_parameters())
    assert params and all(p.requires_grad and p.dtype == torch.float32 for p in params.values())
    assert set(cut_0286.state_dict()) == {f"graph.{a}" for a in graph.param_names.values()}
    assert set(graph.param_names) == set(graph.graph_spec()["initializers"])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ConvNet(cut_0286, backbone_spec("omz_0286").channels, num_classes=3)
    model.to(memory_format=torch.channels_last).train()
    try:
        x = normalize(seeded_images(2, SIZE)).contiguous(memory_format=torch.channels_last)
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2]))  # (2, 3)
        (loss + model.global_input(out.feature_map).pow(2).mean()).backward()  # (2, 256)
        grads = [p.grad for p in cut_0286.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(bool(g.abs().sum() > 0) for g in grads if g is not None)
    finally:
        model.to(memory_format=torch.contiguous_format).eval()
        model.zero_grad(set_to_none=True)


def test_batch_does_not_change_results(cut_0286: IrBackbone) -> None:
    """Shapes folded from the batch-1 file follow the batch (Reshape targets become -1)."""
    x = normalize(seeded_images(3, SIZE, seed=2))
    with torch.no_grad():
        together = cut_0286(x)
        alone = torch.cat([cut_0286(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


def test_checkpoint_round_trip_without_ir_files(
    cut_0286: IrBackbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = backbone_spec("omz_0286")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ConvNet(cut_0286, spec.channels, num_classes=2)
    pca = PCA.fallback(model.global_in_dim, 128)
    assert model.global_in_dim == 256  # f_g is projected from the network's own head
    path = tmp_path / "omz.pt"
    fp = save_checkpoint(path, ModelRecord(model, spec, pca, ["a", "b"]))
    arch = torch.load(path, weights_only=True)["arch"]
    assert arch["ir_graph"]["format"] == "reidctl.irgraph/1"
    assert (arch["ir_map"], arch["embedding_dim"]) == (OMZ_CUT, 256)
    monkeypatch.setenv("REIDCTL_OMZ_DIR", str(tmp_path / "nowhere"))
    extractor = load_model(path)
    assert extractor.fingerprint == fp and extractor.spec == spec
    assert extractor.model.num_classes == 2
    x = seeded_images(2, SIZE, seed=4)
    ours = extractor.extract(x)
    direct = FeatureExtractor(ModelRecord(model, spec, pca)).extract(x)
    np.testing.assert_array_equal(ours.global_, direct.global_)
    np.testing.assert_array_equal(ours.local, direct.local)


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda g: g.pop("ir_graph"), "lacks its IR graph"),
    (lambda g: g["ir_graph"]["nodes"][3].update(op="Softplus"), "Softplus"),
    (lambda g: next(n for n in g["ir_graph"]["nodes"] if n["op"] == "Convolution")[
        "attrs"].update(pads_begin=[100, 100]), "pads_begin must be 2 integers in [0, 32]"),
    (lambda g: next(n for n in g["ir_graph"]["nodes"] if n["op"] == "Reshape")[
        "attrs"].update(shape=[-1, -1]), "more than one -1"),
    (lambda g: next(n for n in g["ir_graph"]["nodes"] if n["op"] == "MVN")[
        "attrs"].update(eps=float("nan")), "eps must be a finite number"),
    (lambda g: g.update(embedding_dim=255), "pca.mean has shape [256], expected [255]"),
    (lambda g: g.update(ir_map="nope"), "no inner tensor 'nope'"),
    (lambda g: g.update(embedding_dim="x"), "embedding_dim must be an integer"),
], ids=["no-graph", "unknown-op", "pads", "reshape", "eps", "head-size", "head-cut",
        "head-type"])
def test_checkpoint_with_a_bad_graph_is_refused(cut_0286: IrBackbone, tmp_path: Path,
                                                edit: object, fragment: str) -> None:
    spec = backbone_spec("omz_0286")
    good = tmp_path / "good.pt"
    save_checkpoint(good, ModelRecord(ConvNet(cut_0286, spec.channels), spec,
                                      PCA.fallback(256, 128)))
    data = torch.load(good, weights_only=True)
    edit(data["arch"])  # type: ignore[operator]
    bad = tmp_path / "bad.pt"
    torch.save(data, bad)
    with pytest.raises(ModelError, match=str(bad)) as info:
        load_checkpoint(bad)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_missing_files_say_where_and_which_variable(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REIDCTL_OMZ_DIR", str(tmp_path))
    with pytest.raises(ModelError, match=rf"{tmp_path}.*REIDCTL_OMZ_DIR"):
        build_omz("omz_0277")
    with pytest.raises(ModelError, match="REIDCTL_OMZ_DIR"):
        load_model("omz_0286")


def test_probe_refuses_a_huge_intermediate() -> None:
    """A graph (as a checkpoint could hold it) whose broadcasting Add would build a
    16384 x 16384 activation from a 16384-vector: refused by the meta-device probe."""
    n = 2**14

    def node(op: str, name: str, inputs: list[str], **attrs: object) -> dict[str, object]:
        return {"op": op, "name": name, "inputs": inputs, "outputs": [name], "attrs": attrs}

    spec = {"format": "reidctl.irgraph/1", "input": "x", "output": "sum", "initializers": {},
            "nodes": [node("Reshape", "col", ["x"], shape=[-1, n, 1]),
                      node("Reshape", "row", ["x"], shape=[-1, 1, n]),
                      node("Add", "sum", ["col", "row"], auto_broadcast="numpy")]}
    module = IrGraphModule(spec)
    with pytest.raises(ModelError, match=r"IR node 'sum' \(Add\): output of shape .* larger"):
        module.probe(torch.empty(1, n, device="meta"))
