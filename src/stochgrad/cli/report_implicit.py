"""Accuracy and speed of the implicit gradients, as printed by ``stochgrad bench``.

Speed: ``rsample`` + ``backward`` of stochgrad's classes against torch's native ones, measured in
the same process on the same shapes. Accuracy: the maximum relative difference of ``dz/dθ`` from
``-(∂F/∂θ)/p`` where ``∂F/∂θ`` is a 4-point central difference of an independent CDF
(``torch.special.gammainc``, Cephes) in float64; that reference is itself good to ~1e-9, so the
table bounds stochgrad's error from above (the test suite checks 1e-10 against 40-digit mpmath).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

import stochgrad.implicit as irt

__all__ = ["accuracy_rows", "implicit_report", "speed_rows"]

SPEED_CASES: list[tuple[str, Callable, Callable, tuple[float, ...]]] = [
    ("Gamma(0.5)", irt.Gamma, torch.distributions.Gamma, (0.5, 1.0)),
    ("Gamma(5)", irt.Gamma, torch.distributions.Gamma, (5.0, 1.0)),
    ("Gamma(500)", irt.Gamma, torch.distributions.Gamma, (500.0, 1.0)),
    ("Beta(2, 3)", irt.Beta, torch.distributions.Beta, (2.0, 3.0)),
    ("Dirichlet(K=2)", irt.Dirichlet, torch.distributions.Dirichlet, (1.5,) * 2),
    ("Dirichlet(K=10)", irt.Dirichlet, torch.distributions.Dirichlet, (1.5,) * 10),
]


def _time_once(make: Callable[[], torch.distributions.Distribution], params) -> float:
    for p in params:
        p.grad = None
    start = time.perf_counter()
    make().rsample().sum().backward()
    return time.perf_counter() - start


def speed_rows(size: int = 10**6, repeats: int = 3, dtype=torch.float32) -> list[tuple]:
    """``(case, stochgrad seconds, torch seconds, ratio)`` for ``size`` elements per case.

    Each repeat times stochgrad then torch back to back, after one untimed warm-up of each. The
    seconds are the best of the repeats; the ratio is the median over repeats of the paired
    ratios (a slow spell of the machine hits both members of a pair alike).
    """
    rows = []
    for name, ours, native, values in SPEED_CASES:
        if ours is irt.Dirichlet:
            k = len(values)
            params = [torch.full((size // k, k), values[0], dtype=dtype, requires_grad=True)]
        else:
            params = [torch.full((size,), v, dtype=dtype, requires_grad=True) for v in values]
        makers = [lambda cls=cls, params=params: cls(*params) for cls in (ours, native)]
        for make in makers:
            _time_once(make, params)
        pairs = [[_time_once(make, params) for make in makers] for _ in range(repeats)]
        median = statistics.median(ours_s / native_s for ours_s, native_s in pairs)
        best = [min(column) for column in zip(*pairs, strict=True)]
        rows.append((name, best[0], best[1], median))
    return rows


def _gamma_reference(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    h = 1e-3 * torch.minimum(a, a.sqrt())  # the CDF varies on the scale min(α, √α) in α
    cdf = torch.special.gammainc
    d_cdf = (8 * (cdf(a + h, x) - cdf(a - h, x)) - (cdf(a + 2 * h, x) - cdf(a - 2 * h, x))) / (
        12 * h
    )
    density = torch.exp((a - 1) * torch.log(x) - x - torch.lgamma(a))
    return -d_cdf / density


def accuracy_rows(samples: int = 2000, seed: int = 0) -> list[tuple]:
    """``(α, stochgrad max rel. diff, torch native max rel. diff)`` for Gamma in float64."""
    rows = []
    for a in (0.1, 1.0, 10.0, 100.0, 1000.0):
        torch.manual_seed(seed)
        errors = []
        for cls in (irt.Gamma, torch.distributions.Gamma):
            alpha = torch.full((samples,), a, dtype=torch.float64, requires_grad=True)
            torch.manual_seed(seed)
            z = cls(alpha, torch.ones((), dtype=torch.float64)).rsample()
            z.sum().backward()
            reference = _gamma_reference(alpha.detach(), z.detach())
            keep = reference.abs() > 1e-3 * reference.abs().median()  # away from zero crossings
            errors.append(((alpha.grad - reference).abs() / reference.abs())[keep].max().item())
        rows.append((a, *errors))
    return rows


def implicit_report(size: int = 10**6, repeats: int = 3) -> str:
    lines = [
        f"rsample + backward, {size:,} elements, float32, {repeats} interleaved repeats "
        f"({torch.get_num_threads()} threads): best seconds, median of the paired ratios",
        "| case | stochgrad (s) | torch native (s) | ratio |",
        "|---|---|---|---|",
    ]
    lines += [f"| {n} | {o:.3f} | {t:.3f} | {r:.2f} |" for n, o, t, r in speed_rows(size, repeats)]
    lines += [
        "",
        "Gamma dz/dα, float64: max relative difference from -(∂P/∂α)/p with ∂P/∂α by 4-point "
        "differences of torch.special.gammainc (a reference good to ~1e-9)",
        "| α | stochgrad | torch native |",
        "|---|---|---|",
    ]
    lines += [f"| {a:g} | {ours:.1e} | {native:.1e} |" for a, ours, native in accuracy_rows()]
    return "\n".join(lines)
