"""Crash check of `reidctl ingest`: SIGKILL it at random points, resume, verify the store.

:func:`run_check` does this:

1. starts ``reidctl ingest DIR --uri URI --collection crash --json --batch-size B`` in
   its own process group, with stderr on a pseudo-terminal so the CLI's progress bar
   (``done/total``, advanced as each batch enters the model, ahead of its write) can be
   followed;
2. kills the whole group with SIGKILL at a seeded random point of the writing phase:
   a batch is drawn uniformly among those this run still has to write (but the last
   write per run still to come, and two batches for the progress running ahead of the
   writes, so every later run has something left to write), and the kill
   lands a random fraction of one batch period after that batch starts (the period
   is measured on the progress of the run, or of the runs before it), so kills fall
   during extraction, during the local write, between the local and the global
   write, or during the global write (in the first run, when its first batch is
   drawn, possibly while the collection pair is created); a run that ends before its
   kill is reported as ``completed``;
3. waits for the group to be reaped (Milvus Lite keeps a lock on its folder), reads
   the store in a separate process (Lite lets one process open a database and keeps
   the lock until that process exits) and repeats, ``kills`` times, so partial runs
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

:func:`render` gives a summary table and one line per run.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reidctl.config import is_lite_uri
from tests.crash.ingest_runner import KillPlan, Run, run_ingest
from tests.crash.store_check import image_ids, read_store

TOLERANCE = 1e-5  # stored vs freshly extracted descriptors
DEFAULT_PERIOD_S = 1.0  # batch period assumed before any has been measured


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
    token: str | None = None, run_timeout: float = 1800,
) -> CheckResult:
    """Kill ``reidctl ingest`` ``kills`` times, finish it, verify the store (see module doc)."""
    t_start = time.monotonic()
    from reidctl.pipeline.ingest import WRITE_BATCHES

    images = Path(images).resolve()
    res = CheckResult(uri=uri, collection=collection, kills_requested=kills)
    expected = image_ids(images)
    res.files = sum(len(v) for v in expected.values())
    res.images = n = len(expected)
    reader = {"token": token, "model": model, "device": device}
    lite = is_lite_uri(uri)
    if not lite or Path(uri).exists():
        snap = read_store(images, uri, collection, **reader)
        if snap["exists"]:
            raise ValueError(f"collection pair {collection!r} already exists at {uri}: the "
                             "check needs a new database or another collection")
    rng = random.Random(seed)
    plans = [(rng.random(), rng.random()) for _ in range(kills)]  # fixed whatever the timing
    stored, period, broken = 0, DEFAULT_PERIOD_S, False
    for k, (u, v) in enumerate(plans, start=1):
        remaining = n - stored
        if remaining <= 0:  # every image already stored: no kill left to make
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
    if not broken:
        final, _ = run_ingest(
            images, uri, collection, batch_size, res.files, plan=None, period_hint=period,
            skip_upto=stored, model=model, device=device, token=token, timeout=run_timeout)
        final.index, final.global_before = len(res.runs) + 1, stored
        res.runs.append(final)
        if final.outcome == "error":
            res.failures.append(f"final run: {final.error}")
        else:
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
