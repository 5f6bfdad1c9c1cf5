"""Fused linear cross-entropy: the LM head and the loss in one op, never materializing the logits."""
