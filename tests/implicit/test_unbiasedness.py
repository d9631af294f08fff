"""Unbiasedness: the MC mean of ∇θ f(z) matches the exact ∇θ E[f(z)] (closed-form moments).

Per example and statistic: seed 0, ``example.samples`` (40,000 to 600,000) independent
single-draw estimates (one replica of the parameters per draw); tolerance Z_TOL = 4.5 standard
errors per entry. The twin test shows the same check rejects the gradient scaled by 1.1.
"""

import functools

import pytest
import torch

from tests.implicit.examples import EXAMPLES
from tests.implicit.stats import Z_TOL, exact_gradients, per_sample_gradients, z_scores

CASES = [pytest.param(ex, stat, id=f"{ex.name}-{stat}") for ex in EXAMPLES for stat in ex.moments]


@functools.cache
def _estimates(name, stat):
    example = next(ex for ex in EXAMPLES if ex.name == name)
    torch.manual_seed(0)
    f, expectation = example.moments[stat]
    params = list(example.params.values())
    estimates = per_sample_gradients(example.build, params, f, example.samples)
    exact = exact_gradients(expectation, [p.unsqueeze(0) for p in params])
    return estimates, [e.squeeze(0) for e in exact]


def _informative(estimate, exact):
    # Entries whose true gradient is zero and whose every estimate is exactly zero (the upper
    # triangle of scale_tril) have no standard error: they are left out.
    return (exact != 0) | (estimate != 0).any(0)


def _relevant(exact):
    # Entries whose true gradient is zero (the upper triangle of scale_tril, loc of a symmetric
    # statistic) cannot show a relative bias; the twin leaves them out.
    return exact.abs() > 1e-12


@pytest.mark.parametrize(("example", "stat"), CASES)
def test_gradient_is_unbiased(example, stat):
    estimates, exact = _estimates(example.name, stat)
    for name, est, ex in zip(example.params, estimates, exact, strict=True):
        assert torch.isfinite(est).all(), name
        z = z_scores(est, ex)[_informative(est, ex)]
        assert torch.all(z.abs() < Z_TOL), f"{name}: z-scores {z.tolist()}"


@pytest.mark.parametrize(("example", "stat"), CASES)
def test_scaled_gradient_is_detected(example, stat):
    estimates, exact = _estimates(example.name, stat)
    for name, est, ex in zip(example.params, estimates, exact, strict=True):
        z = z_scores(1.1 * est, ex)[_relevant(ex)]
        if z.numel() == 0:
            continue
        detected = z.abs() > Z_TOL
        assert detected.all() if example.twin_per_entry else detected.any(), (
            f"{name}: a 10% bias went unnoticed, z = {z.tolist()}"
        )
