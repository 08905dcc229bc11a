"""Fixtures for the store tests: a real Milvus Lite database in tmp_path, seeded data."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from reidctl.store import MilvusStore
from reidctl.types import ImageMeta

GLOBAL_DIM = 128
LOCAL_DIM = 512
MODEL = {"fingerprint": "fp-test-1", "name": "googlenet", "pca": "pca-test"}


@dataclass
class Gallery:
    """Seeded gallery: N images with unit global and random local descriptors."""

    ids: list[str]
    f_g: np.ndarray  # (N, 128)
    f_l: np.ndarray  # (N, 512)
    metas: list[ImageMeta]


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_gallery(n: int = 300, seed: int = 0, tag: str = "a") -> Gallery:
    rng = np.random.default_rng(seed)
    ids = [hashlib.sha256(f"image-{i}".encode()).hexdigest() for i in range(n)]
    metas = [
        ImageMeta(
            path=f"/data/{tag}/{i:04d}.jpg",
            person_id=f"{i % 25:04d}",
            camera=str(1 + i % 6),
            source="synthetic",
            captured_at=1_700_000_000_000 + i,
        )
        for i in range(n)
    ]
    f_g = unit_rows(rng, n, GLOBAL_DIM)
    f_l = rng.standard_normal((n, LOCAL_DIM)).astype(np.float32)
    return Gallery(ids, f_g, f_l, metas)


@pytest.fixture
def store(milvus_uri: str) -> Iterator[MilvusStore]:
    with MilvusStore(milvus_uri) as s:
        s.create(global_dim=GLOBAL_DIM, local_dim=LOCAL_DIM, model=MODEL)
        yield s


@pytest.fixture
def gallery() -> Gallery:
    return make_gallery()


@pytest.fixture
def filled(store: MilvusStore, gallery: Gallery) -> MilvusStore:
    store.upsert(gallery.ids, gallery.f_g, gallery.f_l, gallery.metas, MODEL["fingerprint"])
    return store
