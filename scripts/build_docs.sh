#!/usr/bin/env bash
# Build the documentation site offline into docs/_build/html, warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg
rm -rf docs/generated docs/auto_examples docs/_build
python -m sphinx -W --keep-going -q -b html docs docs/_build/html "$@"
echo "documentation: docs/_build/html/index.html"
