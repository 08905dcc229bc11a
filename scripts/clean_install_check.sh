#!/usr/bin/env bash
# Installs reidctl as a user would, from a wheel into a fresh virtual environment
# outside the checkout (no --system-site-packages), then runs the CLI from another
# folder: --version, ingest of 20 CUHK03 val camera-B images into a Milvus Lite file,
# a search with one camera-A image, and eval on a 5-person CUHK03 root. Any failing
# step fails the script (non-zero exit).
#
#   bash scripts/clean_install_check.sh
#
# Shared data: REIDCTL_SHARED (default ../shared beside the checkout), REIDCTL_CUHK03
# (default $REIDCTL_SHARED/datasets/cuhk03-labeled-pair1), REIDCTL_OMZ_DIR (default
# $REIDCTL_SHARED/weights/omz). PYTHON: the interpreter for the build and the new
# environment (default the checkout's .venv/bin/python, else python3). KEEP=1 keeps the
# temporary folder.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
export REIDCTL_SHARED="${REIDCTL_SHARED:-$(cd "$repo/.." && pwd)/shared}"
export REIDCTL_CUHK03="${REIDCTL_CUHK03:-$REIDCTL_SHARED/datasets/cuhk03-labeled-pair1}"
export REIDCTL_OMZ_DIR="${REIDCTL_OMZ_DIR:-$REIDCTL_SHARED/weights/omz}"
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ -x "$repo/.venv/bin/python" ] && PYTHON="$repo/.venv/bin/python"
fi
val="$REIDCTL_CUHK03/val"
[ -d "$val" ] || { echo "error: no CUHK03 val folder at $val (set REIDCTL_CUHK03)" >&2; exit 2; }

# Only the settings above reach the installed CLI: no other REIDCTL_* variable, no
# PYTHONPATH into the checkout.
for v in $(compgen -e | grep '^REIDCTL_' || true); do
  case "$v" in REIDCTL_SHARED|REIDCTL_CUHK03|REIDCTL_OMZ_DIR) ;; *) unset "$v" ;; esac
done
unset PYTHONPATH

work="$(mktemp -d "${TMPDIR:-/tmp}/reidctl-install.XXXXXX")"
if [ "${KEEP:-0}" = 1 ]; then echo "keeping $work"; else trap 'rm -rf "$work"' EXIT; fi
start=$SECONDS
step() { echo "== [$((SECONDS - start)) s] $*"; }

step "build a wheel from a copy of the sources (what deploy/k8s/Dockerfile copies)"
mkdir "$work/src"
tar -C "$repo" --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md reidctl schemas \
  | tar -C "$work/src" -xf -
"$PYTHON" -m pip wheel -q --no-deps -w "$work/dist" "$work/src"
wheel="$(ls "$work"/dist/reidctl-*.whl)"

step "fresh environment, install $(basename "$wheel") with its dependencies"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$wheel"
bin="$work/venv/bin"

mkdir "$work/run"
cd "$work/run"
step "the installed package is the one imported, from $work/run"
where="$("$bin/python" -c 'import reidctl; print(reidctl.__file__)')"
case "$where" in
  "$work/venv/"*) ;;
  *) echo "error: reidctl imported from $where, not from the new environment" >&2; exit 1 ;;
esac

step "reidctl --version"
expected="reidctl $("$bin/python" -c 'from importlib.metadata import version; print(version("reidctl"))')"
got="$("$bin/reidctl" --version)"
[ "$got" = "$expected" ] || { echo "error: --version printed '$got', expected '$expected'" >&2; exit 1; }
echo "$got"

step "ingest 20 camera-B images (persons 0000-0003) with omz_0286"
"$bin/reidctl" ingest "$val"/000[0-3]_0[5-9].jpg --uri "$work/run/check.db" -c check \
  --model omz_0286 -q

step "search one camera-A image"
"$bin/reidctl" search "$val/0000_00.jpg" --uri "$work/run/check.db" -c check --model omz_0286 \
  -k 5 --json > search.json
"$bin/python" - "$val" <<'EOF'
import json, sys
from pathlib import Path
hits = json.load(open("search.json"))["results"][0]["hits"]
names = [Path(h["path"]).name for h in hits]
assert len(hits) == 5, f"search returned {len(hits)} hits, expected 5"
assert all(n[:4] in {"0000", "0001", "0002", "0003"} and n[5] == "0" and n[6] in "56789"
           for n in names), f"hits outside the ingested images: {names}"
print("top 5:", " ".join(names))
EOF

step "eval --dataset cuhk03 on a root of persons 0000-0004 (val/ of symbolic links)"
mkdir -p "$work/cuhk03/val"
ln -s "$val"/000[0-4]_*.jpg "$work/cuhk03/val/"
"$bin/reidctl" eval --dataset cuhk03 --root "$work/cuhk03" --uri "$work/run/eval.db" \
  --json -q > eval.json
"$bin/python" <<'EOF'
import json
r = json.load(open("eval.json"))
assert (r["num_queries"], r["gallery_size"]) == (25, 25), (r["num_queries"], r["gallery_size"])
c2f = r["methods"]["c2f"]
assert 0 <= c2f["mAP"] <= 100 and c2f["num_valid_queries"] == 25, c2f
print(f"c2f mAP {c2f['mAP']:.1f}, rank-1 {c2f['rank1']:.1f} ({r['model']['backbone']})")
EOF

step "clean install check passed"
