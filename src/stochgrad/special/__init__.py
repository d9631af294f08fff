"""Numerics shared by the distributions: incomplete gamma/beta derivatives, log-space helpers.

Written in torch ops only, vectorized, for CPU and CUDA in float32 and float64.
"""

__all__: list[str] = []
