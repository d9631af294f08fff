"""stochgrad.vae.functional: numerics, values and the gradient each surrogate sends to log_q, log_p.

The gradient checks differentiate each loss with respect to ``log_q`` and ``log_p`` treated as
free tensors and compare with the estimator's formula written out by hand (w̃ = softmax(log w)).
"""

import math

import pytest
import torch

from stochgrad.vae import functional as F

BATCH, K = 3, 4


def random_inputs(dtype=torch.float64, seed=0, scale=3.0):
    generator = torch.Generator().manual_seed(seed)
    log_q = (scale * torch.randn(BATCH, K, generator=generator, dtype=dtype)).requires_grad_()
    log_p = (scale * torch.randn(BATCH, K, generator=generator, dtype=dtype)).requires_grad_()
    return log_q, log_p


def input_grads(loss, log_q, log_p):
    return torch.autograd.grad(loss, (log_q, log_p), allow_unused=True, materialize_grads=True)


# ---------------------------------------------------------------------------------------------
# log-mean-exp


def test_log_mean_exp_matches_naive_formula(dtype):
    value = torch.randn(5, 7, dtype=dtype)
    expected = value.exp().mean(dim=1).log()
    torch.testing.assert_close(F.log_mean_exp(value, dim=1), expected)
    torch.testing.assert_close(
        F.log_mean_exp(value, dim=0, keepdim=True), value.exp().mean(0, True).log()
    )


def _log_mean_exp_gradient_error(log_mean_exp, dtype, offset):
    """Max relative error of the gradient of ``log_mean_exp`` at log-values near ``offset``
    against softmax of the inputs (as represented in ``dtype``) computed in float64."""
    value = (torch.tensor([[0.0, math.log(3.0), -2.0]], dtype=dtype) + offset).requires_grad_()
    (grad,) = torch.autograd.grad(log_mean_exp(value).sum(), value)
    expected = torch.softmax(value.detach().double(), dim=1)
    return ((grad.double() - expected) / expected).abs().max().item()


@pytest.mark.parametrize("offset", [-1e4, -1000.0, 1000.0, 1e4])
def test_log_mean_exp_is_stable_for_extreme_values(dtype, offset):
    value = torch.tensor([[0.0, math.log(3.0), -2.0]], dtype=dtype) + offset
    result = F.log_mean_exp(value, dim=1)
    # Expected value from the inputs as represented in this dtype, computed in float64 by hand.
    gaps = (value[0] - value[0, 0]).double()
    expected = value[0, 0].double() + torch.log(gaps.exp().mean())
    assert torch.isfinite(result).all()
    torch.testing.assert_close(result, expected.reshape(1).to(dtype))
    # The weights (gradient) are exact to a few ulps, whatever the offset.
    assert _log_mean_exp_gradient_error(F.log_mean_exp, dtype, offset) < 8 * torch.finfo(dtype).eps


def test_gradient_precision_check_fails_on_logsumexp_backward():
    """Twin: logsumexp's backward exp(value - result) carries the rounding of result ≈ 1e4."""

    def naive(value):
        return torch.logsumexp(value, dim=1) - math.log(value.shape[1])

    assert (
        _log_mean_exp_gradient_error(naive, torch.float32, 1e4) > 8 * torch.finfo(torch.float32).eps
    )


def test_log_mean_exp_of_all_minus_infinity_is_minus_infinity():
    value = torch.full((2, 3), -math.inf)
    assert (F.log_mean_exp(value, dim=1) == -math.inf).all()


def test_leave_one_out_matches_loop():
    log_w = torch.randn(2, 5, dtype=torch.float64)
    expected = torch.empty_like(log_w)
    for b in range(2):
        for j in range(5):
            others = torch.cat([log_w[b, :j], log_w[b, j + 1 :]])
            replaced = torch.cat([others, others.mean().reshape(1)])
            expected[b, j] = replaced.exp().mean().log()
    torch.testing.assert_close(F.leave_one_out_log_mean_exp(log_w), expected)


def test_leave_one_out_needs_two_samples():
    with pytest.raises(ValueError, match="n_samples must be >= 2"):
        F.leave_one_out_log_mean_exp(torch.zeros(3, 1))


# ---------------------------------------------------------------------------------------------
# values: every surrogate reports the loss it stands for

IWAE_VALUED = [F.iwae_loss, F.dreg_loss, F.vimco_loss, F.pwake_loss]


@pytest.mark.parametrize("loss_fn", IWAE_VALUED, ids=lambda f: f.__name__)
def test_iwae_valued_losses_report_negative_iwae_bound(loss_fn, dtype):
    log_q, log_p = random_inputs(dtype)
    expected = -(log_p - log_q).exp().mean(-1).log().mean()
    torch.testing.assert_close(loss_fn(log_q, log_p), expected)


def test_elbo_valued_losses_report_negative_elbo(dtype):
    log_q, log_p = random_inputs(dtype)
    expected = -(log_p - log_q).mean()
    torch.testing.assert_close(F.elbo_loss(log_q, log_p), expected)
    torch.testing.assert_close(F.score_function_elbo_loss(log_q, log_p, 2.0), expected)
    torch.testing.assert_close(
        F.iwae_loss(log_q[:, :1], log_p[:, :1]), F.elbo_loss(log_q[:, :1], log_p[:, :1])
    )


def test_analytic_kl_elbo_value():
    log_likelihood = torch.tensor([[-1.0, -3.0], [-2.0, -2.0]])
    kl = torch.tensor([0.5, 1.5])
    torch.testing.assert_close(F.elbo_loss_analytic_kl(log_likelihood, kl), torch.tensor(3.0))


def test_qwake_and_qsleep_values():
    log_q, log_p = random_inputs()
    weights = torch.softmax(log_p - log_q, -1)
    torch.testing.assert_close(F.qwake_loss(log_q, log_p), -(weights * log_q).sum(-1).mean())
    torch.testing.assert_close(F.qsleep_loss(log_q), -log_q.mean())


@pytest.mark.parametrize(
    "loss_fn", [*IWAE_VALUED, F.elbo_loss, F.qwake_loss], ids=lambda f: f.__name__
)
def test_reductions(loss_fn):
    log_q, log_p = random_inputs()
    per_datapoint = loss_fn(log_q, log_p, reduction="none")
    assert per_datapoint.shape == (BATCH,)
    torch.testing.assert_close(loss_fn(log_q, log_p, reduction="sum"), per_datapoint.sum())
    torch.testing.assert_close(loss_fn(log_q, log_p), per_datapoint.mean())
    with pytest.raises(ValueError, match="reduction must be one of"):
        loss_fn(log_q, log_p, reduction="max")


# ---------------------------------------------------------------------------------------------
# gradients with respect to log_q and log_p, against the estimators' formulas


def weights_of(log_q, log_p):
    return torch.softmax((log_p - log_q).detach(), -1)


def expected_iwae(log_q, log_p):
    w = weights_of(log_q, log_p)
    return w / BATCH, -w / BATCH


def expected_dreg(log_q, log_p):
    w = weights_of(log_q, log_p)
    return w**2 / BATCH, -(w**2) / BATCH


def expected_vimco(log_q, log_p):
    log_w = (log_p - log_q).detach()
    w = weights_of(log_q, log_p)
    signal = torch.empty_like(log_w)
    for j in range(
        K
    ):  # log L̂ − log L̂₋ⱼ, with the j-th weight replaced by the others' geometric mean
        replaced = log_w.clone()
        replaced[:, j] = torch.cat([log_w[:, :j], log_w[:, j + 1 :]], 1).mean(1)
        signal[:, j] = log_w.exp().mean(1).log() - replaced.exp().mean(1).log()
    return (w - signal) / BATCH, -w / BATCH


def expected_pwake(log_q, log_p):
    return torch.zeros_like(log_q), -weights_of(log_q, log_p) / BATCH


def expected_qwake(log_q, log_p):
    return -weights_of(log_q, log_p) / BATCH, torch.zeros_like(log_p)


def expected_elbo(log_q, log_p):
    return torch.full_like(log_q, 1 / (BATCH * K)), torch.full_like(log_p, -1 / (BATCH * K))


BASELINE = 0.7


def expected_score_function(log_q, log_p):
    signal = (log_p - log_q).detach() - BASELINE
    return (1 - signal) / (BATCH * K), torch.full_like(log_p, -1 / (BATCH * K))


GRADIENT_EXAMPLES = {
    "iwae": (F.iwae_loss, expected_iwae),
    "dreg": (F.dreg_loss, expected_dreg),
    "vimco": (F.vimco_loss, expected_vimco),
    "pwake": (F.pwake_loss, expected_pwake),
    "qwake": (F.qwake_loss, expected_qwake),
    "elbo": (F.elbo_loss, expected_elbo),
    "score_function_elbo": (
        lambda log_q, log_p: F.score_function_elbo_loss(log_q, log_p, BASELINE),
        expected_score_function,
    ),
}


def test_gradient_examples_cover_every_loss():
    losses = {name for name in F.__all__ if "_loss" in name}
    covered = {f"{name}_loss" for name in GRADIENT_EXAMPLES} | {
        "elbo_loss_analytic_kl",  # no estimator: plain autograd of kl − mean log-likelihood
        "qsleep_loss",  # plain autograd of −mean log q
    }
    assert losses == covered


@pytest.mark.parametrize("name", list(GRADIENT_EXAMPLES))
def test_gradient_with_respect_to_log_densities(name):
    loss_fn, expected_fn = GRADIENT_EXAMPLES[name]
    log_q, log_p = random_inputs()
    grad_q, grad_p = input_grads(loss_fn(log_q, log_p), log_q, log_p)
    expected_q, expected_p = expected_fn(log_q, log_p)
    torch.testing.assert_close(grad_q, expected_q)
    torch.testing.assert_close(grad_p, expected_p)


def test_gradient_check_fails_on_wrong_formula():
    """Twin: DReG's gradient is not IWAE's, so the check above tells them apart."""
    log_q, log_p = random_inputs()
    grad_q, _ = input_grads(F.dreg_loss(log_q, log_p), log_q, log_p)
    assert not torch.allclose(grad_q, expected_iwae(log_q, log_p)[0])


# ---------------------------------------------------------------------------------------------
# argument checks


@pytest.mark.parametrize(
    "loss_fn", [*IWAE_VALUED, F.elbo_loss, F.qwake_loss, F.score_function_elbo_loss]
)
def test_shape_mismatch_is_rejected(loss_fn):
    with pytest.raises(ValueError, match="must both have shape"):
        loss_fn(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="must both have shape"):
        loss_fn(torch.zeros(6), torch.zeros(6))


def test_one_dimensional_baseline_is_rejected():
    with pytest.raises(ValueError, match="baseline must be a scalar or broadcastable"):
        F.score_function_elbo_loss(torch.zeros(3, 3), torch.zeros(3, 3), torch.zeros(3))


def test_analytic_kl_shapes_are_checked():
    with pytest.raises(ValueError, match="kl \\(batch_size,\\)"):
        F.elbo_loss_analytic_kl(torch.zeros(2, 3), torch.zeros(3))
