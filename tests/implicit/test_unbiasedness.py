"""Unbiasedness: the MC mean of ∇θ f(z) matches the exact ∇θ E[f(z)] (closed-form moments).

Seed fixed per case; sample size 200,000 or more (``Example.samples``: enough that a 10% bias
shifts every z-score by at least 2 x Z_TOL); tolerance Z_TOL = 4.5 standard errors. The twin
test shows the same check rejects the gradient scaled by 1.1.
"""

import pytest
import torch

from tests.implicit.examples import EXAMPLES
from tests.implicit.stats import Z_TOL, exact_gradients, per_sample_gradients, z_scores

CASES = [pytest.param(ex, stat, id=f"{ex.name}-{stat}") for ex in EXAMPLES for stat in ex.moments]


def _estimates(example, stat, seed=0):
    torch.manual_seed(seed)
    f, expectation = example.moments[stat]
    params = list(example.params.values())
    # MVN: the scale_tril parameter is the one under test besides loc.
    estimates = per_sample_gradients(
        lambda *p: (
            example.cls(*p)
            if example.cls.__name__ != "MultivariateNormal"
            else example.cls(p[0], scale_tril=p[1])
        ),
        params,
        f,
        example.samples,
    )
    exact = exact_gradients(expectation, [p.unsqueeze(0) for p in params])
    return estimates, [e.squeeze(0) for e in exact]


def _relevant(exact):
    # Entries whose true gradient is zero (the upper triangle of scale_tril, loc of a symmetric
    # statistic) cannot show a relative bias; they are left out of both tests.
    return exact.abs() > 1e-12


@pytest.mark.parametrize(("example", "stat"), CASES)
def test_gradient_is_unbiased(example, stat):
    estimates, exact = _estimates(example, stat)
    for name, est, ex in zip(example.params, estimates, exact, strict=True):
        mask = _relevant(ex)
        z = z_scores(est, ex)[mask]
        assert torch.all(z.abs() < Z_TOL), f"{name}: z-scores {z.tolist()}"


@pytest.mark.parametrize(("example", "stat"), CASES)
def test_scaled_gradient_is_detected(example, stat):
    estimates, exact = _estimates(example, stat)
    for name, est, ex in zip(example.params, estimates, exact, strict=True):
        mask = _relevant(ex)
        z = z_scores(1.1 * est, ex)[mask]
        assert torch.all(z.abs() > Z_TOL), f"{name}: a 10% bias went unnoticed, z = {z.tolist()}"
