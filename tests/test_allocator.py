"""The C allocator settings, applied in a fresh interpreter (they are process-wide)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reidctl import allocator

PROBE = "from reidctl import allocator; print(allocator.tune())"


def _probe(**env: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE], env=os.environ | env,
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc settings")
def test_tune_applies_on_linux_and_can_be_turned_off() -> None:
    assert _probe(**{allocator.ENV: ""}) == "True"
    assert _probe(**{allocator.ENV: "system"}) == "False"
