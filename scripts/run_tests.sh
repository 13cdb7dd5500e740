#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: the core and every plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MPLBACKEND=Agg
# the architecture: layers import only downwards, no cycles, plugins use the public namespaces
lint-imports --no-cache
# the documentation site builds offline with warnings as errors (docs/_build/html)
bash scripts/build_docs.sh
python -m pytest -q -p no:cacheprovider tests plugins "$@"
