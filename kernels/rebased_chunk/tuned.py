"""Launch shape and dispatch thresholds of the chunked kernel, as measured on the GPU.

Written by `python benchmarks/chunk_bench.py --tune kernels/rebased_chunk/tuned.py --memory --profile --out /root/out/results/chunk_bench/chunk_bench.parquet`
on NVIDIA H100 80GB HBM3 (triton 3.6.0, torch 2.11.0+cu130), 2026-11-23T06:07:39.
CONFIG: the best of benchmarks/chunk_bench.py's EXPLORE list by total median ms at [(16384, 'fwd'), (16384, 'fwd_bwd'), (4096, 'fwd_bwd')]
(totals [3.772, 3.801, 3.893, 5.196]). Thresholds: per mode, the smallest measured seq_len from which the
chunked kernel is used with the least worst-case loss against the better kernel. Median ms, bf16, 32768 tokens
per call, H=16, d=16, dv=64:

| T | chunk fwd | parallel fwd | chunk fwd_bwd | parallel fwd_bwd |
|---|---|---|---|---|
| 512 | 0.426 | 0.122 | 1.626 | 0.787 |
| 1024 | 0.397 | 0.174 | 1.720 | 0.912 |
| 2048 | 0.379 | 0.240 | 1.688 | 1.168 |
| 4096 | 0.390 | 0.399 | 1.672 | 1.951 |
| 8192 | 0.425 | 0.726 | 1.585 | 3.562 |
| 16384 | 0.420 | 1.402 | 1.660 | 6.719 |
| 32768 | 0.446 | 2.911 | 1.758 | 12.387 |
"""

# BT: chunk length; BF: feature block; programs_per_sm: the state pass splits the sequence until its grid
# has this many programs per SM; warps_*: num_warps of the state, output and backward kernels
CONFIG = {'BT': 64, 'BF': 32, 'programs_per_sm': 8, 'warps_state': 4, 'warps_o': 4, 'warps_bwd': 4}
# smallest seq_len sent to the chunked kernel: inference (forward only) and training (forward + backward)
CHUNK_MIN_SEQ_LEN_FWD = 4096  # worst dispatch / better kernel in the sweep: 1.000
CHUNK_MIN_SEQ_LEN_TRAIN = 4096  # worst dispatch / better kernel: 1.000
# Added by hand from the kernels-batch rows of the same H100 run (no longer in a published result set): at small
# batch x heads the chunked path sits on its launch floor (~1.2 ms fwd+bwd at batch 1, heads 16, seq_len 8192,
# where the parallel kernel took 0.87 ms), so it also needs batch * heads * seq_len^2 >= CHUNK_MIN_WORK. Measured
# decisions it reproduces: 16 x 8192^2 = 1.07e9 -> parallel; 8 * 16 x 4096^2 = 2.1e9 -> chunk (fixed tokens).
CHUNK_MIN_WORK = 1.5e9
