#!/usr/bin/env bash
# Create benchmarks/.venv (once) with this toolchain, lava-dl, snnTorch, SpikingJelly and Norse, all on
# torch 2.13.0+cpu. Run from anywhere; re-running after the first success does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=benchmarks/.venv
STAMP=$VENV/.installed
if [[ -f $STAMP && $STAMP -nt benchmarks/requirements.txt && $STAMP -nt benchmarks/requirements-nodeps.txt \
      && $STAMP -nt requirements.lock ]]; then
    exit 0
fi
PIP=(--quiet --disable-pip-version-check)
test -x $VENV/bin/python || "${PYTHON:-python3}" -m venv $VENV
$VENV/bin/python -m pip install "${PIP[@]}" -r benchmarks/requirements.txt
$VENV/bin/python -m pip install "${PIP[@]}" --no-deps --ignore-requires-python -r benchmarks/requirements-nodeps.txt
$VENV/bin/python -m pip install "${PIP[@]}" --no-deps --no-build-isolation -e .
$VENV/bin/python -c "import torch, snntorch, spikingjelly.activation_based.neuron, norse.torch, toolchain; \
from toolchain import lava_compat; lava_compat.install(); import lava.lib.dl.slayer; print('benchmarks/.venv: torch', torch.__version__)"
touch $STAMP
