#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: end-to-end explanations on bundled real data,
# writing figures and relevance (netCDF) to results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MPLBACKEND=Agg
python -m sciexplain demo --out results "$@"
