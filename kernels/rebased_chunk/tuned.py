"""Launch shape and dispatch thresholds of the chunked kernel, as measured on the GPU.

Written by `python benchmarks/chunk_bench.py --tune kernels/rebased_chunk/tuned.py` on the lent H100; this
first version holds the choice of the exploration run of 2026-11-23 (benchmarks/CHUNK.md): best of 7 configs
at 32768 tokens (T=16384 B=2 and T=2048 B=16, bf16, H=16, d=16, dv=64), and the smallest seq_len from which
the chunked kernel beat the parallel one in that run's sweep (forward and forward + backward alike).
"""

# BT: chunk length; BF: feature block; programs_per_sm: the state pass splits the sequence until its grid
# has this many programs per SM; warps_*: num_warps of the state, output and backward kernels
CONFIG = {"BT": 128, "BF": 32, "programs_per_sm": 8, "warps_state": 4, "warps_o": 8, "warps_bwd": 8}
# smallest seq_len sent to the chunked kernel: inference (forward only) and training (forward + backward)
CHUNK_MIN_SEQ_LEN_FWD = 8192
CHUNK_MIN_SEQ_LEN_TRAIN = 8192
