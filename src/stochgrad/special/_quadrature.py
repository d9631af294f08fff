"""Gauss-Legendre rules on [0, 1], computed once per (size, dtype, device)."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

__all__ = ["gauss_legendre", "rule_for"]

# (number of nodes, cut-off C): integrands exp(phi) are cut where phi = -C.
# Sizes were chosen against a 40-digit mpmath oracle: with these, the maximum relative error of the
# Gamma/Beta implicit gradients stays below ~1e-13 (float64) and ~1e-6 (float32) over a in [1e-3, 1e4].
_RULES = {torch.float64: (36, 38.0), torch.float32: (16, 20.0)}


@functools.lru_cache(maxsize=None)
def _nodes(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Golub-Welsch: eigenvalues of the Jacobi matrix of the Legendre polynomials.
    k = torch.arange(1, n, dtype=torch.float64)
    off = k / torch.sqrt(4 * k * k - 1)
    jacobi = torch.diag(off, 1) + torch.diag(off, -1)
    roots, vectors = torch.linalg.eigh(jacobi)
    weights = vectors[0] ** 2  # 2 v0^2 on [-1, 1], halved on [0, 1]
    return tuple(((roots + 1) / 2).tolist()), tuple(weights.tolist())


def gauss_legendre(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes and weights of the ``n``-point Gauss-Legendre rule on ``[0, 1]`` (Python floats)."""
    return _nodes(n)


# Built once at import so that tracing (torch.compile) only ever sees Python float constants.
_TABLES = {dtype: (*_nodes(n), cutoff) for dtype, (n, cutoff) in _RULES.items()}


def rule_for(dtype: torch.dtype) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    """Nodes, weights and cut-off ``C`` used for ``dtype`` (float16/bfloat16 use float32's)."""
    return _TABLES.get(dtype, _TABLES[torch.float32])


_CHUNK = 1 << 16  # elements per pass: keeps the working set of the node loop in cache


def tail_moments(
    rate: Tensor,
    scale: Tensor,
    end: Tensor,
    sign: Tensor,
    nodes: tuple[float, ...],
    weights: tuple[float, ...],
) -> tuple[Tensor, Tensor]:
    """``∫_0^end (1, s) · exp(rate·s - scale·expm1(sign·s)) ds`` by Gauss-Legendre, elementwise.

    All arguments share one shape. Large inputs are processed in chunks so that the node loop
    runs in cache; the arithmetic is in place to avoid allocations.
    """
    flat = [t.reshape(-1) for t in (rate, scale, end, sign)]
    total = flat[0].numel()
    if torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(flat[0]):
        m0, m1 = _moments(*flat, nodes, weights, inplace=False)
    elif total <= _CHUNK:
        m0, m1 = _moments(*flat, nodes, weights)
    else:
        parts = [
            _moments(*(t[i : i + _CHUNK] for t in flat), nodes, weights)
            for i in range(0, total, _CHUNK)
        ]
        m0 = torch.cat([p[0] for p in parts])
        m1 = torch.cat([p[1] for p in parts])
    return m0.reshape(rate.shape), m1.reshape(rate.shape)


def _moments(rate, scale, end, sign, nodes, weights, inplace=True):
    m0 = torch.zeros_like(rate)
    m1 = torch.zeros_like(rate)
    for node, weight in zip(nodes, weights):
        s = end * node
        if inplace:  # same arithmetic as below, without temporaries
            term = (s * sign).expm1_().mul_(scale)
            term = torch.addcmul(term, rate, s, value=-1).neg_().exp_().mul_(weight)
            m0.add_(term)
            m1.addcmul_(term, s)
        else:  # functorch transforms have no batching rule for the in-place ops
            term = weight * torch.exp(rate * s - scale * torch.expm1(sign * s))
            m0 = m0 + term
            m1 = m1 + term * s
    return m0 * end, m1 * end
