"""Load benchmark of ``reidctl serve``: searches by upload from concurrent clients, the
same during an ingest, and the command line's cold start, printed as markdown.

``reidctl serve`` runs over an existing gallery on a free loopback port; client threads (a
keep-alive connection each) post CUHK03 val camera-A images to ``/api/search``. The last
phase also uploads ``--ingest`` CUHK03 train images to ``POST /api/ingest``, then checks
that each is its own first hit by id and that the count grew by exactly that many, and
deletes them again. The ingest goes through the server because a Milvus Lite database is
open in one process at a time (``reidctl ingest`` could not write to it meanwhile). Exit
status 1 when a request failed, an ingested image is missing or the server failed::

    .venv/bin/python scripts/serve_load.py --uri /tmp/g.db --collection cuhk03_val \
        --model omz_0286 --requests 20 --concurrency 1,4,16
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REIDCTL = Path(sys.executable).with_name("reidctl")
SHARED = Path(__file__).resolve().parents[2] / "shared"
CUHK03 = Path(os.environ.get("REIDCTL_CUHK03", SHARED / "datasets" / "cuhk03-labeled-pair1"))
STAGES = ("decode", "extract", "coarse", "fetch", "rerank")  # the answer's "ms"
START_S = 900  # the model loads and the gallery opens (slow on a busy machine)


@dataclass
class Phase:
    """One measured phase: each request's milliseconds as the client saw them, and the
    server's own milliseconds per stage of each answered one (appends are atomic)."""

    name: str
    clients: int
    latencies_ms: list[float] = field(default_factory=list)
    answers: list[dict[str, float]] = field(default_factory=list)  # the answers' "ms"
    wall_s: float = 0.0
    load1: float = 0.0

    @property
    def errors(self) -> int:
        """Requests not answered 200 with JSON."""
        return len(self.latencies_ms) - len(self.answers)

    def p50(self, stage: str) -> float:
        """The median of one of the server's stages (``total`` included)."""
        return pct([a[stage] for a in self.answers], 50)


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation), NaN for no values."""
    return float(np.percentile(values, q)) if values else float("nan")


def multipart(files: list[tuple[str, str, bytes]], fields: dict[str, str] | None = None,
              ) -> tuple[bytes, str]:
    """A multipart/form-data body of ``(field, file name, bytes)`` files and text fields;
    returns the body and its content type."""
    b = uuid.uuid4().hex
    parts = [f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in (fields or {}).items()]
    for name, filename, data in files:
        parts.append(f'--{b}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
                     + data + b"\r\n")
    return b"".join(parts) + f"--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


class Client:
    """One keep-alive HTTP connection (reopened after a failure)."""

    def __init__(self, port: int, timeout: float = 600.0) -> None:
        self.port, self.timeout = port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                ctype: str | None = None) -> tuple[int, dict[str, Any] | None, float]:
        """Returns the status, the JSON answer (None when not JSON) and the milliseconds."""
        headers = {"Content-Type": ctype} if ctype else {}
        t0 = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            raw, status = resp.read(), resp.status
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, None, (time.perf_counter() - t0) * 1e3
        ms = (time.perf_counter() - t0) * 1e3
        try:
            return status, json.loads(raw), ms
        except ValueError:  # not JSON
            return status, None, ms

    def close(self) -> None:
        """Closes the connection (the next request opens another)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Server:
    """``reidctl serve`` as a child process on a free loopback port."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.log_path = workdir / "serve.log"
        self.log = self.log_path.open("wb")
        cmd = [str(REIDCTL), "serve", "--uri", args.uri, "--collection", args.collection,
               "--model", args.model, "--port", "0", "--uploads", str(workdir / "uploads")]
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = 0

    def wait_ready(self) -> float:
        """Waits for the announced port, then for ``/readyz``; returns the seconds since
        the start.

        Raises:
            SystemExit: the server exited or did not get ready in time (stop it).
        """
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            if not self.port:
                m = re.search(r"at http://127\.0\.0\.1:(\d+)/", self.log_path.read_text())
                self.port = int(m.group(1)) if m else 0
            if self.port and Client(self.port, 10).request("GET", "/readyz")[0] == 200:
                return time.perf_counter() - self.t0
            time.sleep(0.5)
        raise SystemExit(f"reidctl serve did not get ready: {self.log_path.read_text()[-500:]}")

    def stop(self) -> list[str]:
        """Ctrl-C (a graceful stop), then a kill after 60 s; returns what went wrong (a
        kill, an exit status other than 0, a traceback in the log)."""
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                problems.append("reidctl serve did not stop within 60 s of Ctrl-C: killed")
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.proc.returncode not in (0, -signal.SIGKILL):
            problems.append(f"reidctl serve exited with status {self.proc.returncode}")
        if "Traceback" in self.log_path.read_text(errors="replace"):
            problems.append(f"a traceback in the server's log ({self.log_path})")
        return problems


def run_clients(port: int, bodies: list[tuple[bytes, str]], phase: Phase, requests: int,
                k: int, busy: threading.Event | None = None) -> None:
    """``phase.clients`` threads, each sending ``requests`` searches (more while
    ``busy`` is set), each starting at another query."""
    start = threading.Barrier(phase.clients + 1)

    def client(n: int) -> None:
        c = Client(port)
        start.wait()
        i = 0
        while i < requests or (busy is not None and busy.is_set()):
            body, ctype = bodies[(n * 97 + i) % len(bodies)]
            status, doc, ms = c.request("POST", f"/api/search?k={k}", body, ctype)
            phase.latencies_ms.append(ms)
            if status == 200 and doc is not None:
                phase.answers.append(doc["ms"])
            i += 1
        c.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(phase.clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    phase.wall_s = time.perf_counter() - t0
    phase.load1 = os.getloadavg()[0]


@dataclass
class IngestRun:
    """What the ingest during the load did and what the checks found."""

    files: int
    batches: int = 0
    seconds: float = 0.0
    ingested: int = 0
    ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    count_before: int = 0
    count_after: int = 0
    found_first: int = 0
    deleted: int = 0


def ingest(port: int, files: list[Path], source: str, batch: int, run: IngestRun,
           busy: threading.Event) -> None:
    """Uploads ``files`` to ``POST /api/ingest`` in batches; clears ``busy`` when done."""
    c = Client(port)
    t0 = time.perf_counter()
    try:
        for i in range(0, len(files), batch):
            body, ctype = multipart([("images", p.name, p.read_bytes())
                                     for p in files[i:i + batch]], {"source": source})
            status, doc, _ = c.request("POST", "/api/ingest", body, ctype)
            run.batches += 1
            if status != 200 or doc is None:
                run.errors.append(f"ingest batch {run.batches}: HTTP {status} {doc}")
                continue
            run.ingested += int(doc["report"]["ingested"])
            run.ids += [im["id"] for im in doc["images"]]
    finally:
        run.seconds = time.perf_counter() - t0
        busy.clear()
        c.close()


def images_count(port: int) -> int:
    """The gallery's image count, from ``/readyz``."""
    status, doc, _ = Client(port, 60).request("GET", "/readyz")
    if status != 200 or doc is None:
        raise SystemExit(f"/readyz answered {status}")
    return int(doc["images"])


def check_ingested(port: int, run: IngestRun, source: str) -> None:
    """Each uploaded image is stored once and is its own first hit by id; then they are
    deleted again and the count is back where it was."""
    c = Client(port)
    run.count_after = images_count(port)
    for pk in run.ids:
        status, doc, _ = c.request("GET", f"/api/search/{pk}?k=1")
        if status == 200 and doc and doc["hits"] and doc["hits"][0]["id"] == pk:
            run.found_first += 1
        else:
            run.errors.append(f"image {pk[:12]}: not its own first hit (HTTP {status})")
    status, doc, _ = c.request("DELETE", f"/api/images?source={source}")
    run.deleted = int(doc["deleted"]) if status == 200 and doc else 0
    c.close()
    n, grew = run.files, run.count_after - run.count_before
    if not run.ingested == grew == run.found_first == run.deleted == n:
        run.errors.append(f"{n} uploaded, {run.ingested} ingested, count {grew:+d}, "
                          f"{run.found_first} found, {run.deleted} deleted (HTTP {status})")
    if images_count(port) != run.count_before:
        run.errors.append("the count did not return to its value before the ingest")


def cli_cold(args: argparse.Namespace, query: Path, runs: int) -> list[float]:
    """Seconds of ``reidctl search QUERY`` from a fresh process, ``runs`` times."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run([str(REIDCTL), "search", str(query), "--uri", args.uri,
                            "--collection", args.collection, "--model", args.model,
                            "-k", str(args.k)], capture_output=True, text=True)
        out.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"reidctl search failed: {r.stderr.strip()[-300:]}")
    return out


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def report(args: argparse.Namespace, phases: list[Phase], run: IngestRun, cold: list[float],
           ready_s: float, images: int, loads: tuple[str, str]) -> None:
    """Prints the results as markdown."""
    backend = "Milvus server" if args.uri.startswith(("http://", "https://")) else "Milvus Lite"
    print(f"\n### `reidctl serve` under load: {backend}, {images} images, model "
          f"`{args.model}`\n\n- start: `{loads[0]}`; end: `{loads[1]}`; {os.cpu_count()} "
          f"CPUs\n- serve ready (model loaded, gallery open) {ready_s:.1f} s after its start\n")
    print("| phase | clients | requests | errors | p50 ms | p95 ms | server p50 ms "
          "| queries/s | load 1 min |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in phases:
        n = len(p.latencies_ms)
        print(f"| {p.name} | {p.clients} | {n} | {p.errors} | {pct(p.latencies_ms, 50):.0f} "
              f"| {pct(p.latencies_ms, 95):.0f} | {p.p50('total'):.0f} "
              f"| {n / p.wall_s:.2f} | {p.load1:.1f} |")
    print("\nThe server's own milliseconds per stage, p50 (the wait for the model is not "
          "in them; on Milvus Lite, store calls run one at a time and coarse and fetch "
          "include the wait for the store):\n")
    print("| phase | " + " | ".join(STAGES) + " |\n|---|" + "---:|" * len(STAGES))
    for p in phases:
        print(f"| {p.name} | " + " | ".join(f"{p.p50(s):.0f}" for s in STAGES) + " |")
    print(f"\nIngest during the last phase: {run.files} CUHK03 train images in {run.batches} "
          f"`POST /api/ingest` batches of {args.ingest_batch}, {run.seconds:.1f} s "
          f"({run.files / max(run.seconds, 1e-9):.1f} images/s); {run.ingested} ingested; "
          f"count {run.count_before} -> {run.count_after} "
          f"({run.count_after - run.count_before:+d}); {run.found_first}/{len(run.ids)} "
          f"their own first hit by id; {run.deleted} deleted afterwards.")
    warm = pct(phases[0].latencies_ms, 50)
    med = float(np.median(cold))
    print(f"\nCold `reidctl search QUERY` (a fresh process: imports, model, connection, one "
          f"query): {', '.join(f'{s:.1f}' for s in cold)} s; median {med:.1f} s = "
          f"{med * 1e3 / warm:.0f}x the warm serve p50 ({warm:.0f} ms, 1 client).")
    if run.errors:
        print("\nProblems:\n" + "\n".join(f"- {e}" for e in run.errors))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", required=True, help="Milvus Lite file or server URI")
    ap.add_argument("--collection", required=True)
    ap.add_argument("--model", required=True, help="backbone name or checkpoint path")
    ap.add_argument("--requests", type=int, default=20, help="searches per client")
    ap.add_argument("--concurrency", default="1,4,16", help="client counts, comma-separated")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--ingest", type=int, default=50, help="images ingested during the load")
    ap.add_argument("--ingest-batch", type=int, default=10, help="images per ingest request")
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--data", type=Path, default=CUHK03, help="CUHK03 root (val/, train/)")
    args = ap.parse_args()
    try:
        args.levels = [int(x) for x in args.concurrency.split(",")]
    except ValueError:
        ap.error(f"--concurrency {args.concurrency}: not a comma-separated list of integers")
    if not args.levels or min(args.levels) < 1 or args.requests < 1 or args.ingest < 1:
        ap.error("--concurrency, --requests and --ingest must be at least 1")
    if not (args.data / "val").is_dir() or not (args.data / "train").is_dir():
        ap.error(f"--data {args.data}: no val/ and train/ folders")
    return args


def main() -> int:
    args = parse_args()
    queries = sorted((args.data / "val").glob("*_0[0-4].jpg"))  # camera A
    bodies = [multipart([("image", p.name, p.read_bytes())]) for p in queries]
    train = sorted((args.data / "train").glob("*.jpg"))
    new = train[::max(1, len(train) // args.ingest)][:args.ingest]
    source = f"serve-load-{os.getpid()}"
    loads = [uptime()]
    workdir = Path(tempfile.mkdtemp(prefix="serve_load_"))
    server = Server(args, workdir)
    try:
        ready_s = server.wait_ready()
        port, images = server.port, images_count(server.port)
        c = Client(port)
        for p in new:  # a new image each: otherwise the count check would be meaningless
            pk = hashlib.sha256(p.read_bytes()).hexdigest()
            if c.request("GET", f"/api/images/{pk}/info")[0] != 404:
                raise SystemExit(f"{p.name} is already stored: delete it first")
        for body, ctype in bodies[:3]:  # warm-up, not measured
            c.request("POST", f"/api/search?k={args.k}", body, ctype)
        c.close()
        phases = []
        for n in args.levels:
            phases.append(Phase(f"search, {n} client(s)", n))
            run_clients(port, bodies, phases[-1], args.requests, args.k)
            print(f"{phases[-1].name}: done", file=sys.stderr)
        run = IngestRun(len(new), count_before=images_count(port))
        busy = threading.Event()
        busy.set()
        worker = threading.Thread(target=ingest, args=(port, new, source, args.ingest_batch,
                                                       run, busy))
        phases.append(Phase(f"search + ingest, {max(args.levels)} clients", max(args.levels)))
        worker.start()
        run_clients(port, bodies, phases[-1], args.requests, args.k, busy)
        worker.join()
        check_ingested(port, run, source)
    finally:
        stopped = server.stop()
    run.errors += stopped
    cold = cli_cold(args, queries[0], args.cold_runs)
    loads.append(uptime())
    if not stopped:  # otherwise kept for its log
        shutil.rmtree(workdir, ignore_errors=True)
    report(args, phases, run, cold, ready_s, images, (loads[0], loads[1]))
    failed = sum(p.errors for p in phases)
    if failed:
        print(f"\n{failed} search request(s) failed", file=sys.stderr)
    return 1 if failed or run.errors else 0


if __name__ == "__main__":
    sys.exit(main())
