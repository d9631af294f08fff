"""The von Mises numerics in stochgrad.special against 40-digit mpmath quadrature.

The CDF and dz/dκ = -(∂F/∂κ)/p at κ from 1e-3 to 1e3; relative error ≤ 1e-10 (float64),
≤ 1e-4 (float32); every accuracy check has a twin that rejects the gradient scaled by 1.1.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stochgrad.special.vonmises import von_mises_cdf, von_mises_cdf_and_dz_dconcentration
from tests.special import oracle

KAPPAS = [1e-3, 1e-2, 0.1, 0.5, 1.0, 3.0, 10.0, 20.0, 25.0, 30.0, 100.0, 300.0, 1e3]
OFFSETS = [-3.5, -2.0, -1.0, -0.3, 0.1, 0.5, 1.5, 3.0]  # in units of min(1/√κ, 0.85)
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}


def _points():
    """(x, κ) pairs in [-π, π] exactly representable in float32, so that both dtypes and the
    oracle see the same numbers."""
    out = []
    for kappa in KAPPAS:
        spread = min(1 / math.sqrt(kappa), 0.85)
        for c in OFFSETS:
            pair = torch.tensor([c * spread, kappa], dtype=torch.float32)
            out.append(tuple(float(v) for v in pair))
    return out


def _relative_errors(dtype, scale=1.0):
    points = _points()
    x = torch.tensor([p[0] for p in points], dtype=dtype)
    kappa = torch.tensor([p[1] for p in points], dtype=dtype)
    _, _, dz = von_mises_cdf_and_dz_dconcentration(x, kappa)
    truth = torch.tensor(
        [oracle.von_mises_dz_dconcentration(*p) for p in points], dtype=torch.float64
    )
    return ((scale * dz.double() - truth) / truth).abs()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_von_mises_dz_dconcentration_matches_quadrature(dtype):
    errors = _relative_errors(dtype)
    assert errors.max() <= TOLERANCE[dtype], f"max relative error {errors.max():.2e}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_twin_von_mises_check_rejects_scaled_gradient(dtype):
    assert _relative_errors(dtype, scale=1.1).min() > TOLERANCE[dtype]


def test_von_mises_cdf_and_its_gradient_match_quadrature():
    points = _points()[::3]
    x = torch.tensor([p[0] for p in points], dtype=torch.float64, requires_grad=True)
    kappa = torch.tensor([p[1] for p in points], dtype=torch.float64, requires_grad=True)
    cdf = von_mises_cdf(x, kappa)
    truth = torch.tensor([oracle.von_mises_cdf(*p) for p in points], dtype=torch.float64)
    assert torch.allclose(cdf, truth, rtol=1e-11, atol=0)
    grad_x, grad_kappa = torch.autograd.grad(cdf.sum(), (x, kappa))
    k = kappa.detach()
    density = torch.exp(k * (torch.cos(x.detach()) - 1)) / (2 * math.pi * torch.special.i0e(k))
    assert torch.allclose(grad_x, density, rtol=1e-12)
    dz = torch.tensor([oracle.von_mises_dz_dconcentration(*p) for p in points], dtype=torch.float64)
    assert torch.allclose(grad_kappa, -density * dz, rtol=1e-10, atol=0)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    log_kappa=st.floats(-6, 5),
    x=st.floats(-20, 20),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_von_mises_cdf_is_finite_monotone_and_periodic(log_kappa, x, dtype):
    kappa = torch.tensor(10.0**log_kappa, dtype=dtype)
    grid = torch.linspace(-math.pi, math.pi, 101, dtype=dtype)
    cdf = von_mises_cdf(grid, kappa)
    assert torch.isfinite(cdf).all()
    assert bool((cdf.diff() >= -4 * torch.finfo(dtype).eps).all())
    value = torch.tensor(x, dtype=dtype)
    shifted = von_mises_cdf(value + 2 * math.pi, kappa) - von_mises_cdf(value, kappa)
    assert abs(float(shifted) - 1) < 1e-4
