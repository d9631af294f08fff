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


# --- Gamma, Beta, Dirichlet, Student t ---------------------------------------------------------

log_concentration = st.floats(min_value=-3, max_value=4)


@settings(max_examples=40, deadline=None)
@given(a=log_concentration, b=log_concentration, double=st.booleans())
def test_gradients_finite_over_parameter_range(a, b, double):
    dtype = torch.float64 if double else torch.float32
    c1 = torch.tensor(10.0**a, dtype=dtype, requires_grad=True)
    c0 = torch.tensor(10.0**b, dtype=dtype, requires_grad=True)
    torch.manual_seed(0)
    for dist in (
        irt.Gamma(c1, c0),
        irt.Beta(c1, c0),
        irt.Dirichlet(torch.stack([c1, c0])),
        # below df = 0.5 float32 draws can exceed 3.4e38 (|t| ~ U^(-1/df)) and overflow
        *([irt.StudentT(c1, 0.0, c0)] if c1 >= 0.5 else []),
    ):
        z = dist.rsample((64,))
        assert torch.isfinite(z).all()
        grads = torch.autograd.grad(z.sum(), (c1, c0), allow_unused=True)
        for g in grads:
            assert g is None or torch.isfinite(g).all(), (type(dist).__name__, a, b)


def test_small_concentrations_do_not_underflow_in_float32():
    torch.manual_seed(0)
    c = torch.full((2,), 0.01, requires_grad=True)
    z = irt.Dirichlet(c).rsample((1000,))
    assert (z > 0).all() and torch.isfinite(z).all()
    z[..., 0].mean().backward()
    assert torch.isfinite(c.grad).all()
    a = torch.tensor(0.05, requires_grad=True)
    x = irt.Beta(a, a).rsample((1000,))
    assert ((x > 0) & (x < 1)).all()
    x.mean().backward()
    assert torch.isfinite(a.grad)
