#!/usr/bin/env bash
# Set up, then run the default MQAR sweep (mqar-gpu on a GPU, mqar-quick on a CPU; rows in runs/); extra arguments
# go to `rebased-bench mqar`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/rebased-bench mqar "$@"
