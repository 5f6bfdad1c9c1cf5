"""Wall time per optimizer step of the real training loop (`rebased_bench.training.train`), on one GPU.

Unlike trainer_bench.py (one step, inputs already on the device), this times what a sweep case runs: the
data handling, the step and the per-epoch evaluation, so host syncs and launch latency show. 20 steps of
batch 64 after a warm-up epoch; bf16 autocast, the Triton kernels.
Run: python benchmarks/train_loop_bench.py [--cases rebased:64:1024,conv_attention:64:1024,rebased:128:2048]
"""

import argparse
import time

import torch

from rebased_bench.data.mqar import paper_num_kv_pairs, train_test
from rebased_bench.env import git_state
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.training import TrainConfig, train


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="rebased:64:1024,conv_attention:64:1024,rebased:128:2048",
                        help="mixer:d_model:seq_len, comma separated")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the CPU only as a smoke test
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    config = TrainConfig(lr=3e-3, epochs=1, batch_size=64, precision="bf16", micro_batch_size=64)
    for case in args.cases.split(","):
        mixer, d_model, seq_len = case.split(":")
        d_model, seq_len = int(d_model), int(seq_len)
        train_data, test_data = train_test(20 * 64, 64, seq_len, paper_num_kv_pairs(seq_len))
        torch.manual_seed(0)
        model = LanguageModel(ModelConfig(mixer, d_model, seq_len))
        train(model, train_data, test_data, config, device)  # warm-up: kernels compiled, caches filled
        sync()
        start = time.perf_counter()
        train(model, train_data, test_data, config, device)
        sync()
        print(f"{mixer} d_model {d_model} seq_len {seq_len}: {(time.perf_counter() - start) * 1000 / 20:.2f} ms "
              "per step (20 steps + one evaluation)", flush=True)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"{gpu}, torch {torch.__version__}, commit {git_state()[0]}")


if __name__ == "__main__":
    main()
