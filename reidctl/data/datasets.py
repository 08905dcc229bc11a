"""Evaluation protocols of public datasets: which images query, which form the gallery."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from reidctl.data.images import IMAGE_SUFFIXES
from reidctl.data.names import parse_name
from reidctl.errors import InputError
from reidctl.types import ImageMeta


class Dataset(str, Enum):
    """Datasets with a built-in evaluation protocol."""

    cuhk03 = "cuhk03"
    market1501 = "market1501"


@dataclass(frozen=True)
class Protocol:
    """A query/gallery split.

    Attributes:
        dataset: the dataset name.
        description: one line saying how queries and gallery were chosen.
        queries: query images with their metadata.
        gallery: gallery images with their metadata.
        junk_person_ids: person ids ignored wherever they appear in a ranking.
    """

    dataset: str
    description: str
    queries: list[ImageMeta]
    gallery: list[ImageMeta]
    junk_person_ids: frozenset[str] = frozenset()


def _images(folder: Path, source: str) -> list[ImageMeta]:
    if not folder.is_dir():
        raise InputError(f"expected a folder at {folder}")
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    metas = [parse_name(f.resolve(), source) for f in files]
    unparsed = [m.path for m in metas if not m.person_id]
    if unparsed:
        raise InputError(
            f"{len(unparsed)} file(s) in {folder} do not follow the {source} naming, "
            f"e.g. {Path(unparsed[0]).name}"
        )
    if not metas:
        raise InputError(f"no images in {folder}")
    return metas


def cuhk03(root: Path, split: str = "val") -> Protocol:
    """CUHK03 (one camera pair): camera-A images query, camera-B images form the gallery."""
    metas = _images(Path(root) / split, "cuhk03")
    return Protocol(
        dataset="cuhk03",
        description=f"CUHK03 {split}: queries = camera A, gallery = camera B (cross-camera)",
        queries=[m for m in metas if m.camera == "A"],
        gallery=[m for m in metas if m.camera == "B"],
    )


def market1501(root: Path) -> Protocol:
    """Market-1501: ``query/`` against ``bounding_box_test/``; id -1 is junk, 0000 a distractor."""
    root = Path(root)
    return Protocol(
        dataset="market1501",
        description=(
            "Market-1501: query/ against bounding_box_test/, same-person same-camera "
            "and id -1 ignored as junk, id 0000 kept as distractor"
        ),
        queries=[m for m in _images(root / "query", "market1501") if m.person_id != "-1"],
        gallery=_images(root / "bounding_box_test", "market1501"),
        junk_person_ids=frozenset({"-1"}),
    )


def load_protocol(dataset: Dataset | str, root: Path) -> Protocol:
    """The protocol of ``dataset`` with images under ``root``."""
    if not Path(root).exists():
        raise InputError(f"dataset root does not exist: {root}")
    name = Dataset(dataset)
    if name is Dataset.cuhk03:
        return cuhk03(root)
    return market1501(root)
