#!/usr/bin/env bash
# Install dynpose into ./.venv on a CPU-only Python 3.11 machine.
#   ./install.sh          the pipeline and its command `dynpose`
#   ./install.sh --test   plus what the tests need (pytest, the SeaweedFS S3 server, the optional SAM2 back end)
# PyTorch goes in first, pinned to the CPU build, so that nothing later pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "dynpose needs Python 3.11, found %s" % sys.version.split()[0]'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade "pip>=24"
.venv/bin/python -m pip install --quiet "torch==2.13.0"
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
.venv/bin/python -m pip install --quiet -e ".${extra}"
# Both ask for opencv-python, a second cv2 build that would overwrite the pinned headless+contrib one
# in the same folder; their other requirements are pinned in pyproject.toml.
.venv/bin/python -m pip install --quiet --no-deps "rapidocr_onnxruntime==1.4.4" "scenedetect==0.7.2"
[ -n "$extra" ] && infra/install_sam2.sh  # the tests exercise the SAM2 back end with a random-init model
.venv/bin/dynpose --help >/dev/null
echo "installed: $(.venv/bin/python -c 'import dynpose, torch; print("dynpose", dynpose.__version__, "torch", torch.__version__)')"
