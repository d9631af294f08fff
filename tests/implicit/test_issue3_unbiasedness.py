"""Unbiasedness of the issue-3 gradients: MC mean of ∇θ f(z) vs the exact ∇θ E[f(z)].

Per example: seed 0, ``example.draws`` (40,000 to 200,000) independent single-draw estimates
(one replica of the parameters per draw), tolerance Z_TOL = 4.5 standard errors per entry. The
twin test shows that the same check rejects, for every parameter, the estimate scaled by 1.1.
"""

import functools

import pytest
import torch

from tests.implicit.stats import Z_TOL, exact_gradients, per_sample_gradients, z_scores
from tests.implicit.test_issue3_examples import EXAMPLES

CASES = [pytest.param(ex, id=ex.name) for ex in EXAMPLES if ex.expectation is not None]


@functools.cache
def _estimates(name):
    example = next(ex for ex in EXAMPLES if ex.name == name)
    torch.manual_seed(0)
    estimates = per_sample_gradients(example.make, example.params, example.statistic, example.draws)
    exact = exact_gradients(example.expectation, [p.unsqueeze(0) for p in example.params])
    return estimates, [e.squeeze(0) for e in exact]


@pytest.mark.parametrize("example", CASES)
def test_gradient_is_unbiased(example):
    estimates, exact = _estimates(example.name)
    for index, (estimate, truth) in enumerate(zip(estimates, exact, strict=True)):
        assert torch.isfinite(estimate).all()
        scores = z_scores(estimate, truth)
        assert scores.abs().max() < Z_TOL, f"parameter {index}: z-scores {scores}"


@pytest.mark.parametrize("example", CASES)
def test_twin_rejects_gradient_scaled_by_1_1(example):
    estimates, exact = _estimates(example.name)
    for index, (estimate, truth) in enumerate(zip(estimates, exact, strict=True)):
        scores = z_scores(1.1 * estimate, truth)
        assert scores.abs().max() > Z_TOL, f"parameter {index}: z-scores {scores}"
