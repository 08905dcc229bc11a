"""Opening a database: each way it can go wrong is named as what it is, nothing is
created by accident, and "another process" is said only when one holds the database."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from reidctl.config import Connection
from reidctl.errors import CollectionNotFound, InputError, StoreError
from reidctl.store import MilvusStore
from tests.store.helpers import held_by_another_process, make_database, read_only


def _tree(path: Path) -> dict[str, bytes | None]:
    """Every entry under ``path`` with its bytes (None for folders): what a failed open
    must leave as it was."""
    return {str(p.relative_to(path)): None if p.is_dir() else p.read_bytes()
            for p in sorted(path.rglob("*"))}


# --- settings that are wrong before anything is opened ------------------------------------


@pytest.mark.parametrize("timeout", [math.inf, -math.inf, math.nan, 0.0, -1.0])
def test_timeout_must_be_finite_and_positive(tmp_path: Path, timeout: float) -> None:
    with pytest.raises(InputError, match="--timeout") as err:
        MilvusStore(str(tmp_path / "t.db"), timeout=timeout)
    assert str(timeout) in str(err.value)
    with pytest.raises(InputError, match="--timeout"):
        MilvusStore(Connection(str(tmp_path / "t.db"), timeout=timeout))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("uri", "why"), [
    ("http://127.0.0.1:abc", "Port could not be cast"),
    ("http://[::1", "Invalid IPv6 URL"),
    ("http://127.0.0.1:70000", "Port out of range"),
    ("http://127.0.0.1:0", "port 0"),
    ("ftp://127.0.0.1:19530", "unknown scheme 'ftp'"),
    ("http://:19530", "no host"),
])
def test_malformed_server_uri_is_bad_input(uri: str, why: str) -> None:
    with pytest.raises(InputError, match="bad URI") as err:
        MilvusStore(uri)
    assert why in str(err.value) and repr(uri) in str(err.value)


def test_malformed_uri_message_has_no_credentials() -> None:
    with pytest.raises(InputError) as err:
        MilvusStore("http://alice:s3cret@127.0.0.1:abc")
    message = str(err.value)
    assert "s3cret" not in message and "alice" not in message
    assert "'http://***@127.0.0.1:abc'" in message


def test_unix_socket_uri_is_not_lite() -> None:
    assert not Connection("unix:/tmp/milvus.sock").is_lite
    assert Connection("./g.db").is_lite


# --- Lite paths that cannot hold a database ----------------------------------------------------


@pytest.mark.parametrize("content", [b"a text file\n", os.urandom(4096), b""],
                         ids=["text", "random-bytes", "empty"])
def test_db_path_that_is_a_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "g.db"
    path.write_bytes(content)
    for must_exist in (False, True):
        with pytest.raises(InputError, match="is a file, not a Milvus Lite database"):
            MilvusStore(str(path), must_exist=must_exist)
    assert path.read_bytes() == content


def test_db_path_that_is_a_foreign_folder(tmp_path: Path) -> None:
    path = tmp_path / "photos.db"
    path.mkdir()
    (path / "holiday.jpg").write_bytes(b"not touched")
    before = _tree(path)
    with pytest.raises(InputError, match="is a folder that is not a Milvus Lite database"):
        MilvusStore(str(path))
    assert _tree(path) == before  # Lite did not write its LOCK and folders into it


def test_path_errors_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder of the database file does not exist"):
        MilvusStore(str(tmp_path / "no" / "such" / "x.db"))
    with pytest.raises(InputError, match=r"ending in \.db"):
        MilvusStore(str(tmp_path / "x.sqlite"))
    assert list(tmp_path.iterdir()) == []


# --- reading never creates ------------------------------------------------------------------


def test_must_exist_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(CollectionNotFound, match="no Milvus Lite database at"):
        MilvusStore(str(tmp_path / "new.db"), must_exist=True)
    assert not (tmp_path / "new.db").exists()
    empty = tmp_path / "empty.db"  # an empty folder: Lite would make it a database
    empty.mkdir()
    with pytest.raises(CollectionNotFound):
        MilvusStore(str(empty), must_exist=True)
    assert list(empty.iterdir()) == []


def test_must_exist_opens_an_existing_database(tmp_path: Path) -> None:
    path = make_database(tmp_path / "g.db")
    with MilvusStore(str(path), must_exist=True) as store:
        assert store.pair_names() == ["gallery"] and store.count() == 0


# --- a database that is there but cannot be opened ------------------------------------------


def test_locked_by_another_process_says_so(tmp_path: Path) -> None:
    path = make_database(tmp_path / "g.db")
    with held_by_another_process(path), pytest.raises(StoreError) as err:
        MilvusStore(str(path))
    assert type(err.value) is StoreError
    assert f"Milvus Lite database {path} is in use by another process" in str(err.value)
    with MilvusStore(str(path)) as store:  # once that process is gone, it opens
        assert store.pair_names() == ["gallery"]


def test_damaged_database_is_a_store_error_not_a_lock(tmp_path: Path) -> None:
    path = make_database(tmp_path / "g.db")
    (path / "collections" / "gallery_global" / "schema.json").write_text("garbage")
    with pytest.raises(StoreError) as err, MilvusStore(str(path)) as store:
        store.count()
    assert err.value.exit_code == 4 and "schema.json" in str(err.value)
    assert "another process" not in str(err.value)


def test_new_database_in_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder), pytest.raises(StoreError) as err:
        MilvusStore(str(folder / "new.db"))
    message = str(err.value)
    assert type(err.value) is StoreError
    assert f"cannot create Milvus Lite database {folder / 'new.db'}: cannot write" in message
    assert "another process" not in message
    assert not (folder / "new.db").exists()


def test_read_only_database(tmp_path: Path) -> None:
    path = make_database(tmp_path / "g.db")
    with read_only(path / "LOCK"), pytest.raises(StoreError) as err:
        MilvusStore(str(path))
    message = str(err.value)
    assert f"cannot open Milvus Lite database {path}: cannot write {path / 'LOCK'}" in message
    assert "even to read" in message and "another process" not in message
