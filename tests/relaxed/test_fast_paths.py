"""The faster formulas behind the relaxations agree with the direct ones they replaced."""

import math

import pytest
import torch

import stochgrad.relaxed as relaxed
from stochgrad.relaxed._utils import gumbel_like, normal_to_logistic


def _log_ndtr_logit(v):
    return torch.special.log_ndtr(v) - torch.special.log_ndtr(-v)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-13), (torch.float32, 1e-6)])
def test_normal_to_logistic_matches_log_ndtr(dtype, tol):
    """Values and gradients against two float64 ``log_ndtr`` on both tails (|v| <= 40)."""
    v = torch.linspace(-40, 40, 40001, dtype=torch.float64)
    v = torch.cat([v, torch.tensor([-1e-9, 1e-9, 0.5e-30], dtype=torch.float64)])
    fast = v.to(dtype).detach().requires_grad_()
    direct = v.clone().requires_grad_()
    normal_to_logistic(fast).sum().backward()
    reference = _log_ndtr_logit(direct)
    reference.sum().backward()
    value = normal_to_logistic(fast.detach()).double()
    assert ((value - reference.detach()).abs() / reference.detach().abs().clamp_min(1)).max() <= tol
    # float32's own log_ndtr (used beyond |v| = 8.5) is only good to ~2e-4 far in the tail.
    near = v.abs() <= 8.5 if dtype == torch.float32 else v.abs() <= 40
    grad_error = (fast.grad.double() - direct.grad).abs() / direct.grad.abs()
    assert grad_error[near].max() <= 10 * tol
    assert torch.isfinite(fast.grad).all()


def test_normal_to_logistic_check_rejects_a_wrong_formula():
    """Twin: logit(Phi(v)) computed as 1.7 v (the logistic approximation) fails the same check."""
    v = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    error = ((1.7 * v - _log_ndtr_logit(v)).abs() / _log_ndtr_logit(v).abs().clamp_min(1)).max()
    assert error > 1e-2


def test_gumbel_draws_have_gumbel_moments():
    """Mean γ and variance π²/6 within 5 standard errors (seed 0, 10^6 draws); the twin with
    exponential noise instead of Gumbel noise is rejected."""
    torch.manual_seed(0)
    n = 10**6
    like = torch.empty((), dtype=torch.float64)
    draws = gumbel_like(torch.Size([n]), like)
    variance = math.pi**2 / 6
    mean_z = (draws.mean() - 0.5772156649015329) / math.sqrt(variance / n)
    # Var of (g - mean)^2 for Gumbel: the 4th central moment 27/5 σ^4 minus σ^4.
    var_z = (draws.var() - variance) / math.sqrt((27 / 5 - 1) * variance**2 / n)
    assert abs(mean_z) < 5 and abs(var_z) < 5
    wrong = torch.empty(n, dtype=torch.float64).exponential_()
    assert abs((wrong.mean() - 0.5772156649015329) / math.sqrt(variance / n)) > 5


def test_correlated_bernoulli_single_matrix_path_matches_batched_solve():
    """``eps @ L.T`` (one correlation matrix) and per-element ``L @ eps`` give the same sample."""
    k = 7
    correlation = 0.6 * torch.eye(k, dtype=torch.float64) + 0.4
    pi = torch.rand(5, k, dtype=torch.float64)
    tau = torch.tensor(0.5, dtype=torch.float64)
    single = relaxed.CorrelatedRelaxedBernoulli(pi, correlation, tau)
    batched = relaxed.CorrelatedRelaxedBernoulli(pi, correlation.expand(5, k, k), tau)
    torch.manual_seed(1)
    a = single.rsample((3,))
    torch.manual_seed(1)
    b = batched.rsample((3,))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_in_place_noise_matches_the_direct_formulas(dtype):
    """``logistic_like`` (one ``logit_``) and ``gumbel_like`` (in place) against
    ``log u - log(1 - u)`` and ``-log(-log u)`` in float64 on the same clamped uniforms, within
    two ulps of ``max(1, |value|)``; the twin without the ``1 - u`` term fails."""
    shape = torch.Size([10**5])
    like = torch.empty((), dtype=dtype)
    eps = torch.finfo(dtype).eps
    torch.manual_seed(0)
    u = torch.rand(shape, dtype=dtype).clamp(eps, 1 - eps).double()
    logistic_reference = u.log() - (-u).log1p()
    gumbel_reference = -(-u.log()).log()
    for draw, reference in (
        (relaxed._utils.logistic_like, logistic_reference),
        (gumbel_like, gumbel_reference),
    ):
        torch.manual_seed(0)
        value = draw(shape, like)
        assert value.dtype == dtype and torch.isfinite(value).all()
        error = (value.double() - reference).abs() / reference.abs().clamp_min(1)
        assert error.max() <= 2 * eps
    wrong = (u.log() - logistic_reference).abs() / logistic_reference.abs().clamp_min(1)
    assert wrong.max() > 2 * eps


def _hard_concrete_autograd(alpha, beta, xi, gamma, noise):
    """The formula the fused HardConcrete path replaced, differentiated by autograd."""
    s = torch.sigmoid((alpha.log() + noise) / beta)
    return torch.clamp(gamma + (xi - gamma) * s, 0.0, 1.0)


@pytest.mark.parametrize(
    "shapes",
    [((6, 7), (), (), ()), ((7,), (6, 7), (7,), ()), ((6, 7), (6, 7), (6, 7), (6, 7))],
    ids=["scalar-temperature", "mixed", "full"],
)
def test_hard_concrete_closed_form_backward_matches_autograd(shapes):
    """Draws and gradients of every parameter (broadcast in several ways, with a sample shape)
    equal autograd's through the direct formula, to float64 rounding."""
    gen = torch.Generator().manual_seed(0)

    def uniform(shape, low, high):
        return (
            low + (high - low) * torch.rand(shape, dtype=torch.float64, generator=gen)
        ).requires_grad_()

    params = [
        uniform(shapes[0], 0.1, 5.0),
        uniform(shapes[1], 0.2, 1.5),
        uniform(shapes[2], 1.01, 1.5),
        uniform(shapes[3], -0.5, -0.01),
    ]
    dist = relaxed.HardConcrete(*params)
    torch.manual_seed(1)
    fused = dist.rsample((5,))
    torch.manual_seed(1)
    noise = relaxed._utils.logistic_like(dist._extended_shape((5,)), dist.alpha)
    direct = _hard_concrete_autograd(*params, noise)
    torch.testing.assert_close(fused, direct, rtol=0, atol=1e-15)
    assert ((fused > 0) & (fused < 1)).any() and ((fused == 0) | (fused == 1)).any()
    weights = torch.randn(fused.shape, dtype=torch.float64, generator=gen)
    for a, b in zip(
        torch.autograd.grad((fused * weights).sum(), params),
        torch.autograd.grad((direct * weights).sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_stochastic_times_smooth_gradient_is_finite_at_zero_and_one():
    """``p = 0`` and ``p = 1``: draws 0 and 1, finite gradients (0 at ``p = 0``, where the gate
    is closed), and ``g / (2 sqrt p)`` elsewhere."""
    probs = torch.tensor([0.0, 1.0, 0.25], dtype=torch.float64, requires_grad=True)
    torch.manual_seed(0)
    draws = relaxed.StochasticTimesSmooth(probs).rsample((2000,))
    assert (draws[:, 0] == 0).all() and (draws[:, 1] == 1).all()
    (grad,) = torch.autograd.grad(draws.sum(), probs)
    assert torch.isfinite(grad).all() and grad[0] == 0
    torch.testing.assert_close(grad[1], torch.tensor(2000 * 0.5, dtype=torch.float64))
