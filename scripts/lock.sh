#!/usr/bin/env bash
# Regenerate requirements.lock: exact versions, with hashes, of the runtime
# dependencies and the test, fid, demo and plots extras, for CPython 3.11 on Linux
# x86_64 (what setup.sh and CI install). Pins already in the lock are kept; to move them:
#   bash scripts/lock.sh --upgrade                   # everything
#   bash scripts/lock.sh --upgrade-package NAME      # one package
# Other arguments go to `uv pip compile` as well. Needs the network (PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

UV=$(command -v uv || true)
if [ -z "$UV" ]; then  # no uv here: a throwaway one, pinned
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m venv "$tmp" && "$tmp/bin/python" -m pip install -q "uv==0.13.9"
  UV=$tmp/bin/uv
fi

# uv resolves against PyPI only (it ignores pip.conf); the local indexes pip
# also reads hold byte-identical wheels, so the hashes hold for either source.
"$UV" pip compile pyproject.toml --extra test --extra fid --extra demo --extra plots \
  --constraint scripts/lock-constraints.txt \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --generate-hashes --custom-compile-command "bash scripts/lock.sh" \
  --output-file requirements.lock "$@"
