"""Plain PyTorch reference for the fused linear cross-entropy (materializes the N x V logits)."""

import torch
import torch.nn.functional as F

# what autocast lowers in a matmul: its floating dtypes, never fp64
AUTOCAST_ELIGIBLE = (torch.float32, torch.float16, torch.bfloat16)


def autocast_operands(hidden, weight):
    """hidden, weight as `hidden @ weight.T` would see them under the autocast of hidden's device (unchanged
    when autocast is off): the operand rounding is the caller's choice, the sums stay fp32 either way."""
    device = hidden.device.type
    if not torch.is_autocast_enabled(device):
        return hidden, weight
    dtype = torch.get_autocast_dtype(device)
    return tuple(x.to(dtype) if x.dtype in AUTOCAST_ELIGIBLE else x for x in (hidden, weight))


def naive_linear_cross_entropy(hidden, weight, targets):
    """Mean over rows of cross_entropy(hidden @ weight.T, targets), computed in fp32 (fp64 for fp64 operands).

    hidden: (N, D); weight: (V, D); targets: (N,) class ids in [0, V) -> 0-d fp32 (fp64) loss.
    """
    hidden, weight = autocast_operands(hidden, weight)
    dtype = torch.promote_types(torch.promote_types(hidden.dtype, weight.dtype), torch.float32)
    # autocast would run the upcast matmul in 16 bits again
    with torch.autocast(hidden.device.type, enabled=False):
        logits = hidden.to(dtype) @ weight.to(dtype).T
    return F.cross_entropy(logits, targets)
