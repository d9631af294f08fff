"""What separates the runs of ``stochgrad compare``: gradient variance and paired seed statistics.

- :func:`gradient_variance`: G independent gradient estimates at fixed parameters, summarised by
  the total variance tr Cov[g] and the squared norm of their mean (signal-to-noise ratio).
- :func:`mean_standard_error` and :func:`paired_t_test`: the table's mean ± SE over seeds and
  the two-sided p-value of a difference between two rows trained on the same seeds (same seed =
  same initial weights and data order, so the seeds pair). The Student-t CDF is the library's
  :class:`stochgrad.implicit.StudentT`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from stochgrad.implicit import StudentT

__all__ = ["gradient_variance", "mean_standard_error", "paired_t_test"]


def gradient_variance(
    loss: Callable[[], Tensor], params: Iterable[Tensor], draws: int
) -> dict[str, float]:
    """Total variance and squared mean norm of ``draws`` gradient estimates of ``loss``.

    Each call of ``loss()`` must draw fresh randomness; its gradient g_i with respect to
    ``params`` (flattened and concatenated, float64) is one estimate. Returns
    ``grad_variance`` = Σ_j s_j², the sum over coordinates of the unbiased sample variance, and
    ``grad_mean_norm2`` = ‖ḡ‖², the squared norm of the sample mean (an estimate of ‖E g‖²
    biased up by ``grad_variance / draws``), and ``grad_snr`` = (‖ḡ‖² − Σ_j s_j² / G) / Σ_j s_j²,
    the signal-to-noise ratio ‖E g‖² / tr Cov[g] from unbiased estimates of both (NaN at zero
    variance). The parameters' ``.grad`` are left untouched.

    Example::

        >>> mu = torch.zeros(3, requires_grad=True)
        >>> _ = torch.manual_seed(0)
        >>> stats = gradient_variance(lambda: (mu * torch.randn(3)).sum(), [mu], draws=4000)
        >>> round(stats["grad_variance"], 1)  # 3 coordinates of variance 1
        3.0
    """
    if draws < 2:
        raise ValueError(f"draws must be >= 2, got {draws}")
    params = list(params)
    estimates = []
    for _ in range(draws):
        grads = torch.autograd.grad(loss(), params, allow_unused=True)
        estimates.append(
            torch.cat([
                (torch.zeros_like(p) if g is None else g).detach().flatten().double()
                for p, g in zip(params, grads, strict=True)
            ])
        )  # fmt: skip
    stacked = torch.stack(estimates)
    variance = stacked.var(0).sum().item()
    mean_norm2 = stacked.mean(0).square().sum().item()
    return {
        "grad_variance": variance,
        "grad_mean_norm2": mean_norm2,
        "grad_snr": (mean_norm2 - variance / draws) / variance if variance > 0 else math.nan,
    }


def mean_standard_error(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean); the SE is NaN for a single value.

    Example::

        >>> mean_standard_error([1.0, 2.0, 3.0])
        (2.0, 0.5773502691896258)
    """
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, statistics.stdev(values) / math.sqrt(len(values))


def paired_t_test(first: Sequence[float], second: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test of mean(first - second) = 0.

    t = d̄ / (s_d / √n) with n - 1 degrees of freedom, p = 2 F(-|t|) for the Student-t CDF F.
    Equal pairs (s_d = 0) give p = 1 if d̄ = 0, else p = 0; fewer than two pairs give NaN.

    Example::

        >>> round(paired_t_test([1.0, 2.0, 3.5], [0.0, 1.5, 2.0]), 4)
        0.0742
    """
    if len(first) != len(second):
        raise ValueError(f"paired samples need equal lengths, got {len(first)} and {len(second)}")
    differences = [a - b for a, b in zip(first, second, strict=True)]
    n = len(differences)
    if n < 2:
        return math.nan
    mean, spread = statistics.fmean(differences), statistics.stdev(differences)
    if spread == 0:
        return 1.0 if mean == 0 else 0.0
    t = abs(mean) / (spread / math.sqrt(n))
    df = torch.tensor(float(n - 1), dtype=torch.float64)
    cdf = StudentT(df, validate_args=False).cdf(torch.tensor(-t, dtype=torch.float64))
    return min(1.0, 2 * cdf.item())
