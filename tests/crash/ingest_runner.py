"""One ``reidctl ingest`` process, SIGKILLed at a planned point of its writing phase.

stderr goes to a pseudo-terminal, so the CLI's progress bar (``done/total``, advanced as
each batch enters the model, ahead of its write) can be followed; the whole process
group is killed, and reaped before the store is read (Milvus Lite keeps a lock on its
folder while any process of the group lives).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.crash.store_check import REPO, child_env

REIDCTL = [sys.executable, "-m", "reidctl.cli.main"]
POLL_S = 0.01
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


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
    run = Run(index=0)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=slave, start_new_session=True,
                                env=child_env(token) | (env or {}), cwd=REPO)
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
