"""Training-step time of our MQAR trainer against the paper's protocol, on one GPU.

Ours: bf16 autocast, logits only at query positions, Triton kernels. The paper's protocol: fp32, logits over
the full vocabulary at every position, the plain PyTorch attention path. Same model, same micro-batching.
Run: python benchmarks/trainer_bench.py [--mixers rebased,based] [--d-model 64] [--seq-len 1024] [--batch 256]
"""

import argparse
import contextlib

import torch
import torch.nn.functional as F
import triton.testing

from rebased_bench.data.mqar import IGNORE_INDEX, generate, paper_num_kv_pairs
from rebased_bench.kernels import naive_parallel_based, naive_parallel_rebased
from rebased_bench.models import mixers
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.training import TrainConfig, autocast, micro_batch_size, query_loss


def naive_attention(q, k, v, score="rebased", scale=None, eps=1e-12):
    """The paper's path: the materialized seq_len x seq_len PyTorch form."""
    op = naive_parallel_rebased if score == "rebased" else naive_parallel_based
    return op(q, k, v, scale=scale, eps=eps)


@contextlib.contextmanager
def paper_attention_path():
    """Route the linear mixers through the naive form for the paper's protocol."""
    fast = mixers.polynomial_attention
    mixers.polynomial_attention = naive_attention
    try:
        yield
    finally:
        mixers.polynomial_attention = fast


def full_logits_loss(model, inputs, labels):
    """The paper's loss: logits over the vocabulary at every position, -100 ignored."""
    logits = model(inputs)  # (batch, seq_len, vocab)
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)


def step_ms(model, inputs, labels, micro, precision, loss_fn):
    """Median ms of one optimizer step over the whole batch (forward, backward, AdamW)."""
    device = inputs.device
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)

    def step():
        optimizer.zero_grad(set_to_none=True)
        for start in range(0, len(inputs), micro):
            with autocast(precision, device):
                loss = loss_fn(model, inputs[start:start + micro], labels[start:start + micro])
            (loss * micro / len(inputs)).backward()
        optimizer.step()

    return triton.testing.do_bench(step, warmup=200, rep=1000, return_mode="median")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixers", default="rebased,based")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    device = torch.device("cuda")
    inputs, labels = generate(args.batch, args.seq_len, paper_num_kv_pairs(args.seq_len))
    inputs, labels = inputs.to(device), labels.to(device)
    micro = micro_batch_size(TrainConfig(lr=1e-3, epochs=1, batch_size=args.batch), args.seq_len)
    print(f"| mixer | ours (bf16, query logits, Triton) ms | paper protocol (fp32, full logits, naive) ms | speed-up |")
    print("|---|---|---|---|")
    for mixer in args.mixers.split(","):
        torch.manual_seed(0)
        model = LanguageModel(ModelConfig(mixer, args.d_model, args.seq_len)).to(device)
        ours = step_ms(model, inputs, labels, micro, "bf16", query_loss)
        with paper_attention_path():
            paper = step_ms(model, inputs, labels, micro, "fp32", full_logits_loss)
        print(f"| {mixer} | {ours:.1f} | {paper:.1f} | {paper / ours:.1f}x |", flush=True)
    print(f"d_model {args.d_model}, seq_len {args.seq_len}, batch {args.batch} (micro-batch {micro}), "
          f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")


if __name__ == "__main__":
    main()
