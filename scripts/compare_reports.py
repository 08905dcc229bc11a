"""Compares every accuracy number of two ``reidctl eval --json`` or ``reidctl bench --json``
reports, times and throughputs left out: what "the numbers did not change" is checked with.

    python scripts/compare_reports.py before.json after.json [-v]

Prints how many values were compared and each one that differs (exit 1 if any).
"""

from __future__ import annotations

import json
import sys
from typing import Any

# keys whose values are times, speeds, memory or where things were: not results
_SKIP = {"images_per_s", "dir", "uri", "chunks_computed", "cache", "weights", "device"}


def _is_time(key: str) -> bool:
    return (key.startswith("ms_") or "_ms" in key or key.endswith("_per_s")
            or key.endswith("seconds") or "rss" in key or key.endswith("_rounds"))


def compare(a: Any, b: Any, path: str = "") -> tuple[list[str], list[str]]:  # noqa: ANN401
    """(paths compared, differences) between two JSON values, times skipped."""
    compared: list[str] = []
    diffs: list[str] = []
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            diffs.append(f"{path}: keys {sorted(set(a) ^ set(b))}")
        for k in sorted(set(a) & set(b)):
            if not (_is_time(k) or k in _SKIP):
                c, d = compare(a[k], b[k], f"{path}.{k}")
                compared += c
                diffs += d
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append(f"{path}: lengths {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):  # lengths reported above
            c, d = compare(x, y, f"{path}[{i}]")
            compared += c
            diffs += d
    else:
        compared.append(path)
        if a != b:
            diffs.append(f"{path}: {a!r} != {b!r}")
    return compared, diffs


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "-v"]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0]) as fa, open(args[1]) as fb:
        compared, diffs = compare(json.load(fa), json.load(fb))
    if "-v" in argv:
        print("\n".join(compared))
    print(f"{len(compared)} values compared (times ignored), {len(diffs)} differ")
    for d in diffs:
        print("  ", d)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
