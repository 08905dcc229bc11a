"""Decoding real CUHK03 images and the bad inputs users hand us."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidctl.data.datasets import cuhk03, market1501
from reidctl.data.images import SkipImage, decode, discover, load, read_bytes
from reidctl.data.names import parse_name
from reidctl.errors import InputError

SIZE = (256, 128)


def test_parse_cuhk03_and_market_names() -> None:
    a = parse_name("/x/0005_03.jpg")
    b = parse_name("/x/0005_07.jpg")
    assert (a.person_id, a.camera, a.source) == ("0005", "A", "cuhk03")
    assert b.camera == "B"
    m = parse_name("0002_c1s1_000451_03.jpg")
    assert (m.person_id, m.camera, m.source) == ("0002", "1", "market1501")
    assert parse_name("-1_c3s2_000001_01.jpg").person_id == "-1"
    u = parse_name("frame_17.png", source="lobby")
    assert (u.person_id, u.camera, u.source) == ("", "", "lobby")


def test_decode_real_image(val_images: list[Path]) -> None:
    d = load(val_images[0], SIZE)
    assert d.pixels.shape == (3, 256, 128) and d.pixels.dtype == np.uint8
    digest, data = read_bytes(val_images[0])
    assert digest == hashlib.sha256(val_images[0].read_bytes()).hexdigest()
    assert data == val_images[0].read_bytes()


def test_other_modes_become_rgb(val_images: list[Path], tmp_path: Path) -> None:
    img = Image.open(val_images[0])
    for mode in ("L", "RGBA", "P", "CMYK", "I;16"):
        conv = img.convert("L").convert("I;16") if mode == "I;16" else img.convert(mode)
        p = tmp_path / f"x_{mode.replace(';', '')}.png" if mode != "CMYK" else tmp_path / "x.jpg"
        conv.save(p)
        assert load(p, SIZE).pixels.shape == (3, 256, 128), mode


def test_truncated_not_image_tiny_and_bomb(val_images: list[Path], tmp_path: Path) -> None:
    data = val_images[0].read_bytes()
    with pytest.raises(SkipImage) as e:
        decode(data[: len(data) // 2], SIZE)
    assert e.value.reason == "corrupt or truncated"
    with pytest.raises(SkipImage) as e:
        decode(b"this is a text file, not a JPEG", SIZE)
    assert e.value.reason == "not an image"
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (5, 9)).save(tiny)
    with pytest.raises(SkipImage) as e:
        load(tiny, SIZE)
    assert e.value.reason == "too small"
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 MP, a few KB on disk
    with pytest.raises(SkipImage) as e:
        load(bomb, SIZE)
    assert e.value.reason == "too large"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(SkipImage):
        read_bytes(empty)


def test_discover_errors_and_recursion(tmp_path: Path, val_images: list[Path]) -> None:
    with pytest.raises(InputError, match="does not exist"):
        discover([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        discover([tmp_path / "empty"])
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (sub / "p.jpg").write_bytes(val_images[0].read_bytes())
    (sub / "notes.txt").write_text("ignored")
    assert [f.name for f in discover([tmp_path / "a"])] == ["p.jpg"]


def test_cuhk03_protocol(cuhk03_root: Path) -> None:
    p = cuhk03(cuhk03_root)
    assert len(p.queries) == 451 and len(p.gallery) == 487
    assert {q.camera for q in p.queries} == {"A"} and {g.camera for g in p.gallery} == {"B"}


def test_market_protocol_on_market_named_copies(tmp_path: Path, val_images: list[Path]) -> None:
    (tmp_path / "query").mkdir()
    (tmp_path / "bounding_box_test").mkdir()
    names_q = ["0001_c1s1_000001_00.jpg", "-1_c1s1_000002_00.jpg"]
    names_g = ["0001_c2s1_000010_00.jpg", "0001_c1s1_000011_00.jpg", "0000_c3s1_000012_00.jpg",
               "-1_c2s1_000013_00.jpg"]
    for i, n in enumerate(names_q):
        (tmp_path / "query" / n).write_bytes(val_images[i].read_bytes())
    for i, n in enumerate(names_g):
        (tmp_path / "bounding_box_test" / n).write_bytes(val_images[i + 2].read_bytes())
    p = market1501(tmp_path)
    assert [q.person_id for q in p.queries] == ["0001"]
    assert len(p.gallery) == 4 and p.junk_person_ids == {"-1"}
