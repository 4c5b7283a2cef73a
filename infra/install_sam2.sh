#!/usr/bin/env bash
# Optional SAM2 back end for mask propagation (dynamic_masks.propagator: sam2).
# sam2 1.1.0 needs hydra-core 1.4 pre-releases and must come without its torchvision requirement
# (no CPU torchvision exists; pulling it would pull a CUDA torch). dynpose initialises Hydra itself
# (version_base) before importing sam2, so the package needs no patch.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install --quiet --pre "hydra-core==1.4.0rc3" "omegaconf==2.4.1rc1" "iopath==0.1.10" "portalocker==4.4.2"
.venv/bin/python -m pip install --quiet --no-deps "sam2==1.1.0"
.venv/bin/python -c "import dynpose.domain.annotate.masks_sam2 as m; print('sam2 back end importable')"
