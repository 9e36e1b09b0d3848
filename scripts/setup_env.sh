#!/usr/bin/env bash
# Create .venv in the checkout and install the whole mmsaip stack into it.
#
# The slow part is mmcv 2.1.0 with compiled ops: there is no binary wheel
# for current torch releases, so it is built from the PyPI sdist once per
# machine and the wheel is kept in $MMSAIP_CACHE (default
# ~/.cache/mmsaip). Later runs, including fresh clones, reuse that wheel.
#
# Environment variables:
#   PYTHON         interpreter that creates the venv (default python3.11)
#   VENV           venv folder (default .venv in the checkout)
#   MMSAIP_CACHE   folder for the built mmcv wheel (default ~/.cache/mmsaip)
#   TORCH_SPEC     torch requirement (default torch==2.14.1)
#   TORCHVISION_SPEC  torchvision requirement (default torchvision==0.29.1)
#   MAX_JOBS       parallel compile jobs for the mmcv build (default nproc)
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_root"

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-$repo_root/.venv}
MMSAIP_CACHE=${MMSAIP_CACHE:-$HOME/.cache/mmsaip}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
TORCHVISION_SPEC=${TORCHVISION_SPEC:-torchvision==0.29.1}
MMCV_VERSION=2.1.0
# torch 2.14 needs setuptools >= 77; mmcv's setup.py and mmengine's
# get_installed_path (used by mmpose::/mmdet::/mmseg:: config inheritance)
# need pkg_resources, which setuptools removed in 81.
SETUPTOOLS_SPEC='setuptools>=77,<81'

log() { echo "[setup] $*"; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "[setup] error: interpreter '$PYTHON' not found. Install Python 3.11" \
        "or set PYTHON=/path/to/python3.11." >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
py="$VENV/bin/python"
pip_install() { "$py" -m pip install --quiet --disable-pip-version-check "$@"; }

log "installing build tools and $TORCH_SPEC, $TORCHVISION_SPEC"
pip_install "$SETUPTOOLS_SPEC" wheel ninja
pip_install "$TORCH_SPEC" "$TORCHVISION_SPEC"

# The mmcv wheel is only valid for the torch build it was compiled against,
# so the cache key contains the torch version (including its +cpu/+cuXXX tag)
# and whether CUDA ops were compiled in.
torch_key=$("$py" -c 'import torch; print(torch.__version__)')
if "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
        || [ "${FORCE_CUDA:-0}" = 1 ]; then
    ops_key=cuda
else
    ops_key=cpu
fi
wheel_dir="$MMSAIP_CACHE/wheels/mmcv-$MMCV_VERSION-torch-$torch_key-$ops_key"

if "$py" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" \
        >/dev/null 2>&1; then
    log "mmcv $MMCV_VERSION with compiled ops is already installed"
else
    if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
        log "building mmcv $MMCV_VERSION with ops ($ops_key) for torch" \
            "$torch_key; this takes about 15 minutes on 2 cores"
        build_dir=$(mktemp -d)
        trap 'rm -rf "$build_dir"' EXIT
        # Metadata generation of the sdist imports torch, hence no isolation.
        "$py" -m pip download --quiet --no-deps --no-build-isolation \
            --no-binary mmcv "mmcv==$MMCV_VERSION" -d "$build_dir"
        tar -xzf "$build_dir/mmcv-$MMCV_VERSION.tar.gz" -C "$build_dir"
        src="$build_dir/mmcv-$MMCV_VERSION"
        # mmcv 2.1.0 requests C++17, but the torch 2.14 headers need C++20.
        sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
        mkdir -p "$wheel_dir"
        # -g0 drops debug info, which roughly halves the compile time.
        MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
            CFLAGS="${CFLAGS:-} -g0" CXXFLAGS="${CXXFLAGS:-} -g0" \
            "$py" -m pip wheel --no-deps --no-build-isolation \
            -w "$build_dir/dist" "$src"
        # Move into place only when the build succeeded, so an interrupted
        # build never leaves a broken wheel in the cache.
        mv "$build_dir"/dist/mmcv-*.whl "$wheel_dir/"
    else
        log "reusing cached mmcv wheel from $wheel_dir"
    fi
    pip_install --no-deps "$wheel_dir"/mmcv-*.whl
fi

log "installing OpenMMLab packages and test tools"
pip_install -r requirements/runtime.txt -r requirements/tests.txt
pip_install --no-deps --no-build-isolation -e .

"$py" - <<'PY'
import mmcv.ops  # noqa: F401  compiled ops must import
import mmdet, mmpose, mmpretrain, mmseg  # noqa: F401,E401
import mmsaip
print(f'[setup] ok: mmsaip {mmsaip.__version__}, mmcv {mmcv.__version__}, '
      f'mmpretrain {mmpretrain.__version__}, mmpose {mmpose.__version__}, '
      f'mmdet {mmdet.__version__}, mmseg {mmseg.__version__}')
PY
