"""rebased-bench: benchmarks for linear attention with learnable kernel functions."""

__version__ = "0.1.0"
