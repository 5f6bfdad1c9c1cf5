#!/usr/bin/env bash
# Idempotent set-up in .venv: a CPU build of torch where no GPU exists (never a multi-GB CUDA build there),
# triton (the kernel tests run it through TRITON_INTERPRET=1 on the CPU) and the package with its extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        "${PIP[@]}" torch
    else
        # A pinned CPU build; where the index pip uses has only CUDA builds, set
        # PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu first.
        "${PIP[@]}" "torch==2.13.0"
    fi
fi
"${PIP[@]}" -e ".[${EXTRAS:-test}]"
