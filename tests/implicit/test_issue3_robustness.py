"""Robustness (property-based): extreme parameters give finite samples and finite gradients.

von Mises κ from 1e-6 to 1e5, mixtures with near-zero weights and far-apart components,
truncated normals with bounds deep in the tails; float32 and float64. Hypothesis runs
derandomized (a fixed seed), so failures reproduce.
"""

import math

import torch
import torch.distributions as td
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad.implicit as irt
from stochgrad.special.vonmises import von_mises_cdf

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
DTYPES = st.sampled_from([torch.float32, torch.float64])


def _leaf(value, dtype):
    return torch.tensor(value, dtype=dtype, requires_grad=True)


def _finite_grads(z, params):
    assert torch.isfinite(z).all()
    grads = torch.autograd.grad((z + z**2).sum(), params, allow_unused=True)
    return all(g is None or bool(torch.isfinite(g).all()) for g in grads)


@SETTINGS
@given(log_kappa=st.floats(-6, 5), loc=st.floats(-10, 10), dtype=DTYPES)
def test_von_mises_extreme_concentration(log_kappa, loc, dtype):
    kappa, loc = _leaf(10.0**log_kappa, dtype), _leaf(loc, dtype)
    torch.manual_seed(0)
    z = irt.VonMises(loc, kappa).rsample((200,))
    assert _finite_grads(z, (loc, kappa))
    assert bool(((z >= -math.pi) & (z <= math.pi)).all())


@SETTINGS
@given(
    log_kappa=st.floats(-6, 5),
    x=st.floats(-20, 20),
    dtype=DTYPES,
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


@SETTINGS
@given(
    log_weight=st.floats(-80, 0),
    separation=st.floats(0, 1e3),
    log_scale=st.floats(-2, 2),
    dtype=DTYPES,
)
def test_mixture_near_zero_weight_and_far_apart_components(
    log_weight, separation, log_scale, dtype
):
    logits = _leaf([0.0, log_weight, -1.0], dtype)
    loc = _leaf([-separation, 0.0, separation], dtype)
    scale = _leaf([10.0**log_scale, 1.0, 10.0 ** (-log_scale)], dtype)
    torch.manual_seed(0)
    uni = irt.MixtureSameFamily(td.Categorical(logits=logits), td.Normal(loc, scale))
    assert _finite_grads(uni.rsample((300,)), (logits, loc, scale))
    diagonal = irt.MixtureSameFamily(
        td.Categorical(logits=logits),
        td.Independent(td.Normal(loc.unsqueeze(-1).expand(3, 4), scale.unsqueeze(-1)), 1),
    )
    assert _finite_grads(diagonal.rsample((100,)), (logits, loc, scale))


@SETTINGS
@given(log_weight=st.floats(-60, 0), separation=st.floats(0, 500), dtype=DTYPES)
def test_heterogeneous_mixture_with_different_supports(log_weight, separation, dtype):
    logits = _leaf([0.0, log_weight], dtype)
    loc, rate = _leaf(-separation, dtype), _leaf(0.5, dtype)
    mix = irt.Mixture([td.Normal(loc, 1.0), td.Gamma(2.0, rate)], logits=logits)
    torch.manual_seed(0)
    assert _finite_grads(mix.rsample((300,)), (logits, loc, rate))


@SETTINGS
@given(
    start=st.floats(-40, 40),
    width=st.floats(1e-3, 10),
    open_side=st.sampled_from(["none", "low", "high"]),
    dtype=DTYPES,
)
def test_truncated_normal_deep_tails(start, width, open_side, dtype):
    low, high = start, start + width
    if open_side == "low":
        low = -math.inf
    if open_side == "high":
        high = math.inf
    params = [_leaf(v, dtype) for v in (0.0, 1.0, low, high)]
    torch.manual_seed(0)
    z = irt.TruncatedNormal(*params).rsample((200,))
    assert bool(((z >= params[2]) & (z <= params[3])).all())
    assert _finite_grads(z, params)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(dtype=DTYPES, zero=st.integers(0, 2))
def test_mixture_with_an_exactly_zero_weight_has_finite_gradients(dtype, zero):
    weights = _leaf([0.5, 0.3, 0.2], dtype)
    masked = weights * (torch.arange(3) != zero)  # still a leaf's function: gradient flows
    loc = _leaf([-1.0, 0.5, 2.0], dtype)
    components = [td.Normal(loc[0], 1.0), td.Laplace(loc[1], 1.0), td.Gumbel(loc[2], 1.0)]
    mix = irt.Mixture(components, weights=masked / masked.sum())
    torch.manual_seed(0)
    assert _finite_grads(mix.rsample((200,)), (weights, loc))
