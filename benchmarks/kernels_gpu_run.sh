#!/usr/bin/env bash
# The chunked kernel's GPU run (NVIDIA H100 80GB HBM3): GPU tests of the chunked kernel, tuning (launch shape
# and dispatch thresholds -> kernels/rebased_chunk/tuned.py), the kernels suites, a profile. Everything lands in
# $OUT (results.tgz holds the Parquet rows, traces and tuned.py). Run from the repository root.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/kernels-run}
mkdir -p "$OUT"
python3 -m pip install --no-deps --no-build-isolation -e . -q > "$OUT/install.log" 2>&1 || tail -5 "$OUT/install.log"
if ls .wheels/*.whl > /dev/null 2>&1; then python3 -m pip install --no-deps --no-index -q .wheels/*.whl; fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
timeout 150 python3 -m pytest tests/kernels/test_chunk.py -q -n 8 -p no:cacheprovider \
    2>&1 | tail -6 | tee "$OUT/tests.log"
timeout 150 python3 benchmarks/chunk_bench.py --tune kernels/rebased_chunk/tuned.py --memory --profile \
    --out "$OUT/results/chunk_bench/chunk_bench.parquet" 2>&1 | grep -v "^explore\|Warning\|_warn_once" | tee "$OUT/tune.log"
R="$OUT/results"
run() { timeout "$1" python3 -m rebased_bench kernels --device cuda --out "$R" "${@:2}" 2>&1 | grep -v "━━" | tail -40; }
run 200 --suite kernels-h100 --seq-lens 512..32768 | tee "$OUT/suite.log"
run 40 --suite kernels-model --providers chunk,parallel,dispatch,sdpa,fla_parallel_rebased,fla_chunk_linear_attn | tee -a "$OUT/suite.log"
run 50 --suite kernels-batch --providers chunk,parallel,fla_chunk_linear_attn --batch 1,4,16 --modes fwd_bwd | tee -a "$OUT/suite.log"
run 60 --suite kernels-dims --providers chunk,parallel,fla_parallel_rebased | tee -a "$OUT/suite.log"
timeout 60 python3 -m rebased_bench kernels --device cuda --out "$OUT/profile" --suite kernels-h100 --seq-lens 16384 --modes fwd_bwd \
    --providers chunk,parallel,fla_chunk_linear_attn,fla_parallel_rebased --profile --force 2>&1 | grep -v "━━" > "$OUT/profile.log"
cp kernels/rebased_chunk/tuned.py "$R/tuned.py"
tar czf "$OUT/results.tgz" -C "$OUT" results profile
