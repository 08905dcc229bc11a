"""Creating, describing, refusing and connecting to collection pairs (real Milvus Lite)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from reidctl.config import is_lite_uri
from reidctl.errors import CollectionNotFound, FeatureSpaceMismatch, InputError, StoreError
from reidctl.store import MilvusStore, StoreInfo, connect
from tests.store.helpers import GLOBAL_DIM, LOCAL_DIM, MODEL, Gallery


def test_create_then_info(store: MilvusStore, milvus_uri: str) -> None:
    assert store.exists()
    assert (store.global_name, store.local_name) == ("gallery_global", "gallery_local")
    info = store.info()
    assert isinstance(info, StoreInfo)
    assert info.uri == milvus_uri.replace("root:Milvus@", "***@") and info.name == "gallery"
    assert "Milvus@" not in repr(info)
    assert (info.global_count, info.local_count) == (0, 0)
    assert (info.global_dim, info.local_dim) == (GLOBAL_DIM, LOCAL_DIM)
    assert info.model == MODEL
    assert info.index == {
        "type": "HNSW",
        "metric": "L2",
        "params": {"M": 16, "efConstruction": 200},
    }
    assert info.schemas == {"global": "reidctl.global/1", "local": "reidctl.local/1"}


def test_create_is_idempotent_for_the_same_model(store: MilvusStore) -> None:
    store.create(global_dim=GLOBAL_DIM, local_dim=LOCAL_DIM, model=MODEL)
    store.check_model(MODEL["fingerprint"])
    assert store.info().model == MODEL


def test_create_with_another_model_names_both_fingerprints(store: MilvusStore) -> None:
    with pytest.raises(FeatureSpaceMismatch) as err:
        store.create(global_dim=GLOBAL_DIM, local_dim=LOCAL_DIM, model={"fingerprint": "other-fp"})
    assert MODEL["fingerprint"] in str(err.value) and "other-fp" in str(err.value)
    with pytest.raises(FeatureSpaceMismatch, match="512"):
        store.create(global_dim=GLOBAL_DIM, local_dim=4096, model=MODEL)


def test_check_model(store: MilvusStore) -> None:
    store.check_model(MODEL["fingerprint"])
    with pytest.raises(FeatureSpaceMismatch) as err:
        store.check_model("other-fp")
    assert MODEL["fingerprint"] in str(err.value) and "other-fp" in str(err.value)


def test_collection_not_made_by_reidctl_is_refused(milvus_uri: str) -> None:
    plain = MilvusClient(milvus_uri)
    plain.create_collection("gallery_global", dimension=GLOBAL_DIM)
    with MilvusStore(milvus_uri) as store:
        with pytest.raises(FeatureSpaceMismatch, match="not created by reidctl"):
            store.create(global_dim=GLOBAL_DIM, local_dim=LOCAL_DIM, model=MODEL)
        assert not plain.has_collection("gallery_local")  # nothing half-created
        plain.create_collection("gallery_local", dimension=LOCAL_DIM)
        with pytest.raises(FeatureSpaceMismatch):
            store.info()


def test_missing_pair(milvus_uri: str) -> None:
    with connect(milvus_uri, "nothing_here") as store:
        assert not store.exists()
        with pytest.raises(CollectionNotFound, match="nothing_here"):
            store.info()
        for call in (store.count, lambda: store.check_model("x"), lambda: store.fetch_local(["a"])):
            with pytest.raises(CollectionNotFound):
                call()


def test_half_created_pair_is_completed(store: MilvusStore, milvus_uri: str) -> None:
    MilvusClient(milvus_uri).drop_collection(store.local_name)
    with MilvusStore(milvus_uri) as again:
        assert not again.exists()
        with pytest.raises(CollectionNotFound, match="gallery_local"):
            again.info()
        again.create(global_dim=GLOBAL_DIM, local_dim=LOCAL_DIM, model=MODEL)
        assert again.exists() and again.info().local_dim == LOCAL_DIM


def test_drop(store: MilvusStore) -> None:
    store.drop()
    assert not store.exists()
    store.drop()  # nothing left: no error
    with pytest.raises(CollectionNotFound):
        store.count()


def test_pairs_are_independent(store: MilvusStore, milvus_uri: str) -> None:
    with MilvusStore(milvus_uri, "other") as other:
        other.create(global_dim=64, local_dim=256, model={"fingerprint": "fp-other"})
        assert other.info().global_dim == 64
    assert store.info().global_dim == GLOBAL_DIM


def test_reopen_after_restart_loads_the_collections(
    filled: MilvusStore, gallery: Gallery, milvus_uri: str
) -> None:
    # A restarted Milvus Lite (like a released server collection) comes back unloaded.
    filled.flush()
    filled.close()
    if not is_lite_uri(milvus_uri):
        MilvusClient(milvus_uri).release_collection(filled.global_name)
        MilvusClient(milvus_uri).release_collection(filled.local_name)
    else:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(milvus_uri)
    with MilvusStore(milvus_uri) as store:
        assert store.count() == 300
        assert store.search(gallery.f_g[:1], 1)[0][0].id == gallery.ids[0]
        assert sum(len(b["id"]) for b in store.iterate(with_vectors=False)) == 300


def test_closed_store_refuses(store: MilvusStore) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count()


def test_milvus_uri_in_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        MilvusStore(str(tmp_path / "no" / "such" / "dir" / "x.db"))
    with pytest.raises(InputError, match=r"\.db"):
        MilvusStore(str(tmp_path / "x.sqlite"))


@pytest.mark.parametrize(
    ("uri", "token"),
    [("http://127.0.0.1:1", "user:secret"), ("http://user:secret@127.0.0.1:1", None)],
)
def test_unreachable_server(uri: str, token: str | None) -> None:
    start = time.monotonic()
    with pytest.raises(StoreError) as err:
        MilvusStore(uri, token=token, timeout=3)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "secret" not in message and "\n" not in message
    assert "127.0.0.1:1" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_invalid_arguments(store: MilvusStore, gallery: Gallery) -> None:
    with pytest.raises(InputError, match="collection-pair name 'bad-name'"):
        MilvusStore(store.uri, "bad-name")
    with pytest.raises(ValueError):
        store.create(global_dim=GLOBAL_DIM, local_dim=LOCAL_DIM, model={"name": "no fingerprint"})
    with pytest.raises(ValueError):
        store.fetch_local(['x" or id != "'])
