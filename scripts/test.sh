#!/usr/bin/env bash
# Set up, then run the test suite; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${EXTRAS:-test,ray} bash scripts/setup.sh  # with the ray extra, so the Ray executor's tests run
exec .venv/bin/python -m pytest -q "$@"
