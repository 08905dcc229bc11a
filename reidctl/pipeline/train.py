"""Training Conv-Net as identity classification on a labeled folder, resumable and repeatable.

Recipe (ReID practice on top of the paper's classifier block): softmax
cross-entropy with label smoothing on the GAP of the confidence maps, plus a
batch-hard triplet term on the GAP of the feature map; identity-balanced P x K
batches; flip, pad-and-crop and random-erasing augmentation; linear warmup then
cosine decay, stepped per batch. Optionally (``part_weight``) a classifier block per
horizontal stripe adds the mean of the stripes' cross-entropies (part supervision),
and (``freeze``) the backbone up to a graph tensor is frozen and its outputs cached
(:mod:`reidctl.pipeline.train_cache`), so that each epoch runs only the rest.

Optimiser: AdamW, ``lr`` for the backbone and ``10 x lr`` for the freshly
initialised classifier block. The OSNet ONNX backbone has its batch norm folded
into the convolution biases, so nothing re-normalises activations during
training; plain SGD at the usual ReID rates (1e-2 and up) makes such a network
diverge, while Adam's per-parameter step size keeps updates proportional to each
weight's gradient scale (3e-4 is the Adam rate of the strong ReID baselines).

Input size per backbone (:data:`reidctl.model.backbones.SPECS`): 256x128 for
OSNet, its pretraining size (its weights were learned at that scale, and it keeps
a CPU epoch of CUHK03 near two minutes); 512x256 for GoogLeNet, the paper's
size (its Table 3: the larger input gives the best mAP).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

from reidctl.config import resolve_device
from reidctl.data.augment import AugmentSettings
from reidctl.data.sampler import check_pk, pk_batches
from reidctl.errors import InputError
from reidctl.model import (
    GLOBAL_DIM,
    GOOGLENET,
    PCA,
    STRIPES,
    BackboneSpec,
    ConvNet,
    FeatureExtractor,
    ModelRecord,
    build_backbone,
    build_googlenet,
    save_checkpoint,
)
from reidctl.pipeline.fit import DEFAULT_SHRINKAGE, fine_weight_for, fit_projections
from reidctl.pipeline.results import TrainReport
from reidctl.pipeline.stages import StageFn
from reidctl.pipeline.train_cache import (
    cached_batches,
    pooled_cache,
    pooled_features,
    prefix_cache,
    prepare_maps,
    split_model,
    suffix_net,
)
from reidctl.pipeline.train_data import (
    AugmentedImages,
    LabeledFiles,
    epoch_batches,
    labeled_files,
)
from reidctl.pipeline.train_loop import (
    imprint_classifier,
    make_optimizer,
    prepare_images,
    run_epoch,
)
from reidctl.pipeline.train_state import capture_rng, restore_run, save_state, seed_all, state_path
from reidctl.timing import Stopwatch


@dataclass(frozen=True)
class TrainSettings:
    """Everything that shapes the trained weights; a state file resumes only with equal settings.

    Attributes:
        backbone: ``"osnet_x0_25"`` (from the ONNX weights), ``"omz_0286"`` /
            ``"omz_0277"`` (from the OpenVINO IR ``.xml`` and its ``.bin``, or their folder) or
            ``"googlenet"`` (from scratch unless ``weights`` names a state_dict).
        epochs: passes over the data (the LR schedule spans all of them).
        batch_p: identities per batch.
        batch_k: images per identity in a batch.
        lr: backbone learning rate (AdamW); the classifier block gets ``classifier_lr_mult`` x.
        classifier_lr_mult: learning-rate factor of the classifier block.
        classifier_init: ``"imprint"`` (class means of the starting features, see
            :func:`~reidctl.pipeline.train_loop.imprint_classifier`; used only for a
            pretrained backbone) or ``"random"``.
        weight_decay: AdamW decoupled weight decay.
        warmup_epochs: linear warmup from 0.1 x lr, then cosine decay to 0.01 x lr.
        label_smoothing: of the cross-entropy.
        triplet_weight: weight of the batch-hard triplet term (0: cross-entropy only).
        triplet_margin: its margin.
        erasing: random-erasing probability.
        pad: pixels padded before the random crop.
        seed: seeds every random draw (init, batches, augmentation).
        max_identities: train on the first N identities only (quick runs).
        weights: initial backbone weights file (ONNX for OSNet, state_dict for GoogLeNet).
        part_weight: weight of the mean cross-entropy of the per-stripe classifier blocks
            (0: none; they are dropped before the checkpoint is written).
        local_triplet_weight: weight of a batch-hard triplet term on f_l itself (the
            stripes as the fine stage compares them; 0: none), so that the local descriptor
            is trained as a metric and not only through the per-stripe classifiers.
        freeze: graph tensor to freeze the backbone up to (e.g. ``"941"``, the start of
            conv4 of omz_0286); the prefix's outputs are cached and augmented on the map
            (flip and erasing only, no pad-and-crop). ``None``: train the whole backbone.
    """

    backbone: str = "osnet_x0_25"
    epochs: int = 12
    batch_p: int = 16
    batch_k: int = 4
    lr: float = 3e-4
    classifier_lr_mult: float = 10.0
    classifier_init: str = "imprint"
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    triplet_weight: float = 1.0
    triplet_margin: float = 0.3
    erasing: float = 0.5
    pad: int = 10
    seed: int = 0
    max_identities: int | None = None
    weights: str | None = None
    part_weight: float = 0.0
    freeze: str | None = None
    local_triplet_weight: float = 0.0


class TrainStep(NamedTuple):
    """Progress after one batch; loss and accuracy are running means over the epoch."""

    epoch: int  # 1-based
    epochs: int
    step: int  # 1-based, within the epoch
    steps: int
    global_step: int
    total_steps: int
    loss: float
    acc: float
    lr: float


class EpochResult(NamedTuple):
    """One finished epoch (means over its batches)."""

    epoch: int
    epochs: int
    loss: float
    ce: float
    triplet: float
    acc: float
    seconds: float
    part_ce: float = 0.0
    embed_ce: float = 0.0


StepFn = Callable[[TrainStep], None]
EpochFn = Callable[[EpochResult], None]


def _build(settings: TrainSettings,
           num_classes: int) -> tuple[ConvNet, BackboneSpec, str]:
    """ConvNet with a seeded classifier block: (model, spec, where the backbone came from)."""
    if settings.backbone == GOOGLENET.name:
        bb = build_googlenet(settings.weights, seed=settings.seed)
    else:
        bb = build_backbone(settings.backbone, settings.weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = ConvNet(bb.module, bb.spec.channels, num_classes,
                        STRIPES if settings.part_weight > 0 else 0)
    return model, bb.spec, bb.source


def schedule(warmup: int, total: int) -> Callable[[int], float]:
    """LR factor per step: linear 0.1 -> 1 over ``warmup`` steps, cosine 1 -> 0.01 after."""
    def factor(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        t = min(1.0, (step - warmup) / max(total - warmup, 1))
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t))
    return factor


def _extractor(model: ConvNet, spec: BackboneSpec, source: str,
               dev: torch.device) -> FeatureExtractor:
    """The model being trained as a feature extractor (fallback PCA: its features are pooled
    raw, to imprint the classifier or fit the projections on)."""
    return FeatureExtractor(ModelRecord(model, spec, PCA.fallback(model.global_in_dim,
                                                                  GLOBAL_DIM)), dev, source)


def _validate(settings: TrainSettings) -> None:
    """Refuses settings no run can use (the CLI checks ranges too; library callers may not)."""
    if settings.epochs < 1 or settings.warmup_epochs < 0 or settings.lr <= 0:
        raise InputError(f"need epochs >= 1, warmup_epochs >= 0 and lr > 0, got {settings.epochs}"
                         f", {settings.warmup_epochs}, {settings.lr}")
    if settings.classifier_init not in ("imprint", "random"):
        raise InputError(f"classifier_init must be imprint or random, "
                         f"got {settings.classifier_init!r}")
    if settings.part_weight < 0:
        raise InputError(f"part_weight must be >= 0, got {settings.part_weight}")
    if settings.local_triplet_weight < 0:
        raise InputError(f"local_triplet_weight must be >= 0, got "
                         f"{settings.local_triplet_weight}")


def _fit_and_save(
    out: Path, model: ConvNet, spec: BackboneSpec, source: str, dev: torch.device,
    files: LabeledFiles, extra: dict[str, Any], on_stage: StageFn | None,
) -> tuple[str, PCA, PCA]:
    """Fits the f_g PCA and the stripe projections on the trained features; writes the
    checkpoint (with the fine weight that goes with the stripe projection).

    Returns:
        (fingerprint, the f_g PCA, the first stripe's projection).
    """
    model.to(memory_format=torch.contiguous_format).eval()
    extractor = _extractor(model, spec, source, dev)
    advance = on_stage("fit projections", len(files.files)) if on_stage else None
    pca, stripe_pca, skipped = fit_projections(extractor, files.files, dim=GLOBAL_DIM,
                                               on_progress=advance, global_lda=False)
    extra = extra | {"pca_dim": GLOBAL_DIM, "shrinkage": DEFAULT_SHRINKAGE,
                     "fit_skipped": dict(skipped),
                     "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    fp = save_checkpoint(out, replace(extractor.record, pca=pca, stripe_pca=tuple(stripe_pca),
                                      fine_weight=fine_weight_for(stripe_pca,
                                                                  extractor.fine_weight),
                                      classes=files.classes, extra=extra))
    return fp, pca, stripe_pca[0]


def train(
    data: Path, out: Path, settings: TrainSettings, *, device: str = "cpu", workers: int = 1,
    resume: bool = False, restart: bool = False, on_step: StepFn | None = None,
    on_epoch: EpochFn | None = None, on_stage: StageFn | None = None,
) -> TrainReport:
    """Trains Conv-Net, fits the descriptor projections and writes one checkpoint to ``out``.

    The training state is saved to ``<out>.state`` after every epoch; when that file
    exists (and was written with the same settings and data) training continues from
    it, so an interrupted run resumed gives the weights of an uninterrupted one (on
    CPU, bit for bit). After the last epoch the f_g PCA (K -> 128) and the per-stripe
    whitening are fitted on the training images and saved with the weights (the
    classifier block and the class names included).

    Args:
        data: labeled image folder (identity = person id of the file name).
        out: checkpoint to write (``load_model(out)`` reads it).
        settings: the recipe.
        device: ``"cpu"``, ``"cuda"`` (mixed precision) or ``"auto"``.
        workers: DataLoader processes decoding ahead (0: in this process).
        resume: require a state file to continue from.
        restart: discard an existing state file and start over.
        on_step: called after every batch.
        on_epoch: called after every epoch, once its state is saved.
        on_stage: ``(name, total) -> advance`` for the final feature pass.

    Returns:
        A report: paths, fingerprint, data sizes, per-epoch history, final loss and
        accuracy, seconds per epoch, training and fitting wall time.

    Raises:
        InputError: missing/empty folder, unnamed files, too few identities or images,
            an undecodable training image, ``resume`` without a state file.
        ModelError: bad backbone weights, unreadable state file or one written with
            other settings, CUDA requested but absent.
    """
    clock = Stopwatch.started()
    out, dev = Path(out), resolve_device(device)
    _validate(settings)
    files = labeled_files(data, settings.max_identities)
    try:
        check_pk(files.labels, settings.batch_p, settings.batch_k)
    except ValueError as e:
        raise InputError(f"{data}: {e}") from None
    seed_all(settings.seed)
    model, spec, source = _build(settings, len(files.classes))
    if len(files.files) <= max(GLOBAL_DIM, spec.channels):
        raise InputError(f"fitting the projections needs more than {max(GLOBAL_DIM, spec.channels)}"
                         f" training images, {data} gives {len(files.files)}")
    newer = ("part_weight", "freeze", "local_triplet_weight")  # recorded only when used
    recipe = {k: v for k, v in asdict(settings).items()
              if k not in newer or v != getattr(TrainSettings, k)}
    record = recipe | {"files_sha256": files.sha256, "images": len(files.files),
                       "identities": len(files.classes)}
    plan = [pk_batches(files.labels, settings.batch_p, settings.batch_k, settings.seed, e)
            for e in range(settings.epochs)]
    total = sum(len(b) for b in plan)
    model.to(dev, memory_format=torch.channels_last)  # NHWC: oneDNN's CPU convolutions prefer it
    if settings.freeze is not None:
        prefix, suffix = split_model(model, settings.freeze)  # before the optimizer: frozen
    opt = make_optimizer(model, settings.lr, settings.classifier_lr_mult, settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, schedule(sum(len(b) for b in plan[:settings.warmup_epochs]), total))
    scaler = torch.amp.GradScaler(dev.type, enabled=dev.type == "cuda")

    spath = state_path(out)
    start, history, wall = 0, [], 0.0
    if restart:
        spath.unlink(missing_ok=True)
    elif spath.exists():
        start, history, wall = restore_run(spath, record, model, opt, sched, scaler)
    elif resume:
        raise InputError(f"--resume: no training state at {spath}")
    augment = AugmentSettings(pad=settings.pad, erasing=settings.erasing)
    net, prepare, maps = model, prepare_images, None
    if settings.freeze is not None:
        maps = prefix_cache(prefix, files, spec, settings.freeze, out, dev, on_stage)
        net, prepare = suffix_net(model, suffix), prepare_maps
    pretrained = settings.backbone != GOOGLENET.name or settings.weights is not None
    if start == 0 and settings.classifier_init == "imprint" and pretrained:
        advance = on_stage("imprint classifier", len(files.files)) if on_stage else None
        pooled = (pooled_cache(net, maps, files, dev, advance) if maps is not None
                  else pooled_features(_extractor(model, spec, source, dev), files, advance))
        imprint_classifier(model, pooled.gap, pooled.labels,
                           label_smoothing=settings.label_smoothing, part_features=pooled.parts,
                           embedding_features=pooled.embedding)

    dataset = AugmentedImages(files.files, files.labels, spec.input_size, settings.seed, augment)
    done_steps = sum(len(b) for b in plan[:start])
    for epoch in range(start, settings.epochs):
        epoch_clock = Stopwatch.started()
        batches = (cached_batches(maps, files.labels, plan[epoch], epoch, settings.seed, augment)
                   if maps is not None else
                   epoch_batches(dataset, plan[epoch], epoch, workers, settings.seed,
                                 pin=dev.type == "cuda"))

        def report_step(step: int, loss: float, acc: float, e: int = epoch,
                        base: int = done_steps) -> None:
            if on_step:
                on_step(TrainStep(e + 1, settings.epochs, step, len(plan[e]), base + step, total,
                                  loss, acc, opt.param_groups[0]["lr"]))

        stats = run_epoch(net, batches, opt, sched, scaler, dev,
                          label_smoothing=settings.label_smoothing,
                          triplet_weight=settings.triplet_weight, margin=settings.triplet_margin,
                          part_weight=settings.part_weight,
                          local_triplet_weight=settings.local_triplet_weight, prepare=prepare,
                          on_batch=report_step)
        done_steps += len(plan[epoch])
        seconds = epoch_clock.elapsed()
        wall += seconds
        result = EpochResult(epoch + 1, settings.epochs, stats["loss"], stats["ce"],
                             stats["triplet"], stats["acc"], seconds, stats["part_ce"],
                             stats["embed_ce"])
        history.append({k: (round(v, 6) if isinstance(v, float) else v)
                        for k, v in result._asdict().items()})
        save_state(spath, {
            "settings": record, "epoch": epoch + 1, "history": history, "wall_s": wall,
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(), "rng": capture_rng(),
            "sampler": {"kind": "pk", "seed": settings.seed, "next_epoch": epoch + 1},
        })
        if on_epoch:
            on_epoch(result)

    fit_clock = Stopwatch.started()
    model.drop_training_blocks()  # training only: the checkpoint keeps today's format
    last = history[-1] if history else {}
    extra = {
        "training": recipe, "data_dir": str(Path(data).resolve()),
        "images": len(files.files), "identities": len(files.classes),
        "excluded": files.excluded, "files_sha256": files.sha256,
        "epochs": settings.epochs, "final_loss": last.get("loss"), "final_acc": last.get("acc"),
        "history": history, "wall_s": round(wall, 1), "seed": settings.seed,
        "base_model": source, "input_size": list(spec.input_size), "device": str(dev),
    }
    fp, pca, stripe = _fit_and_save(out, model, spec, source, dev, files, extra, on_stage)
    return TrainReport(
        out=str(out), state=str(spath), fingerprint=fp, backbone=spec.name,
        input_size=f"{spec.input_size[0]}x{spec.input_size[1]}", device=str(dev),
        images=len(files.files), identities=len(files.classes),
        epochs=settings.epochs, resumed_from_epoch=start,
        final_loss=last.get("loss"), final_acc=last.get("acc"), history=history,
        seconds_per_epoch=round(wall / len(history), 1) if history else None,
        train_wall_s=round(wall, 1), fit_s=round(fit_clock.elapsed(), 1),
        seconds=round(clock.elapsed(), 1), pca=pca.describe(),
        stripe_whitening=stripe.describe(), settings=settings,
    )
