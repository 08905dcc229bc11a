"""What the browser tests drive: a small real gallery with a calibrated "no match" threshold,
served over HTTP on a free loopback port, and headless Chromium through its WebDriver."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from reidctl.api import Gallery, where
from reidctl.data.names import Labels
from reidctl.model import FeatureExtractor
from reidctl.openset import calibrate

PERSONS = 6  # persons 0000..0005 are in the gallery: camera-A shots 01-04, camera-B 05-09
IMPOSTORS = range(6, 26)  # camera-A shots of absent persons the threshold is calibrated on
HELD_OUT = range(26, 46)  # absent persons a "no match" query is picked from
TARGET_FMR = 0.05
T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.timezone.utc)  # capture times start here
CAMERA_B_LATER = dt.timedelta(hours=1)  # every camera-B shot is taken after every camera-A one
WINDOW = (1366, 900)  # a desktop browser window


def person(path: Path) -> str:
    """The person id of a CUHK03 file name (``0003_06.jpg`` -> ``0003``)."""
    return path.name[:4]


def shot(path: Path) -> int:
    """The shot number of a CUHK03 file name: 00-04 camera A, 05-09 camera B."""
    return int(path.stem[-2:])


def captured(path: Path) -> dt.datetime:
    """The capture time the test gallery gives a file: a few minutes per person, the
    camera-B shots an hour after the camera-A ones."""
    later = CAMERA_B_LATER if shot(path) >= 5 else dt.timedelta()
    return T0 + later + dt.timedelta(minutes=5 * int(person(path)), seconds=20 * shot(path))


@dataclass(frozen=True)
class Site:
    """The served gallery and the queries picked for the tests.

    Attributes:
        gallery: the open gallery (its model carries the calibrated threshold).
        images: the gallery's files.
        present: a camera-A query whose person is in the gallery, ranked first with and
            without a camera-B filter, and within the threshold.
        absent: a camera-A query of a person not in the gallery, beyond the threshold.
        threshold: the calibrated "no match" distance.
    """

    gallery: Gallery
    images: list[Path]
    present: Path
    absent: Path
    threshold: float


def copy_gallery(val_images: list[Path], folder: Path) -> list[Path]:
    """Copies every shot but 00 of persons ``0..PERSONS-1`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in val_images:
        if int(person(p)) < PERSONS and shot(p) != 0:
            out.append(Path(shutil.copy(p, folder / p.name)).resolve())
    return out


def first_shots(val_images: list[Path], persons: range) -> list[Path]:
    """The shot-00 (camera A) image of each of ``persons``."""
    return [p for p in val_images if int(person(p)) in persons and shot(p) == 0]


def open_site(val_images: list[Path], folder: Path, model: FeatureExtractor) -> Site:
    """Ingests the gallery with capture times, calibrates the model's "no match" threshold
    on the best distances of absent persons (``reidctl.openset.calibrate`` at
    ``TARGET_FMR``), reopens the gallery with a model that carries it, and picks the
    queries (checked, never assumed: a pick the model gets wrong fails here).

    Returns:
        The site; its gallery is open (the caller closes it).
    """
    images = copy_gallery(val_images, folder / "images")
    db = folder / "gallery.db"
    labels = {p: Labels(captured_at=int(captured(p).timestamp() * 1000)) for p in images}
    with Gallery(db, "investigation", model=model, create=True) as g:
        assert g.ingest(images, labels=labels).ingested == len(images)
        impostors = g.search(first_shots(val_images, IMPOSTORS), k=1)
        threshold = calibrate([r.best_distance for r in impostors], TARGET_FMR)
    open_set = {"threshold": threshold, "target_fmr": TARGET_FMR,
                "calibrated_on": {"protocol": "best distances of CUHK03 val persons 6-25 "
                                  "(camera A) in this gallery",
                                  "identities": len(IMPOSTORS), "images": len(IMPOSTORS)}}
    calibrated = FeatureExtractor(replace(model.record, open_set=open_set), model.device,
                                  source=model.source)
    g = Gallery(db, "investigation", model=calibrated)
    try:
        present = _pick_present(g, first_shots(val_images, range(PERSONS)))
        held = first_shots(val_images, HELD_OUT)
        beyond = [q for q, r in zip(held, g.search(held, k=1), strict=True) if r.no_match]
        assert beyond, "no held-out person is beyond the calibrated threshold"
        absent = beyond[0]
    except BaseException:
        g.close()
        raise
    return Site(g, images, present, absent, threshold)


def _pick_present(g: Gallery, queries: list[Path]) -> Path:
    """The first query whose person is ranked first, with and without a camera-B filter,
    and that is within the threshold."""
    for q in queries:
        plain = g.search(q, k=1)[0]
        cross = g.search(q, k=1, filters=where(camera="B"))[0]
        if plain.no_match is False and plain.hits[0].person == person(q) \
                and cross.hits[0].person == person(q):
            return q
    raise AssertionError("the model ranks no query's own person first across cameras")


class LiveServer:
    """An ASGI app served by uvicorn in a thread, on a free loopback port.

    Attributes:
        base: ``http://127.0.0.1:PORT``.
    """

    def __init__(self, app: Any) -> None:  # noqa: ANN401 - an ASGI app
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the test server did not start at {self.base}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def _missing(what: list[str]) -> None:
    """Skips the test (while a module is collected: the whole module) for want of
    ``what``, except in CI (``CI`` set), where the browser tests must run: there it fails."""
    text = f"no {', '.join(what)} (apt-get install chromium chromium-driver; " \
           "pip install -e '.[test]')"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {text}", pytrace=False)
    pytest.skip(text, allow_module_level=True)


def require_selenium() -> None:
    """The selenium package, or a skip (a failure in CI)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing(["selenium package"])


def browser_paths() -> tuple[str, str]:
    """Chromium and its WebDriver: ``REIDCTL_CHROMIUM`` / ``REIDCTL_CHROMEDRIVER``, else
    ``chromium`` and ``chromedriver`` on the PATH (Debian's chromium and chromium-driver);
    a skip without them (a failure in CI).
    """
    chromium = os.environ.get("REIDCTL_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    driver = os.environ.get("REIDCTL_CHROMEDRIVER") or shutil.which("chromedriver")
    missing = [what for what, found in (("chromium", chromium), ("chromedriver", driver))
               if not (found and os.access(found, os.X_OK))]
    if missing:
        _missing(missing)
    assert chromium and driver
    return chromium, driver


@contextmanager
def chromium(window: tuple[int, int] = WINDOW) -> Iterator[Any]:
    """Headless Chromium driven through chromedriver (Selenium), its console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-proxy-server", "--lang=en-US", "--hide-scrollbars",
                f"--window-size={window[0]},{window[1]}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_window_size(*window)
        yield driver
    finally:
        driver.quit()
