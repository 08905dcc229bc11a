"""The notes ``reidctl eval`` prints under its table (human output only): what the methods
are, why C2F and the linear scan can score the same and why C2F can look slower at a
small gallery, what the model in use is expected to score, and where the picture is.

The expected scores are the measured runs of ``docs/benchmarks.md`` and ``model/*.md``
(checkpoints carry no scores of their own), on the full CUHK03 val split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # reidctl --help must not import the pipeline (and torch)
    from reidctl.pipeline.reports import EvalReport

# the full CUHK03 val split (labeled, camera pair 1): camera-A queries, camera-B gallery
CUHK03_VAL_QUERIES, CUHK03_VAL_GALLERY = 451, 487


@dataclass(frozen=True)
class KnownScores:
    """A measured model on CUHK03 val, M covering the gallery (mAP / rank-1, %).

    Attributes:
        backbone: the extractor's backbone name.
        recipe: ``"zero-shot"`` (a backbone name, no fitted projection), ``"fit-pca"`` or
            ``"train"`` (see :func:`model_recipe`).
        fingerprint: the measured model's.
        what: how it was made, in words.
        coarse, c2f: (mAP, rank-1).
        where: the documents that hold the run.
    """

    backbone: str
    recipe: str
    fingerprint: str
    what: str
    coarse: tuple[float, float]
    c2f: tuple[float, float]
    where: str


KNOWN_SCORES = (
    KnownScores("omz_0286", "train", "9c11ff6384928c87",
                "retail-0286 fine-tuned 4 epochs (train --freeze 941 --part-weight 1 "
                "--local-triplet 1), discriminant stripes", (87.26, 89.58), (88.81, 89.58),
                "model/omz_0286_cuhk03.md"),
    KnownScores("omz_0286", "fit-pca", "51d3de77779c252c",
                "retail-0286 + fit-pca on CUHK03 train identities (discriminant projections)",
                (85.24, 85.81), (87.46, 88.25),
                "docs/benchmarks.md, model/omz_0286_cuhk03.md"),
    KnownScores("omz_0286", "fit-pca", "61e4dc2ea1f3a275",
                "retail-0286 + fit-pca on CUHK03 train", (80.74, 83.15), (81.39, 84.92),
                "docs/benchmarks.md, model/omz_0286_cuhk03.md"),
    KnownScores("omz_0286", "train", "7266d3912b876ad7",
                "retail-0286 fine-tuned 4 epochs (train --freeze 941 --part-weight 1)",
                (87.41, 89.58), (87.25, 89.14), "model/omz_0286_cuhk03.md"),
    KnownScores("osnet_x0_25", "fit-pca", "e9b6262a9ad53a7e",
                "OSNet-x0.25 + fit-pca on CUHK03 train", (54.26, 54.77), (54.48, 55.21),
                "docs/benchmarks.md"),
    KnownScores("osnet_x0_25", "zero-shot", "0055178abb45d5d7",
                "OSNet-x0.25 zero-shot, no fitted projection", (47.18, 49.89), (44.90, 50.55),
                "docs/benchmarks.md"),
    KnownScores("osnet_x0_25", "train", "91fdfdcdf5821fa2",
                "OSNet-x0.25 trained 56 epochs (train)", (74.67, 77.16), (74.25, 75.83),
                "model/osnet_x0_25_cuhk03.md"),
)

# the scale benchmark's headline (docs/benchmarks.md, "Scale"): N = 520K, Milvus server
SCALE_NOTE = ("at 520K gallery images C2F took 7.8 ms p50 against 441 ms for the linear "
              "scan (Milvus server)")


_OPTION_WORDS = {"qe": "query expansion", "kr": "k-reciprocal re-ranking"}


def model_recipe(is_checkpoint: bool, extra: dict[str, Any]) -> str:
    """How a model was made, from what its checkpoint records.

    Args:
        is_checkpoint: whether the model was loaded from a checkpoint file.
        extra: the checkpoint's free-form settings (``{}`` for a backbone name).

    Returns:
        ``"zero-shot"`` (a backbone name), ``"train"`` (``reidctl train`` wrote it),
        ``"fit-pca"`` (``reidctl fit-pca`` with the default dimension and shrinkage) or
        ``"other"``.
    """
    if not is_checkpoint:
        return "zero-shot"
    if "training" in extra:
        return "train"
    if "base_model" in extra and extra.get("pca_dim", 128) == 128 and \
            extra.get("shrinkage", 2.0) == 2.0 and extra.get("projection", "pca") == "pca":
        return "fit-pca"  # the documented recipe (a fit on identities is matched by fingerprint)
    return "other"


def _pair(scores: tuple[float, float]) -> str:
    return f"mAP {scores[0]:.1f} / rank-1 {scores[1]:.1f}"


def expected_scores(r: EvalReport, recipe: str) -> str:
    """One line: what the model in use scored where it was measured, or where to look.

    Args:
        r: the evaluation (its dataset, split sizes and model).
        recipe: :func:`model_recipe` of the model.
    """
    backbone, fp = r.model.get("backbone"), r.model.get("fingerprint")
    same = [k for k in KNOWN_SCORES if k.fingerprint == fp]
    like = same or [k for k in KNOWN_SCORES if (k.backbone, k.recipe) == (backbone, recipe)
                    and recipe in ("fit-pca", "zero-shot")]
    if r.dataset != "cuhk03":
        return (f"expected scores: measured on CUHK03 val only (docs/benchmarks.md, model/"
                f"README.md); none documented for {r.dataset}")
    if not like:
        where = ("trained checkpoints and their scores: model/README.md" if recipe == "train"
                 else "the measured models: docs/benchmarks.md and model/README.md")
        return f"expected scores: none documented for this {backbone} model ({where})"
    k = like[0]
    whose = (f"this model (fingerprint {fp}) was measured" if same
             else f"documented for {k.what} (fingerprint {k.fingerprint})")
    text = (f"expected scores: {whose} at C2F {_pair(k.c2f)}, coarse {_pair(k.coarse)} "
            f"on CUHK03 val ({k.where})")
    if (r.num_queries, r.gallery_size) != (CUHK03_VAL_QUERIES, CUHK03_VAL_GALLERY):
        text += (f"; that is the full val split ({CUHK03_VAL_QUERIES} queries, "
                 f"{CUHK03_VAL_GALLERY} gallery images), not this one: not comparable")
    return text


def _times(r: EvalReport) -> str:
    """Why C2F can be slower than the linear scan on a small gallery, from this run's times."""
    c2f, linear = r.methods.get("c2f"), r.methods.get("linear")
    how = ("times: c2f is two database calls (ANN, then fetching the M f_l); linear is an "
           f"in-process scan of the {r.gallery_size} descriptors read into memory once")
    if c2f is None or linear is None:
        return how
    if linear.ms_p50 < c2f.ms_p50:
        ratio = c2f.ms_p50 / max(linear.ms_p50, 1e-9)
        return f"{how}, so at this size linear is {ratio:.0f}x faster"
    return f"{how}; at this size linear is already slower"


def eval_notes(r: EvalReport, recipe: str) -> list[str]:
    """The lines printed under ``reidctl eval``'s table.

    Args:
        r: the evaluation report.
        recipe: :func:`model_recipe` of the model in use.

    Returns:
        Plain lines, in order: the methods, the M-versus-gallery reading, the timing and
        where the scale figures are, the expected scores, the picture when one was drawn.
    """
    m, n = r.M, r.gallery_size
    lines = [
        "how to read the table:",
        "  coarse  ANN search on the 128-D f_g only, ranked by the f_g distance",
        f"  c2f     coarse top-M (M = {m}), then those M re-ranked exactly with f_g and the "
        "stripes f_l",
        "  linear  exact distance of the full descriptor (f_g + f_l) to every gallery image",
    ]
    for name in (name for name in r.methods if "+" in name):  # the query options asked for
        steps = [_OPTION_WORDS.get(part, part) for part in name.split("+")[1:]]
        lines.append(f"  {name:<7} c2f, then {' and '.join(steps)}")
    if m >= n:
        lines.append(f"  M = {m} covers the whole gallery ({n} images): c2f re-ranks every "
                     "image, so it ranks exactly like linear (same scores)")
    else:
        lines.append(f"  M = {m} < {n} gallery images: c2f re-ranks the coarse top {m} only; "
                     "relevant images the coarse stage missed count as misses")
    lines += [
        "  " + _times(r),
        "  at scale the linear scan grows with the gallery while c2f stays about constant: "
        f"{SCALE_NOTE}",
        "  scale figures: docs/benchmarks.md (\"Scale\"), deployments: docs/scaling.md; "
        "measure your own with `reidctl bench`",
        "  " + expected_scores(r, recipe),
    ]
    if r.grid:
        lines.append(f"  picture of c2f ranked lists: {r.grid}")
    return lines
