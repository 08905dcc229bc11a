"""The triplet term on f_l: what it compares, and that training with it lowers it (OSNet on
real CUHK03 images of a few identities)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reidctl.data.images import decode_hwc, read_file
from reidctl.errors import InputError
from reidctl.model import STRIPES, ConvNet, build_backbone, describe
from reidctl.model.pca import PCA
from reidctl.pipeline.train import TrainSettings, _validate, schedule
from reidctl.pipeline.train_loop import (
    batch_hard_triplet,
    local_metric_input,
    make_optimizer,
    prepare_images,
    run_epoch,
)


@pytest.fixture(scope="module")
def batch(cuhk03_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """4 images each of 4 identities, (16, 3, 256, 128) uint8, and their labels."""
    files = sorted((cuhk03_root / "train").glob("*.jpg"))
    by_person: dict[str, list[Path]] = {}
    for f in files:
        by_person.setdefault(f.name[:4], []).append(f)
    chosen = [(i, f) for i, p in enumerate(sorted(by_person)[:4]) for f in by_person[p][:4]]
    images = torch.from_numpy(np.stack([decode_hwc(read_file(f), (256, 128))
                                        for _, f in chosen])).permute(0, 3, 1, 2)  # uint8
    return images, torch.tensor([i for i, _ in chosen])


def test_local_metric_input_is_f_l_before_any_projection() -> None:
    fm = torch.rand(3, 128, 16, 8, generator=torch.Generator().manual_seed(0))
    x = local_metric_input(fm)
    k = fm.shape[1]
    ident = PCA(torch.zeros(k), torch.eye(k), None, False, "identity")
    _, f_l = describe(fm, ident, STRIPES)
    assert x.shape == (3, STRIPES * k)
    torch.testing.assert_close(x, f_l)


def test_training_with_the_local_triplet_lowers_it(batch: tuple[torch.Tensor, torch.Tensor],
                                                    ) -> None:
    torch.manual_seed(0)
    bb = build_backbone("osnet_x0_25")
    model = ConvNet(bb.module, bb.spec.channels, num_classes=4, part_stripes=STRIPES)
    opt = make_optimizer(model, 3e-4, 10.0, 5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule(0, 40))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    images, labels = batch
    with torch.no_grad():
        model.eval()
        before = float(batch_hard_triplet(local_metric_input(
            model.features(prepare_images(images, torch.device("cpu")))), labels, 0.3))
    losses = []
    for _ in range(6):
        stats = run_epoch(model, [(images, labels)], opt, sched, scaler, torch.device("cpu"),
                          label_smoothing=0.1, triplet_weight=1.0, margin=0.3,
                          part_weight=1.0, local_triplet_weight=1.0)
        losses.append(stats["local_triplet"])
    assert before > 0 and losses[0] > 0
    assert losses[-1] < losses[0]
    stats = run_epoch(model, [(images, labels)], opt, sched, scaler, torch.device("cpu"),
                      label_smoothing=0.1, triplet_weight=1.0, margin=0.3)
    assert stats["local_triplet"] == 0.0  # off unless asked for
    assert np.isfinite(stats["loss"])


def test_a_negative_weight_is_refused() -> None:
    with pytest.raises(InputError, match="local_triplet_weight must be >= 0"):
        _validate(TrainSettings(local_triplet_weight=-1.0))
