"""Crash check for `reidctl ingest`: SIGKILL it at random points, resume, verify the store.

    .venv/bin/python scripts/crash_check.py --kills 5 --images DIR --uri PATH|URL \\
        [--collection crash] [--seed 0] [--batch-size 16] [--sample 20] [--json]

What it does:

1. starts ``reidctl ingest DIR --uri URI --collection crash --json --batch-size B`` in
   its own process group, with stderr on a pseudo-terminal so the CLI's progress bar
   (``done/total``, advanced as each batch enters the model, ahead of its write) can be
   followed;
2. kills the whole group with SIGKILL at a seeded random point of the writing phase:
   a batch is drawn uniformly among those this run still has to write (but the last
   two per run still to come, so every run has something left to write), and the kill
   lands a random fraction of one batch period after that batch starts (the period
   is measured on the progress of the run, or of the runs before it), so kills fall
   during extraction, during the local write, between the local and the global
   write, or during the global write (in the first run, when its first batch is
   drawn, possibly while the collection pair is created); a run that ends before its
   kill is reported as ``completed``;
3. waits for the group to be reaped (Milvus Lite keeps a lock on its folder), reads
   the store in a separate process (Lite lets one process open a database and keeps
   the lock until that process exits) and repeats, ``--kills`` times, so partial runs
   pile up; then runs ingest to completion;
4. verifies, with the store API and a plain query of the local collection:
   every image (id = sha256 of the file bytes, computed here from the files) is in
   ``global`` and in ``local`` exactly once, no other id is; no global entry lacks
   its local descriptor, after every kill and at the end; local-only entries (a kill
   between the local and the global write) number at most one write (``WRITE_BATCHES``
   batches: ingest gathers batches into one upsert) after a kill
   and none at the end; every stored descriptor is finite and unit-norm, and a
   seeded sample equals a fresh extraction within 1e-5; each global row names the
   model and the file's path; the final run's JSON reports as ``unchanged`` exactly
   the images stored before it and recomputes the others.

Prints a summary table and one line per run (or one JSON object with ``--json``);
exits 0 when every invariant holds, 1 when one fails, 2 on bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import pty
import random
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
REIDCTL = [sys.executable, "-m", "reidctl.cli.main"]
TOLERANCE = 1e-5  # stored vs freshly extracted descriptors
NORM_TOLERANCE = 1e-3  # |‖f‖ - 1| for every stored descriptor
DEFAULT_PERIOD_S = 1.0  # batch period assumed before any has been measured
POLL_S = 0.01
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# --- the images --------------------------------------------------------------------------


def image_ids(images: Path) -> dict[str, list[str]]:
    """sha256 of each image file's bytes -> the resolved paths with those bytes.

    Files are the ones ``reidctl ingest`` picks in a folder (same discovery rule).
    """
    from reidctl.data.images import discover

    out: dict[str, list[str]] = {}
    for p in discover([images]):
        out.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), []).append(str(p))
    return out


# --- reading the store (in a child process: see the module docstring) -------------------


def _local_ids(uri: str, token: str | None, collection: str) -> tuple[int, list[str]]:
    """count(*) and every id of a collection, by a plain query (strong consistency)."""
    from pymilvus import MilvusClient  # noqa: TID251 - a plain query, outside the store API

    client = MilvusClient(uri=uri, token=token or "", timeout=60)
    try:
        res = client.query(collection, filter="", output_fields=["count(*)"],
                           consistency_level="Strong")
        count = int(res[0]["count(*)"]) if res else 0
        it = client.query_iterator(collection, batch_size=1000, filter="", output_fields=["id"],
                                   consistency_level="Strong")
        ids: list[str] = []
        try:
            while page := it.next():
                ids.extend(str(r["id"]) for r in page)
        finally:
            it.close()
        return count, ids
    finally:
        client.close()


def _dups(count: int, ids: Counter[str]) -> int:
    """Rows beyond one per id: by count(*) and by ids returned more than once."""
    return max(count - len(ids), sum(c - 1 for c in ids.values()), 0)


def inspect_store(
    images: Path, uri: str, collection: str, *, token: str | None = None, sample: int = 0,
    seed: int = 0, model: str = "osnet_x0_25", device: str = "cpu",
) -> dict[str, Any]:
    """What the collection pair holds, compared with the image files.

    With ``sample`` > 0 also loads the model and checks descriptors and metadata.
    Runs in the process that calls it: for Milvus Lite use :func:`read_store`.
    """
    import numpy as np

    from reidctl.store import MilvusStore

    expected = image_ids(images)
    out: dict[str, Any] = {"exists": False, "global_count": 0, "local_count": 0}
    with MilvusStore(uri, collection, token=token, timeout=60) as store:
        if not store.exists():
            return out
        info = store.info()
        g_ids: Counter[str] = Counter()
        metas: dict[str, dict] = {}
        for b in store.iterate(with_vectors=False, consistency="Strong"):
            g_ids.update(b["id"])
            metas.update(zip(b["id"], b["meta"], strict=True))
        l_count, l_list = _local_ids(uri, token, store.local_name)
        l_ids = Counter(l_list)
        want = set(expected)
        out.update(
            exists=True, global_count=info.global_count, local_count=info.local_count,
            local_count_query=l_count, global_distinct=len(g_ids), local_distinct=len(l_ids),
            duplicates_global=_dups(info.global_count, g_ids),
            duplicates_local=_dups(max(info.local_count, l_count), l_ids),
            missing_global=len(want - g_ids.keys()), missing_local=len(want - l_ids.keys()),
            extra_global=len(g_ids.keys() - want), extra_local=len(l_ids.keys() - want),
            global_without_local=len(g_ids.keys() - l_ids.keys()),
            local_without_global=len(l_ids.keys() - g_ids.keys()),
            bad_path=sum(1 for pk, m in metas.items()
                         if pk in expected and m.get("path") not in expected[pk]),
        )
        if not sample:
            return out

        from reidctl.model import load_model
        from reidctl.pipeline.common import extract_files

        extractor = load_model(model, device=device)
        out["bad_model"] = sum(1 for m in metas.values() if m.get("model") != extractor.fingerprint)
        picked = sorted(random.Random(seed).sample(sorted(want & g_ids.keys()),
                                                   min(sample, len(want & g_ids.keys()))))
        stored_g: dict[str, np.ndarray] = {}
        bad_norm = 0
        try:
            for b in store.iterate(with_vectors=True, consistency="Strong"):
                for name in ("f_g", "f_l"):
                    v = b[name]
                    ok = np.isfinite(v).all(axis=1)
                    ok &= np.abs(np.linalg.norm(np.nan_to_num(v), axis=1) - 1.0) <= NORM_TOLERANCE
                    bad_norm += int((~ok).sum())
                stored_g.update((pk, b["f_g"][k]) for k, pk in enumerate(b["id"]) if pk in picked)
            out["bad_norm"] = bad_norm
        except Exception as e:  # noqa: BLE001 - reported, the check then fails
            out["vector_error"] = f"{type(e).__name__}: {e}"
        if picked and len(stored_g) == len(picked):
            f_g, f_l = extract_files(extractor, [expected[pk][0] for pk in picked])
            s_l = store.fetch_local(picked, consistency="Strong")
            s_g = np.stack([stored_g[pk] for pk in picked])
            out["max_diff_global"] = float(np.abs(s_g - f_g).max())
            out["max_diff_local"] = float(np.abs(s_l - f_l).max())
        out["sampled"] = len(picked)
        out["model"] = extractor.fingerprint
    return out


def read_store(
    images: Path, uri: str, collection: str, *, token: str | None = None, sample: int = 0,
    seed: int = 0, model: str = "osnet_x0_25", device: str = "cpu", timeout: float = 900,
) -> dict[str, Any]:
    """:func:`inspect_store` in a fresh Python process (so no Lite lock stays behind)."""
    cmd = [sys.executable, str(SCRIPT), "--inspect", "--images", str(images), "--uri", uri,
           "--collection", collection, "--sample", str(sample), "--seed", str(seed),
           "--model", model, "--device", device]
    env = _env(token)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    if r.returncode != 0:
        raise RuntimeError(f"reading the store failed (exit {r.returncode}): "
                           f"{r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout)


def drop_pair(uri: str, collection: str, token: str | None = None) -> None:
    """Drops the collection pair, in a fresh process."""
    code = ("import sys; from reidctl.store import MilvusStore\n"
            "with MilvusStore(sys.argv[1], sys.argv[2]) as s: s.drop()\n")
    subprocess.run([sys.executable, "-c", code, uri, collection], check=True, timeout=300,
                   env=_env(token), cwd=REPO, capture_output=True)


# --- running ingest ----------------------------------------------------------------------


def _env(token: str | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TTY_COMPATIBLE="1", TERM="xterm",
               COLUMNS="200")
    env.pop("NO_COLOR", None)
    if token:
        env["REIDCTL_TOKEN"] = token
    return env


class _ProgressReader(threading.Thread):
    """Reads the child's terminal output; records (time, done) each time `done/total` moves."""

    def __init__(self, fd: int, total: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.pattern = re.compile(rb"(\d+)/" + str(total).encode() + rb"(?!\d)")
        self.events: list[tuple[float, int]] = []
        self.tail = b""

    @property
    def done(self) -> int | None:
        return self.events[-1][1] if self.events else None

    def run(self) -> None:
        carry = b""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: every writer is gone
                return
            if not chunk:
                return
            now = time.monotonic()
            text = carry + chunk
            self.tail = (self.tail + chunk)[-4000:]
            found = self.pattern.findall(text)
            carry = text[-32:]
            if found:
                value = int(found[-1])
                if value != self.done:
                    self.events.append((now, value))

    def period(self, after: int) -> float | None:
        """Seconds per written batch: the last interval between moves beyond ``after``."""
        ev = self.events
        for k in range(len(ev) - 1, 0, -1):
            if ev[k][1] > after and ev[k][1] > ev[k - 1][1]:
                return ev[k][0] - ev[k - 1][0]
        return None


@dataclass
class KillPlan:
    """Where to kill a run: once ``done`` reaches ``target``, ``jitter`` batch periods later."""

    target: int
    jitter: float


@dataclass
class Run:
    """One ingest process."""

    index: int
    outcome: str = ""  # killed | completed (finished before its kill) | final | error
    seconds: float = 0.0
    kill_at_s: float | None = None
    done_at_kill: int | None = None
    target: int | None = None
    global_before: int = 0
    global_after: int = 0
    local_after: int = 0
    stored_by_run: int = 0
    global_without_local: int = 0
    local_without_global: int = 0
    duplicates: int = 0
    returncode: int | None = None
    report: dict | None = None
    error: str = ""


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # nothing of the group may outlive it
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def run_ingest(
    images: Path, uri: str, collection: str, batch_size: int, total: int, *,
    plan: KillPlan | None, period_hint: float, skip_upto: int, model: str, device: str,
    token: str | None, timeout: float, launcher: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Run, float | None]:
    """One ``reidctl ingest`` process, killed per ``plan`` (None: run to the end).

    Args:
        launcher: the command before ``ingest`` (default: ``python -m reidctl.cli.main``).
        env: extra environment variables for the process.

    Returns:
        the run, and the batch period measured on it (None when not measured).
    """
    cmd = [*(launcher or REIDCTL), "ingest", str(images), "--uri", uri,
           "--collection", collection, "--json", "--batch-size", str(batch_size),
           "--model", model, "--device", device]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    run = Run(index=0, target=plan.target if plan else None)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=slave, start_new_session=True, env=_env(token) | (env or {}),
                                cwd=REPO)
    finally:
        os.close(slave)
    reader = _ProgressReader(master, total)
    reader.start()
    kill_at: float | None = None
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if now - t0 > timeout:
                _kill_group(proc)
                run.outcome, run.error = "error", f"no exit after {timeout:.0f} s"
                break
            if plan and kill_at is None and (reader.done or 0) >= plan.target:
                period = reader.period(skip_upto) or period_hint
                kill_at = now + plan.jitter * period
            if kill_at is not None and now >= kill_at:
                run.done_at_kill = reader.done
                _kill_group(proc)
                run.outcome, run.kill_at_s = "killed", round(now - t0, 3)
                break
            time.sleep(POLL_S)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        stdout = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
        reader.join(timeout=5)
        os.close(master)
    run.seconds = round(time.monotonic() - t0, 3)
    run.returncode = proc.returncode
    if not run.outcome:
        if proc.returncode == 0:
            run.outcome = "completed" if plan else "final"
            with contextlib.suppress(ValueError):
                run.report = json.loads(stdout)
        else:
            run.outcome = "error"
            err = _ANSI.sub("", reader.tail.decode(errors="replace")).strip().splitlines()
            run.error = f"exit {proc.returncode}: {err[-1] if err else ''}"
    return run, reader.period(skip_upto)


# --- the check ---------------------------------------------------------------------------


@dataclass
class CheckResult:
    """Everything the check measured; ``failures`` is empty when every invariant holds."""

    uri: str
    collection: str
    kills_requested: int
    files: int = 0
    images: int = 0
    kills: int = 0
    kills_mid_run: int = 0
    runs: list[Run] = field(default_factory=list)
    store: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> Run | None:
        return self.runs[-1] if self.runs and self.runs[-1].outcome == "final" else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": not self.failures}


def _after_run(run: Run, snap: dict[str, Any], batch_size: int, n: int, fails: list[str]) -> None:
    from reidctl.pipeline.ingest import WRITE_BATCHES

    run.global_after, run.local_after = snap["global_count"], snap["local_count"]
    run.stored_by_run = run.global_after - run.global_before
    run.global_without_local = snap.get("global_without_local", 0)
    run.local_without_global = snap.get("local_without_global", 0)
    run.duplicates = snap.get("duplicates_global", 0) + snap.get("duplicates_local", 0)
    tag = f"after run {run.index} ({run.outcome})"
    if run.global_without_local:
        fails.append(f"{tag}: {run.global_without_local} global entries without local")
    if run.duplicates:
        fails.append(f"{tag}: {run.duplicates} duplicate rows")
    if run.local_without_global > WRITE_BATCHES * batch_size:
        fails.append(f"{tag}: {run.local_without_global} local-only entries, more than one "
                     f"write ({WRITE_BATCHES} batches of {batch_size}) can explain")
    extra = snap.get("extra_global", 0) + snap.get("extra_local", 0)
    if extra:
        fails.append(f"{tag}: {extra} ids that are no image's sha256")
    if run.global_after > n:
        fails.append(f"{tag}: {run.global_after} global rows for {n} images")


def run_check(
    images: Path, uri: str, *, kills: int = 5, collection: str = "crash", seed: int = 0,
    batch_size: int = 16, sample: int = 20, model: str = "osnet_x0_25", device: str = "cpu",
    token: str | None = None, run_timeout: float = 1800, drop_existing: bool = False,
    log: Any = None,
) -> CheckResult:
    """Kill ``reidctl ingest`` ``kills`` times, finish it, verify the store (see module doc)."""
    t_start = time.monotonic()
    from reidctl.pipeline.ingest import WRITE_BATCHES

    images = Path(images).resolve()
    say = log or (lambda _msg: None)
    res = CheckResult(uri=uri, collection=collection, kills_requested=kills)
    expected = image_ids(images)
    res.files = sum(len(v) for v in expected.values())
    res.images = n = len(expected)
    reader = {"token": token, "model": model, "device": device}
    lite = "://" not in uri
    if not lite or Path(uri).exists():
        snap = read_store(images, uri, collection, **reader)
        if snap["exists"] and not drop_existing:
            raise ValueError(f"collection pair {collection!r} already exists at {uri} "
                             "(use a new database, another --collection, or --drop-existing)")
        if snap["exists"]:
            drop_pair(uri, collection, token)
    rng = random.Random(seed)
    plans = [(rng.random(), rng.random()) for _ in range(kills)]  # fixed whatever the timing
    stored, period, broken = 0, DEFAULT_PERIOD_S, False
    for k, (u, v) in enumerate(plans, start=1):
        remaining = n - stored
        if remaining <= 0:
            say(f"run {k}: every image already stored, no kill left to make")
            break
        batches = math.ceil(remaining / batch_size)
        # The batch to kill in, uniform over this run's batches but the last few: one write
        # (WRITE_BATCHES batches) per run still to come (the final one included), so that
        # each later run has work left to be cut in, and two more because the progress
        # shown runs ahead of the writes (a batch counts once it enters the model).
        reserve = (kills - k + 1) * WRITE_BATCHES + 2
        plan = KillPlan(target=stored + int(u * max(batches - reserve, 1)) * batch_size,
                        jitter=v)
        run, measured = run_ingest(
            images, uri, collection, batch_size, res.files, plan=plan, period_hint=period,
            skip_upto=stored, model=model, device=device, token=token, timeout=run_timeout)
        run.index, run.global_before = k, stored
        period = measured or period
        res.runs.append(run)
        if run.outcome == "error":
            res.failures.append(f"run {k}: {run.error}")
            broken = True
            break
        snap = read_store(images, uri, collection, **reader)
        _after_run(run, snap, batch_size, n, res.failures)
        stored = run.global_after
        if run.outcome == "killed":
            res.kills += 1
            res.kills_mid_run += 0 < run.global_after < n
        say(f"run {k}: {run.outcome} at {run.kill_at_s} s (progress {run.done_at_kill}/"
            f"{res.files}), global {run.global_before} -> {run.global_after}, "
            f"local {run.local_after}")
    if not broken:
        final, _ = run_ingest(
            images, uri, collection, batch_size, res.files, plan=None, period_hint=period,
            skip_upto=stored, model=model, device=device, token=token, timeout=run_timeout)
        final.index, final.global_before = len(res.runs) + 1, stored
        res.runs.append(final)
        if final.outcome == "error":
            res.failures.append(f"final run: {final.error}")
        else:
            say(f"final run: {final.seconds} s; verifying")
            res.store = read_store(images, uri, collection, sample=sample, seed=seed, **reader)
            _after_run(final, res.store, batch_size, n, res.failures)
            _verify_final(res, stored, sample)
    res.seconds = round(time.monotonic() - t_start, 1)
    return res


def _verify_final(res: CheckResult, stored_before: int, sample: int) -> None:
    s, n, fails = res.store, res.images, res.failures
    for key in ("missing_global", "missing_local", "local_without_global", "bad_path",
                "bad_model", "bad_norm"):
        if s.get(key):
            fails.append(f"final: {key} = {s[key]}")
    if s.get("vector_error"):
        fails.append(f"final: reading the vectors failed: {s['vector_error']}")
    if s.get("global_count") != n or s.get("local_count") != n:
        fails.append(f"final: {s.get('global_count')} global / {s.get('local_count')} local "
                     f"rows for {n} images")
    if sample:
        diffs = [s.get("max_diff_global"), s.get("max_diff_local")]
        if s.get("sampled", 0) < min(sample, n) or None in diffs:
            fails.append(f"final: only {s.get('sampled', 0)} descriptors could be sampled")
        elif max(diffs) > TOLERANCE:
            fails.append(f"final: stored descriptors differ from a fresh extraction by "
                         f"{max(diffs):.2e} (> {TOLERANCE:.0e})")
    r = (res.final.report if res.final else None) or {}
    if not r:
        fails.append("final: no JSON report from the final run")
        return
    computed = r["ingested"] + r["updated"]
    if r["unchanged"] != stored_before:
        fails.append(f"final: unchanged = {r['unchanged']}, but {stored_before} images were "
                     "stored before it")
    if computed != n - stored_before:
        fails.append(f"final: recomputed {computed} images, expected {n - stored_before}")
    if computed + r["unchanged"] != n:
        fails.append(f"final: ingested+updated+unchanged = {computed + r['unchanged']} != {n}")
    if r["skipped"] != res.files - n:
        fails.append(f"final: {r['skipped']} files skipped ({r['skipped_by_reason']}), "
                     f"expected {res.files - n} byte-identical duplicates")
    if res.kills_requested and not res.kills_mid_run:
        fails.append("no kill left the store partially written (0 < rows < images): "
                     "the check proved nothing")


# --- output ------------------------------------------------------------------------------


def render(res: CheckResult) -> str:
    s = res.store
    final = res.final
    r = (final.report if final else None) or {}
    resumed = [f"{x.index}:{x.stored_by_run}" for x in res.runs[1:] if x.outcome != "final"]
    summary = [
        ("kills (mid-run / landed / requested)",
         f"{res.kills_mid_run} / {res.kills} / {res.kills_requested}"),
        ("images (files)", f"{res.images} ({res.files})"),
        ("rows in global", s.get("global_count", "-")),
        ("rows in local", s.get("local_count", "-")),
        ("duplicates found", s.get("duplicates_global", 0) + s.get("duplicates_local", 0)),
        ("missing (global / local)", f"{s.get('missing_global', '-')} / "
                                     f"{s.get('missing_local', '-')}"),
        ("global-without-local (max after a kill / final)",
         f"{max((x.global_without_local for x in res.runs), default=0)} / "
         f"{s.get('global_without_local', '-')}"),
        ("local-without-global (max after a kill / final)",
         f"{max((x.local_without_global for x in res.runs[:-1]), default=0)} / "
         f"{s.get('local_without_global', '-')}"),
        ("new global rows per resumed run (run:rows)", ", ".join(resumed) or "-"),
        ("final run: recomputed / unchanged",
         f"{r['ingested'] + r['updated']} / {r['unchanged']}" if r else "-"),
        ("sampled descriptors, max |diff| (global / local)",
         f"{s.get('sampled', 0)}, {s.get('max_diff_global', float('nan')):.1e} / "
         f"{s.get('max_diff_local', float('nan')):.1e}"),
        ("descriptors not finite or not unit-norm",
         "-" if s.get("bad_norm") is None else s["bad_norm"]),
        ("wall time", f"{res.seconds} s"),
        ("result", "OK" if not res.failures else "FAILED"),
    ]
    width = max(len(k) for k, _ in summary)
    lines = [f"{k:<{width}}  {v}" for k, v in summary]
    head = (f"{'run':>3} {'outcome':<9} {'kill_s':>7} {'progress':>9} {'global':>13} "
            f"{'local':>6} {'g-l':>4} {'l-g':>4} {'dup':>4} {'wall_s':>7}")
    lines += ["", head]
    for x in res.runs:
        kill = f"{x.kill_at_s:.2f}" if x.kill_at_s is not None else "-"
        prog = str(x.done_at_kill) if x.done_at_kill is not None else "-"
        lines.append(
            f"{x.index:>3} {x.outcome:<9} {kill:>7} {prog:>9} "
            f"{f'{x.global_before}->{x.global_after}':>13} {x.local_after:>6} "
            f"{x.global_without_local:>4} {x.local_without_global:>4} {x.duplicates:>4} "
            f"{x.seconds:>7.1f}")
    lines += [f"FAIL: {f}" for f in res.failures]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True, help="folder of images to ingest")
    ap.add_argument("--uri", required=True, help="Milvus Lite file (*.db) or server URI")
    ap.add_argument("--token", default=os.environ.get("REIDCTL_TOKEN"))
    ap.add_argument("--collection", default="crash")
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--sample", type=int, default=20, help="descriptors re-extracted")
    ap.add_argument("--model", default="osnet_x0_25")
    ap.add_argument("--device", default="cpu", help="for ingest and the re-extraction")
    ap.add_argument("--run-timeout", type=float, default=1800, help="seconds per ingest run")
    ap.add_argument("--drop-existing", action="store_true",
                    help="drop the collection pair first if it exists")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--inspect", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if not a.images.is_dir():
        print(f"error: not a folder: {a.images}", file=sys.stderr)
        return 2
    if a.inspect:
        print(json.dumps(inspect_store(a.images, a.uri, a.collection, token=a.token,
                                       sample=a.sample, seed=a.seed, model=a.model,
                                       device=a.device)))
        return 0
    if a.kills < 0 or a.batch_size < 1:
        print("error: --kills must be >= 0 and --batch-size >= 1", file=sys.stderr)
        return 2
    from reidctl.errors import InputError

    log = None if a.json else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        res = run_check(a.images, a.uri, kills=a.kills, collection=a.collection, seed=a.seed,
                        batch_size=a.batch_size, sample=a.sample, model=a.model,
                        device=a.device, token=a.token, run_timeout=a.run_timeout,
                        drop_existing=a.drop_existing, log=log)
    except (ValueError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res.to_dict(), indent=2) if a.json else render(res))
    return 0 if not res.failures else 1


if __name__ == "__main__":
    sys.exit(main())
