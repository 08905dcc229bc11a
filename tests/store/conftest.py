"""Fixtures for the store tests: a real Milvus Lite database in tmp_path, seeded data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reidctl.store import MilvusStore
from tests.store.helpers import GLOBAL_DIM, LOCAL_DIM, MODEL, Gallery, make_gallery


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
