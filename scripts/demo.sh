#!/usr/bin/env bash
# The main job on a fresh machine: ingest the CUHK03 val images into Milvus Lite,
# search one query (and draw its hits), and print the evaluation table with a note on
# how to read it and a picture of ranked lists. Paths can be overridden:
#   REIDCTL_CUHK03=/data/cuhk03 REIDCTL_URI=./demo.db bash scripts/demo.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
data="${REIDCTL_CUHK03:-$here/../shared/datasets/cuhk03-labeled-pair1}"
export REIDCTL_URI="${REIDCTL_URI:-$here/reidctl.db}"
reidctl="${REIDCTL_BIN:-$here/.venv/bin/reidctl}"
model="${REIDCTL_MODEL:-$here/runs/omz_0286_cuhk03.pt}"
runs="${REIDCTL_RUNS:-$here/runs}"  # pictures: demo_search.png, eval_cuhk03_c2f.png
mkdir -p "$runs"

if [ ! -f "$model" ]; then
  echo "== fit the f_g PCA and f_l stripe whitening on CUHK03 train (retail-0286 weights, no training)"
  "$reidctl" fit-pca "$data/train" --model omz_0286 --out "$model"  # base weights, whatever REIDCTL_MODEL says
fi
export REIDCTL_MODEL="$model"

echo "== ingest $data/val (camera B = gallery) into $REIDCTL_URI"
"$reidctl" ingest "$data"/val/*_0[5-9].jpg --collection cuhk03_val
echo "== search: top 5 for one camera-A query"
"$reidctl" search "$data/val/0000_00.jpg" --collection cuhk03_val --top-k 5 --grid "$runs/demo_search.png"
echo "== evaluate: CUHK03 val, queries = camera A, gallery = camera B"
"$reidctl" eval --dataset cuhk03 --root "$data" --grid "$runs"
