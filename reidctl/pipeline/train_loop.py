"""One training epoch of Conv-Net: losses, optimiser, mixed precision on CUDA."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from reidctl.model import STRIPES, ConvNet, normalize, pool


def make_optimizer(model: ConvNet, lr: float, classifier_mult: float,
                   weight_decay: float) -> torch.optim.AdamW:
    """AdamW: the backbone at ``lr``, the classifier blocks (global, then per stripe) at
    ``classifier_mult * lr``; frozen parameters (``requires_grad`` false) are left out."""
    groups = [{"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": lr}]
    if model.classifier is not None:
        heads = list(model.classifier.parameters())
        if model.part_classifiers is not None:
            heads += list(model.part_classifiers.parameters())
        if model.embedding_classifier is not None:
            heads += list(model.embedding_classifier.parameters())
        groups.append({"params": heads, "lr": lr * classifier_mult})
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def prepare_images(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``(B, 3, H, W)`` uint8 images -> normalised float32 on ``device``, channels last."""
    x = images.to(device, non_blocking=True).float().div_(255.0)  # (B, 3, H, W) in [0, 1]
    return normalize(x).contiguous(memory_format=torch.channels_last)  # (B, 3, H, W)


def batch_hard_triplet(features: torch.Tensor, labels: torch.Tensor,
                       margin: float) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017) with Euclidean distances.

    Args:
        features: ``(B, D)`` embeddings.
        labels: ``(B,)`` identities.
        margin: hinge margin.

    Returns:
        Scalar: mean over anchors of ``relu(d(hardest positive) - d(hardest negative) + margin)``;
        anchors without a positive or a negative contribute 0.
    """
    sq = features.pow(2).sum(dim=1)  # (B,)
    d2 = sq[:, None] + sq[None, :] - 2.0 * features @ features.T  # (B, B)
    dist = d2.clamp_min(1e-12).sqrt()  # clamp: sqrt has no gradient at 0
    same = labels[:, None] == labels[None, :]  # (B, B)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = dist.masked_fill(~same | eye, float("-inf")).amax(dim=1)  # (B,)
    neg = dist.masked_fill(same, float("inf")).amin(dim=1)  # (B,)
    valid = torch.isfinite(pos) & torch.isfinite(neg)
    if not valid.any():
        return features.sum() * 0.0
    return F.relu(pos[valid] - neg[valid] + margin).sum() / len(labels)


def local_metric_input(feature_map: torch.Tensor) -> torch.Tensor:
    """f_l as the fine stage compares it, before any fitted whitening: the GAP of each of
    the ``STRIPES`` horizontal stripes, each L2-normalised, concatenated and scaled to unit norm.

    Args:
        feature_map: ``(B, K, H, W)`` with ``H`` divisible by ``STRIPES``.

    Returns:
        ``(B, STRIPES * K)``.
    """
    _, parts = pool(feature_map, STRIPES)  # (B, K, S)
    parts = F.normalize(parts, dim=1)  # each stripe unit norm
    return parts.transpose(1, 2).flatten(1) / STRIPES ** 0.5  # (B, S * K)


def run_epoch(
    model: ConvNet, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler, device: torch.device,
    *, label_smoothing: float, triplet_weight: float, margin: float, part_weight: float = 0.0,
    local_triplet_weight: float = 0.0,
    prepare: Callable[[torch.Tensor, torch.device], torch.Tensor] = prepare_images,
    on_batch: Callable[[int, float, float], None] | None = None,
) -> dict[str, float]:
    """Trains on every batch once; the scheduler steps per batch.

    Loss: ``ce + ce_e + part_weight * mean over stripes of ce_s + triplet_weight * triplet
    + local_triplet_weight * triplet_l`` (the part term only when the model has part
    classifiers and ``part_weight > 0``; ``ce_e``, the embedding classifier's, only when the
    backbone has a head, whose output the triplet term then uses instead of the GAP;
    ``triplet_l`` is the batch-hard triplet on f_l as the fine stage ranks it, the stripes'
    GAP each L2-normalised and concatenated, see :func:`local_metric_input`).

    Args:
        batches: model inputs (as ``prepare`` takes them) and ``(B,)`` labels.
        prepare: ``(batch, device) -> model input``; default :func:`prepare_images`
            (``(B, 3, H, W)`` uint8 images).
        on_batch: ``(step, running loss, running accuracy)`` after each batch.

    Returns:
        Means over the epoch: ``loss`` (total), ``ce``, ``part_ce`` (0 without the part
        term), ``embed_ce`` (0 without a head), ``triplet``, ``local_triplet`` (0 without
        it), ``acc`` (top-1 of the global
        classifier block on the augmented training batches).
    """
    model.train()
    amp = device.type == "cuda"
    sums = {"loss": 0.0, "ce": 0.0, "part_ce": 0.0, "embed_ce": 0.0, "triplet": 0.0,
            "local_triplet": 0.0, "acc": 0.0}
    n = 0
    for step, (inputs, labels) in enumerate(batches, start=1):
        x = prepare(inputs, device)
        y = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            out = model(x)
        logits = out.logits.float()  # (B, C); losses in float32 under autocast too
        ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        pooled = (out.embedding if out.embedding is not None
                  else out.feature_map.mean(dim=(2, 3))).float()  # what f_g is made from
        tri = (batch_hard_triplet(pooled, y, margin) if triplet_weight > 0
               else torch.zeros((), device=device))
        loss = ce + triplet_weight * tri
        if out.embedding_logits is not None:
            embed_ce = F.cross_entropy(out.embedding_logits.float(), y,
                                       label_smoothing=label_smoothing)
            loss = loss + embed_ce
            sums["embed_ce"] += embed_ce.item() * len(y)
        if local_triplet_weight > 0:
            tri_l = batch_hard_triplet(local_metric_input(out.feature_map.float()), y, margin)
            loss = loss + local_triplet_weight * tri_l
            sums["local_triplet"] += tri_l.item() * len(y)
        if part_weight > 0 and out.part_logits is not None:
            part_logits = out.part_logits.float()  # (B, S, C)
            part_ce = F.cross_entropy(part_logits.flatten(0, 1), y.repeat_interleave(
                part_logits.shape[1]), label_smoothing=label_smoothing)  # mean over B x S
            loss = loss + part_weight * part_ce
            sums["part_ce"] += part_ce.item() * len(y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        b = len(y)
        sums["loss"] += loss.item() * b
        sums["ce"] += ce.item() * b
        sums["triplet"] += tri.item() * b
        sums["acc"] += (logits.argmax(dim=1) == y).sum().item()
        n += b
        if on_batch:
            on_batch(step, sums["loss"] / n, sums["acc"] / n)
    return {k: v / max(n, 1) for k, v in sums.items()}


IMPRINT_SCALES = np.logspace(-3, 1, 25)  # candidate logit scales, chosen by training CE


@torch.no_grad()
def imprint_linear(weight: torch.Tensor, bias: torch.Tensor, features: np.ndarray,
                   labels: np.ndarray, label_smoothing: float) -> float:
    """Sets one linear classifier (a 1x1 convolution) to the imprinted class means.

    ``w_c = s (m_c - mu) / (var + mean(var))``, ``b_c = -w_c . mu`` (see
    :func:`imprint_classifier`); ``s`` minimises the label-smoothed cross-entropy.

    Args:
        weight: ``(C, K)`` or ``(C, K, 1, 1)``, written in place.
        bias: ``(C,)``, written in place.
        features: ``(N, K)`` pooled features.
        labels: ``(N,)`` class indices in ``[0, C)``.
        label_smoothing: of the training cross-entropy.

    Returns:
        The chosen scale ``s``.
    """
    g = torch.from_numpy(features).double()  # (N, K)
    y = torch.from_numpy(labels).long()  # (N,)
    c = weight.shape[0]
    mu, var = g.mean(dim=0), g.var(dim=0)  # (K,), (K,)
    var = var + var.mean() + 1e-12
    sums = torch.zeros(c, g.shape[1], dtype=torch.float64).index_add_(0, y, g)  # (C, K)
    counts = torch.bincount(y, minlength=c).clamp_min(1).double()  # (C,)
    w = (sums / counts[:, None] - mu) / var  # (C, K)
    logits = (g - mu) @ w.T  # (N, C) at scale 1
    losses = [F.cross_entropy(s * logits, y, label_smoothing=label_smoothing).item()
              for s in IMPRINT_SCALES]
    s = float(IMPRINT_SCALES[int(np.argmin(losses))])
    weight.copy_((s * w).view(weight.shape).to(weight))  # (C, K[, 1, 1])
    bias.copy_((-(s * w) @ mu).to(weight))  # (C,)
    return s


@torch.no_grad()
def imprint_classifier(model: ConvNet, features: np.ndarray, labels: np.ndarray,
                       label_smoothing: float, part_features: np.ndarray | None = None,
                       embedding_features: np.ndarray | None = None) -> float:
    """Initialises the classifier blocks from class means of the starting features.

    The GAP features of a pretrained backbone are informative but small (OSNet: per-dimension
    std ~0.05), so a randomly initialised block needs hundreds of steps before its scores mean
    anything, and until then its cross-entropy gradient pushes the features in random
    directions. Imprinting (Qi et al. 2018) starts it at the diagonal-covariance linear
    discriminant: ``w_c = s (m_c - mu) / (var + mean(var))``, ``b_c = -w_c . mu``; the
    variance is shrunk (as the stripe whitening is) so that near-constant dimensions do not
    dominate. The scale ``s`` minimises the label-smoothed cross-entropy (the training
    objective) on these unaugmented features: with few identities they are separable, and
    plain cross-entropy would pick an ever larger, overconfident scale. Each part classifier
    is imprinted the same way on its stripe's GAP, the embedding classifier on the
    backbone's head output.

    Args:
        model: ConvNet with a classifier block of ``C`` classes.
        features: ``(N, K)`` GAP features of the training images.
        labels: ``(N,)`` class indices in ``[0, C)``.
        label_smoothing: of the training cross-entropy.
        part_features: ``(N, stripes, K)`` per-stripe GAP; required when the model has
            part classifiers, ignored otherwise.
        embedding_features: ``(N, D_head)`` head outputs; required when the model has an
            embedding classifier, ignored otherwise.

    Returns:
        The chosen scale ``s`` of the global block.

    Raises:
        ValueError: no classifier block, part classifiers without ``part_features`` or
            an embedding classifier without ``embedding_features``.
    """
    if model.classifier is None:
        raise ValueError("imprint_classifier needs a ConvNet with a classifier block")
    s = imprint_linear(model.classifier.weight, model.classifier.bias, features, labels,
                       label_smoothing)
    if model.part_classifiers is not None:
        if part_features is None or part_features.shape[1] != len(model.part_classifiers):
            raise ValueError("imprint_classifier needs (N, stripes, K) part_features for the "
                             "part classifiers")
        for i, conv in enumerate(model.part_classifiers):
            imprint_linear(conv.weight, conv.bias, np.ascontiguousarray(part_features[:, i]),
                           labels, label_smoothing)
    if model.embedding_classifier is not None:
        if embedding_features is None:
            raise ValueError("imprint_classifier needs (N, D) embedding_features for the "
                             "embedding classifier")
        imprint_linear(model.embedding_classifier.weight, model.embedding_classifier.bias,
                       embedding_features, labels, label_smoothing)
    return s
