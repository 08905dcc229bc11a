"""Screenshots of the search page of ``reidctl serve`` for the README, taken in headless
Chromium (Debian's chromium and chromium-driver, driven through Selenium).

It builds a small gallery of CUHK03 val images (persons 0-11: camera-A shots 01-04 and
camera-B shots 05-09, with made-up capture times), calibrates the default model's
"no match" threshold on absent persons (persons 12-31, camera A) and saves it into a
checkpoint, starts ``reidctl serve`` on a free loopback port, and takes three pictures:

    docs/img/serve_results.png   an uploaded camera-A query, camera B only
    docs/img/serve_trail.png     after clicking a hit: the investigation trail
    docs/img/serve_nomatch.png   a person who is not in the gallery

    .venv/bin/python scripts/serve_screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image

from reidctl.api import Gallery, where
from reidctl.data.names import Labels
from reidctl.model import load_model, save_checkpoint
from reidctl.openset import calibrate

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "datasets" / "cuhk03-labeled-pair1"
PERSONS = range(12)
IMPOSTORS = range(12, 32)
TARGET_FMR = 0.05
T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.timezone.utc)
WINDOW = (1366, 900)
MAX_BYTES = 300_000  # per picture


def person(p: Path) -> int:
    return int(p.name[:4])


def shot(p: Path) -> int:
    return int(p.stem[-2:])


def build(root: Path, work: Path) -> tuple[Path, Path, Path, Path]:
    """The gallery, the checkpoint with its calibrated threshold, and two queries.

    Returns:
        (database, checkpoint, a query whose person is stored, one whose person is not).
    """
    val = sorted((root / "val").glob("*.jpg"))
    folder = work / "images"
    folder.mkdir(parents=True)
    images, labels = [], {}
    for p in val:
        if person(p) in PERSONS and shot(p) != 0:
            copy = Path(shutil.copy(p, folder / p.name)).resolve()
            later = dt.timedelta(hours=1) if shot(p) >= 5 else dt.timedelta()
            t = T0 + later + dt.timedelta(minutes=5 * person(p), seconds=20 * shot(p))
            images.append(copy)
            labels[copy] = Labels(captured_at=int(t.timestamp() * 1000))
    model = load_model("osnet_x0_25")
    db = work / "gallery.db"
    first = [p for p in val if shot(p) == 0]
    with Gallery(db, "investigation", model=model, create=True) as g:
        g.ingest(images, labels=labels, source="cuhk03-val")
        impostors = [p for p in first if person(p) in IMPOSTORS]
        t = calibrate([r.best_distance for r in g.search(impostors, k=1)], TARGET_FMR)
        present = next(q for q in first if person(q) in PERSONS and
                       (r := g.search(q, k=1, filters=where(camera="B"))[0]).hits[0].person
                       == q.name[:4] and r.best_distance <= t)
        held = [p for p in first if person(p) >= 40][:20]
        absent = next(q for q, r in zip(held, g.search(held, k=1), strict=True)
                      if r.best_distance > t)
    ckpt = work / "osnet_x0_25_calibrated.pt"
    save_checkpoint(ckpt, replace(model.record, open_set={
        "threshold": t, "target_fmr": TARGET_FMR,
        "calibrated_on": {"protocol": "best distances of CUHK03 val persons 12-31 (camera A) "
                          "in this gallery", "identities": len(IMPOSTORS),
                          "images": len(IMPOSTORS)}}))
    return db, ckpt, present, absent


def serve(db: Path, ckpt: Path) -> tuple[subprocess.Popen, str]:
    """``reidctl serve`` on a free loopback port, and its address."""
    exe = Path(sys.executable).with_name("reidctl")
    cmd = [str(exe) if exe.exists() else shutil.which("reidctl") or "reidctl", "serve",
           "--uri", str(db), "--collection", "investigation", "--model", str(ckpt),
           "--port", "0", "--device", "cpu"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REIDCTL_")}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env | {"PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"at (http://127\.0\.0\.1:\d+)/", proc.stderr.readline())
        if m:  # the rest of its log is read away, so that the pipe never fills
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, m.group(1)
    proc.kill()
    raise SystemExit(f"reidctl serve did not start (exit {proc.poll()})")


def chromium(binary: str, driver_path: str):  # noqa: ANN201 - a WebDriver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-proxy-server", "--lang=en-US", "--hide-scrollbars",
                f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # the viewport itself
        "width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})
    return driver


def save(driver, path: Path) -> None:  # noqa: ANN001 - a WebDriver
    """The viewport as a PNG under MAX_BYTES (a 256-colour palette when it must)."""
    img = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    if buf.tell() > MAX_BYTES:
        buf = io.BytesIO()
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG",
                                                                       optimize=True)
    path.write_bytes(buf.getvalue())
    print(f"{path} ({buf.tell() // 1024} KB)")


def shoot(base: str, driver, present: Path, absent: Path, out: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def el(i: str):  # noqa: ANN202
        return driver.find_element(By.ID, i)

    def searched(act) -> None:  # noqa: ANN001
        before = int(el("main").get_attribute("data-answered") or 0)
        act()
        WebDriverWait(driver, 120).until(
            lambda d: int(el("main").get_attribute("data-answered") or 0) > before)
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('img')].every(i => !i.src || i.complete);"))
        time.sleep(0.3)

    driver.get(base + "/")
    WebDriverWait(driver, 60).until(lambda d: el("app").is_displayed())
    searched(lambda: el("file").send_keys(str(absent)))  # the first search warms the model up
    el("camera").send_keys("B")
    searched(lambda: el("file").send_keys(str(present)))
    driver.execute_script("document.activeElement.blur();")
    save(driver, out / "serve_results.png")
    hits = driver.find_elements(By.CSS_SELECTOR, "#results button.hit")
    searched(hits[1].click)
    hits = driver.find_elements(By.CSS_SELECTOR, "#results button.hit")
    searched(hits[0].click)
    driver.execute_script("document.activeElement.blur();")
    save(driver, out / "serve_trail.png")
    el("camera").clear()
    searched(lambda: el("file").send_keys(str(absent)))
    save(driver, out / "serve_nomatch.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(os.environ.get("REIDCTL_CUHK03",
                                                                     DEFAULT_ROOT)))
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    ap.add_argument("--chromedriver", default=shutil.which("chromedriver") or "chromedriver")
    args = ap.parse_args()
    if not (args.root / "val").is_dir():
        raise SystemExit(f"no CUHK03 val folder under {args.root} (use --root)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="serve-shots-") as tmp:
        db, ckpt, present, absent = build(args.root, Path(tmp))
        proc, base = serve(db, ckpt)
        try:
            driver = chromium(args.chromium, args.chromedriver)
            try:
                shoot(base, driver, present, absent, args.out)
            finally:
                driver.quit()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
