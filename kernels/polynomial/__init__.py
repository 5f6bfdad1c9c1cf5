"""Polynomial-score causal attention: ReBased (s^2) and Based (1 + s + s^2/2)."""
