#!/usr/bin/env bash
# Set up a fresh machine for cvae: the Fashion-MNIST Debian package, a virtual
# environment in .venv with the exact versions of requirements.lock (runtime,
# test, fid, demo and plots extras), then the project itself (distribution
# cvae-t2i), then the page template that lets `dvc plots` draw offline.
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
# The lock is resolved for CPython 3.11 on Linux x86_64 (scripts/lock.sh).
python -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(v != "3.11" and f"setup.sh: requirements.lock is for Python 3.11, .venv has {v}")'
python -m pip install -q "pip==26.3"
# The distribution was called cvae before: in an older .venv, drop it first so
# two distributions do not claim the cvae package and script.
if python -m pip show -q cvae >/dev/null 2>&1; then python -m pip uninstall -q -y cvae; fi
# Exact versions, hash-checked. torch==2.14.1 and torchvision==0.29.1 come from
# this machine's disk (see README).
python -m pip install -q -r requirements.lock
# The project only (its dependencies are all in the lock), built by the locked
# setuptools so nothing unpinned is fetched.
python -m pip install -q --no-deps --no-build-isolation -e .
# `dvc plots show` / `dvc plots diff` pages with vega, vega-lite and vega-embed
# inline instead of from a CDN (.dvc/config names .dvc/plots-page.html).
cvae plots-template
python -c "import torch, open_clip, dvc, webdataset, torchmetrics; print('setup ok: torch', torch.__version__)"
