#!/usr/bin/env bash
# Set tksim up on a fresh machine and run the main job on built-in defaults.
#   bash setup.sh            venv + torch 2.13.0 (CPU) + tksim, then `tksim demo`
#   bash setup.sh --no-demo  install only (what CI does before the tests)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: on these machines 2.13.0 is a local CPU wheel; a looser requirement
# could pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[capture,dev]'
if [ "${1:-}" != "--no-demo" ]; then
  .venv/bin/tksim demo --out tksim-demo
fi
