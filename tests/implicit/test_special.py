"""The deterministic numerics in stochgrad.special: values vs scipy, gradcheck, transforms."""

import pytest
import torch

from stochgrad.special import betainc, gammainc, standard_gamma_grad

scipy_special = pytest.importorskip("scipy.special")


def test_betainc_matches_scipy():
    a = torch.tensor([0.5, 2.0, 500.0, 0.01, 3.0, 1e3], dtype=torch.float64)
    b = torch.tensor([0.5, 3.0, 0.5, 2.0, 1e3, 1e3], dtype=torch.float64)
    x = torch.tensor([0.3, 0.4, 0.999, 1e-5, 0.003, 0.51], dtype=torch.float64)
    expected = torch.as_tensor(scipy_special.betainc(a.numpy(), b.numpy(), x.numpy()))
    torch.testing.assert_close(betainc(a, b, x), expected, rtol=1e-12, atol=0)


def test_betainc_gradcheck():
    a = torch.tensor([0.7, 2.0, 5.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.5, 0.6, 8.0], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([0.3, 0.8, 0.4], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(betainc, (a, b, x))


def test_gammainc_gradcheck():
    a = torch.tensor([0.3, 2.0, 40.0], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([0.2, 3.1, 35.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gammainc, (a, x))


def test_standard_gamma_grad_is_zero_at_underflow():
    a = torch.tensor([1e-3, 0.5])
    assert standard_gamma_grad(a, torch.zeros(2)).eq(0).all()


def test_torch_func_and_compile_trace_the_gradient():
    import stochgrad.implicit as irt

    def mean_of_samples(a):
        return irt.Beta(a, torch.tensor(2.0)).rsample((256,)).mean()

    grads = torch.func.vmap(torch.func.grad(mean_of_samples), randomness="different")(
        torch.tensor([1.0, 2.0, 3.0])
    )
    assert grads.shape == (3,) and torch.isfinite(grads).all()
    explanation = torch._dynamo.explain(mean_of_samples)(torch.tensor(2.0, requires_grad=True))
    assert explanation.graph_break_count == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gamma_rule_tiers_agree_with_the_full_rule(dtype):
    # A block whose smallest concentration is >= 3 (or >= 30) uses a shorter rule; mixing in one
    # small concentration forces the full rule on the same elements. Both must agree to within
    # the accuracy each rule was sized for.
    torch.manual_seed(0)
    a = torch.tensor([3.0, 7.0, 30.0, 80.0, 500.0, 1e4], dtype=dtype).repeat_interleave(50)
    x = torch._standard_gamma(a)
    tiered = standard_gamma_grad(a, x)
    full = standard_gamma_grad(torch.cat([a, a.new_tensor([0.5])]), torch.cat([x, x[:1]]))[:-1]
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(tiered, full, rtol=rtol, atol=0)


def test_gamma_kernel_log_minus_digamma_series_matches_torch():
    from stochgrad.special.gamma import _log_minus_digamma

    a = torch.logspace(1, 8, 10_000, dtype=torch.float64)
    expected = torch.log(a) - torch.digamma(a)  # ~1/(2a): loses ~log(a)·eps/(1/2a) at large a
    torch.testing.assert_close(_log_minus_digamma(a[:2000]), expected[:2000], rtol=1e-11, atol=0)
    mp = pytest.importorskip("mpmath")
    for value in (10.0, 37.5, 1e3, 1e6, 1e8):
        with mp.workdps(40):
            exact = float(mp.log(value) - mp.digamma(value))
        got = _log_minus_digamma(torch.tensor(value, dtype=torch.float64)).item()
        assert abs(got - exact) <= 4e-15 * abs(exact)


def test_a_nan_concentration_does_not_change_its_neighbours_gradients():
    a = torch.tensor([0.5, 2.0, 40.0], dtype=torch.float64)
    x = torch.tensor([0.3, 1.7, 41.0], dtype=torch.float64)
    with_nan = standard_gamma_grad(
        torch.cat([a, a.new_tensor([float("nan")])]), torch.cat([x, x[:1]])
    )
    assert with_nan[-1].isnan()
    torch.testing.assert_close(with_nan[:-1], standard_gamma_grad(a, x), rtol=1e-13, atol=0)
