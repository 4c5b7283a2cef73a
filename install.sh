#!/usr/bin/env bash
# Install dynpose into ./.venv on a CPU-only Python 3.11 machine.
#   ./install.sh          the pipeline and its command `dynpose`
#   ./install.sh --test   plus what the tests need (pytest, the SeaweedFS S3 server, the optional SAM2 back end,
#                         Debian's chromium and chromedriver via apt-get when missing and root)
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
# tests/test_ui_browser.py drives the system's chromium through its chromedriver (Selenium downloads nothing).
if [ -n "$extra" ] && ! { command -v chromium && command -v chromedriver; } >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium and chromium-driver with apt-get (for tests/test_ui_browser.py)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } ||
      echo "apt-get could not install chromium chromium-driver: tests/test_ui_browser.py will skip"
  else
    echo "chromium/chromedriver missing (needs root and apt-get: apt-get install chromium chromium-driver): tests/test_ui_browser.py will skip"
  fi
fi
.venv/bin/dynpose --help >/dev/null
echo "installed: $(.venv/bin/python -c 'import dynpose, torch; print("dynpose", dynpose.__version__, "torch", torch.__version__)')"
