"""The deterministic numerics in stochgrad.special: values vs scipy, gradcheck, transforms."""

import pytest
import torch

from stochgrad.special import betainc, gammainc, standard_gamma_grad

scipy_special = pytest.importorskip("scipy.special")
scipy_stats = pytest.importorskip("scipy.stats")


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

    # Argument validation is a data-dependent branch (a graph break in torch's own classes too);
    # torch turns it off globally at its first compile, which only the first test to compile sees.
    def mean_of_samples(a):
        return irt.Beta(a, torch.tensor(2.0), validate_args=False).rsample((256,)).mean()

    grads = torch.func.vmap(torch.func.grad(mean_of_samples), randomness="different")(
        torch.tensor([1.0, 2.0, 3.0])
    )
    assert grads.shape == (3,) and torch.isfinite(grads).all()
    explanation = torch._dynamo.explain(mean_of_samples)(torch.tensor(2.0, requires_grad=True))
    assert explanation.graph_break_count == 0


def _gamma_grad_under(dtype, tier_table, a, x):
    """standard_gamma_grad with ``_TIERS[dtype]`` replaced by ``tier_table`` for the call."""
    from stochgrad.special import gamma as special_gamma

    saved = special_gamma._TIERS[dtype]
    special_gamma._TIERS[dtype] = tier_table
    special_gamma._native_rules.cache_clear()
    try:
        return standard_gamma_grad(a, x)
    finally:
        special_gamma._TIERS[dtype] = saved
        special_gamma._native_rules.cache_clear()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gamma_rule_tiers_agree_with_the_full_rule(dtype):
    # A block whose smallest concentration is >= 3 (or >= 30) uses a shorter rule; mixing in one
    # small concentration forces the full rule on the same elements (the torch path's block; the
    # fused kernel picks the rule per group of lanes, so there only on the last group), and so
    # does a tier table holding the full rule alone. All must agree to within the accuracy each
    # rule was sized for.
    from stochgrad.special import gamma as special_gamma

    torch.manual_seed(0)
    # (1e8 .. 1e20 with 0.5 in the block: log x - ψ(a) in float64 from x itself.)
    a = torch.tensor([3.0, 7.0, 30.0, 80.0, 500.0, 1e4, 1e8, 1e15, 1e20], dtype=dtype)
    a = a.repeat_interleave(50)
    x = torch._standard_gamma(a)
    tiered = standard_gamma_grad(a, x)
    full = standard_gamma_grad(torch.cat([a, a.new_tensor([0.5])]), torch.cat([x, x[:1]]))[:-1]
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(tiered, full, rtol=rtol, atol=0)
    full_only = special_gamma._TIERS[dtype][:1]
    full = _gamma_grad_under(dtype, full_only, a, x)
    torch.testing.assert_close(tiered, full, rtol=rtol, atol=0)


def _gamma_tier_error(tiers):
    """Largest relative difference of float64 standard_gamma_grad under ``tiers`` from the full
    32-node rule, next to the mode (quantiles 0.3-0.7), where shorter rules err most."""
    from stochgrad.special import gamma as special_gamma

    a = torch.tensor([3.0, 3.2, 3.4, 3.6, 3.8, 4.0, 4.25, 4.5, 5.0, 8.0, 29.9, 30.0, 300.0])
    quantiles = torch.linspace(0.3, 0.7, 9)
    a, q = torch.cartesian_prod(a, quantiles).double().unbind(1)
    x = torch.tensor(scipy_stats.gamma.ppf(q.numpy(), a.numpy()))
    tiered = _gamma_grad_under(torch.float64, tiers, a, x)
    full = _gamma_grad_under(torch.float64, special_gamma._TIERS[torch.float64][:1], a, x)
    return ((tiered - full) / full).abs().max().item()


@pytest.mark.parametrize("path", ["fused", "torch"])
def test_gamma_float64_tiers_hold_their_accuracy_next_to_the_mode(monkeypatch, path):
    # The full rule is within ~2e-14 of the mpmath oracle there (special/gamma.py).
    from stochgrad.special import _native
    from stochgrad.special import gamma as special_gamma

    if path == "torch":
        monkeypatch.setattr(_native, "usable", lambda *tensors: False)
    tiers = special_gamma._TIERS[torch.float64]
    assert _gamma_tier_error(tiers) <= 3e-12
    # Twin: the 24-node rule from a = 3 (as before 0.2.0) erred by 1.6e-11 for a in [3, 4).
    old = tuple(tier for tier in tiers if tier[0] != 3.0)
    old = tuple((3.0 if low == 4.5 else low, rule) for low, rule in old)
    assert _gamma_tier_error(old) > 3e-12


# Per float64 Beta tier: (a, b) pairs at and above its smallest concentration m = min(a, b). The
# quadrature error of each tier, measured against a 128-node rule, is <= 1.4e-13 (special/beta.py).
BETA_TIER_PAIRS = [
    (1e-3, 1e-3), (1e-3, 2.0), (5e-3, 0.3),  # 44 nodes
    (0.01, 0.01), (0.01, 0.35), (0.01, 3.0), (0.02, 5.0),  # 36
    (0.05, 0.05), (0.05, 3.0), (0.1, 0.1), (0.05, 1e3), (0.2, 0.5),  # 32
    (0.35, 0.35), (0.35, 1e4), (0.5, 3.0),  # 28
    (1.0, 1.0), (1.0, 1e4), (2.0, 3.0), (1e4, 1e4), (1e6, 1e6), (1e6, 1e8),  # 24
]  # fmt: skip
BETA_TIER_QUANTILES = [1e-6, 1e-3, 0.03, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97, 0.999, 1 - 1e-6]


def _beta_tier_error(monkeypatch, tiers):
    """Largest relative difference of beta_grad under ``tiers`` from a 96-node rule (one call per
    pair: the fused kernel picks the tier per group of lanes)."""
    from stochgrad.special import beta as special_beta
    from stochgrad.special._quadrature import gauss_legendre

    def grad(tier_table, inputs):
        monkeypatch.setattr(special_beta, "_DOUBLE_PRECISION_TIERS", tier_table)
        special_beta._native_tiers.cache_clear()
        try:
            return special_beta.beta_grad(*inputs)
        finally:
            special_beta._native_tiers.cache_clear()

    long_rule = ((0.0, (*gauss_legendre(96), 46.0)),)
    worst = 0.0
    for a, b in BETA_TIER_PAIRS:
        points = []
        for q in BETA_TIER_QUANTILES:
            x = scipy_special.betaincinv(a, b, q)
            xc = scipy_special.betaincinv(b, a, 1 - q)  # 1 - x without rounding it
            if 0 < x < 1 and 0 < xc < 1:
                points.append((a, b, x, xc))
        inputs = torch.tensor(points, dtype=torch.float64).unbind(1)
        pairs = zip(grad(tiers, inputs), grad(long_rule, inputs), strict=True)
        worst = max(worst, *(((t - r) / r).abs().max().item() for t, r in pairs))
    return worst


@pytest.mark.parametrize("path", ["fused", "torch"])
def test_beta_rule_tiers_agree_with_a_long_rule(monkeypatch, path):
    from stochgrad.special import _native
    from stochgrad.special import beta as special_beta
    from stochgrad.special._quadrature import gauss_legendre

    if path == "torch":
        monkeypatch.setattr(_native, "usable", lambda *tensors: False)
    tiers = special_beta._DOUBLE_PRECISION_TIERS
    assert _beta_tier_error(monkeypatch, tiers) <= 2e-13
    # Twin: each tier four nodes shorter fails the same bound.
    for index, (low, (nodes, _, cutoff)) in enumerate(tiers):
        shorter = list(tiers)
        shorter[index] = (low, (*gauss_legendre(len(nodes) - 4), cutoff))
        assert _beta_tier_error(monkeypatch, tuple(shorter)) > 2e-13, low


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


def test_special_functions_accept_inputs_that_require_grad():
    # The results are values (no second derivatives); inputs that require grad must not break
    # the in-place kernels.
    a = torch.tensor([0.5, 12.0], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([0.3, 11.0], dtype=torch.float64, requires_grad=True)
    expected = standard_gamma_grad(a.detach(), x.detach())
    torch.testing.assert_close(standard_gamma_grad(a, x), expected, rtol=0, atol=0)
    from stochgrad.special import beta_grad

    b = torch.tensor([3.0, 2.0], dtype=torch.float64)
    z = torch.tensor([0.4, 0.9], dtype=torch.float64)
    for got, want in zip(beta_grad(a, b, z), beta_grad(a.detach(), b, z), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_gammainc_far_in_the_upper_tail_is_finite():
    a = torch.tensor([2.0, 40.0], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([1e20, 1e160], dtype=torch.float64)
    value = gammainc(a, x)
    assert value.detach().eq(1).all()
    value.sum().backward()
    assert torch.isfinite(a.grad).all()


def test_standard_gamma_grad_nan_sample_gives_nan_and_subnormal_keeps_its_log():
    a = torch.tensor([1e-3, 1e-3, 2.0], dtype=torch.float64)
    x = torch.tensor([5e-324, float("nan"), 0.0], dtype=torch.float64)
    grad = standard_gamma_grad(a, x)
    assert grad[1].isnan() and grad[2] == 0
    # dx/da = x · d log x/da with d log x/da ≈ -log(x)/a-scale: compare with a float64 oracle
    from tests.special import oracle

    reference = oracle.gamma_dz_dconcentration(1e-3, 5e-324)
    assert abs(grad[0].item() - reference) <= 1e-6 * abs(reference)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(dtype):
    a = torch.tensor([0.5, 3.0, 40.0], dtype=dtype)
    x = torch.tensor([0.2, 2.5, 44.0], dtype=dtype)
    got = standard_gamma_grad(a, x)
    assert got.dtype == dtype
    want = standard_gamma_grad(a.float(), x.float())
    # the half-precision log x and product x · d log x/da round once each
    torch.testing.assert_close(got.float(), want, rtol=3 * torch.finfo(dtype).eps, atol=0)


def test_vmap_over_the_sample_with_a_fixed_concentration():
    a = torch.tensor(2.0, dtype=torch.float64)
    x = torch.tensor([0.5, 1.5, 4.0], dtype=torch.float64)
    got = torch.func.vmap(lambda xi: standard_gamma_grad(a, xi))(x)
    torch.testing.assert_close(got, standard_gamma_grad(a.expand(3), x), rtol=1e-12, atol=0)


@pytest.mark.slow
def test_compiled_float32_gamma_gradient_keeps_the_accuracy_target():
    # Inductor's vectorized float32 expm1 is exp(x) - 1 (pytorch/pytorch#189803); the kernel
    # computes float32 in float64 under torch.compile. Before that: 3.5e-4 at a = 1e4.
    import stochgrad.implicit as irt
    from tests.special import oracle

    alpha = torch.full((16,), 1e4, requires_grad=True)
    torch.manual_seed(0)
    z = torch.compile(lambda c: irt.Gamma(c, torch.ones(())).rsample())(alpha)
    z.sum().backward()
    refs = [oracle.gamma_dz_dconcentration(1e4, v) for v in z.tolist()]
    errors = [abs(g - r) / abs(r) for g, r in zip(alpha.grad.tolist(), refs, strict=True)]
    assert max(errors) <= 1e-4


def test_expm1_excess_matches_mpmath(dtype):
    """``e^u - 1 - u`` to a few ulps relative, across the series/direct switch at ln(2)/2."""
    from stochgrad.special.elementary import expm1_excess

    mp = pytest.importorskip("mpmath")
    # |u| >= 1e-15: u² stays normal in float32 (below, the result underflows gracefully)
    small = torch.logspace(-15, 0, 301, dtype=torch.float64)
    u = torch.cat([small, -small, torch.linspace(-20, 20, 801, dtype=torch.float64)])
    u = u[u != 0].to(dtype)
    with mp.workdps(40):
        exact = [float(mp.expm1(mp.mpf(v)) - mp.mpf(v)) for v in u.tolist()]
    exact = torch.tensor(exact, dtype=torch.float64)
    bound = 8 * torch.finfo(dtype).eps
    relative = ((expm1_excess(u).double() - exact).abs() / exact.abs()).max().item()
    assert relative <= bound
    # Twin: expm1(u) - u cancels for small |u| and fails the same bound.
    naive = ((torch.expm1(u) - u).double() - exact).abs() / exact.abs()
    assert naive.max().item() > 1e3 * bound
