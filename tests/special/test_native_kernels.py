"""The fused CPU kernels (special/csrc/kernels.cpp) against the pure-torch kernels they replace.

Both paths do the same arithmetic; they differ only in rounding (FMA and operation order inside
ATen's ops, and the fused node loops' own exp/expm1, within 2-3 ulps of Sleef's), so they must
agree to a few units in the last place of the terms that the final combination adds: for Gamma
``d log x/da = m1 ∓ (log x - ψ(a)) m0`` with ``m0 = min(P, Q) / (x p(x))``, and the exponent of each
node's term, of size ~√a, also cancels (a relative rounding of ``ε √a`` in every term); for Beta
``x ((log x - ψ(a) + ψ(a+b)) m0 - m1)`` with ``x m0`` the mass of the tail it integrates over
``p(x)`` and the three ψ as large as ``1/min(a, b)``. Near the mode these terms cancel, so a bound
relative to the result alone would not be about rounding. The oracle suite (tests/implicit) runs
through the fused path; ``test_torch_path_matches_oracle`` keeps the fallback checked against
mpmath too.
"""

from __future__ import annotations

import math

import pytest
import scipy.special
import torch

import stochgrad.implicit as irt
from stochgrad.special import _native, beta_grad, standard_gamma_log_grad
from stochgrad.special import beta as special_beta
from stochgrad.special import gamma as special_gamma

# Rounding differences measured on these grids, in ulps of the scales below: Gamma up to 3.7
# (float64, a = 0.05), Beta up to 1.5 (float64, (0.005, 0.3)).
ULPS = 8
GAMMA_CONCENTRATIONS = [1e-3, 0.05, 0.5, 1.0, 2.5, 3.0, 5.0, 10.0, 20.0, 30.0, 500.0, 1e4, 1e8,
                        1e15]  # fmt: skip
BETA_PAIRS = [
    (2.0, 3.0), (0.1, 0.1), (1e-3, 2.0), (2.0, 1e-3), (0.005, 0.3), (50.0, 0.5), (0.5, 50.0),
    (1.0, 1.0), (1e3, 1e3), (1e4, 1e-3), (30.0, 7.0),
]  # fmt: skip
SIZE = 4099  # not a multiple of any vector width: the padded last group is exercised
# Tests of the kernels' own functions: skipped without them (STOCHGRAD_NATIVE=0, no compiler);
# test_fused_kernels_are_built fails instead wherever they should have been built.
NEEDS_KERNELS = pytest.mark.skipif(not _native.available(), reason="needs the fused kernels")


@pytest.fixture
def torch_path(monkeypatch):
    """Run the pure-torch kernels inside the test."""

    def use_torch_path():
        monkeypatch.setattr(_native, "usable", lambda *tensors: False)

    return use_torch_path


def test_fused_kernels_are_built():
    """On CPU the fused kernels must load wherever g++ and ninja exist (CI has both)."""
    assert _native.available()
    assert _native.usable(torch.ones(3), torch.ones(3))
    assert not _native.usable(torch.ones(3, dtype=torch.float16))


def _gamma_scale(a: torch.Tensor, log_x: torch.Tensor) -> torch.Tensor:
    a64, log_x64 = a.double(), log_x.double()
    x = log_x64.exp()
    tail = torch.minimum(torch.special.gammainc(a64, x), torch.special.gammaincc(a64, x))
    log_density = (a64 - 1) * log_x64 - x - torch.lgamma(a64)
    m0 = tail / (x * log_density.exp())
    return m0 * (log_x64 - torch.digamma(a64)).abs()


def _gamma_error_in_ulps(fused, reference, a, log_x):
    """``|fused - reference|`` in ulps of the combined terms, times the exponent's size ~√a."""
    scale = (reference.double().abs() + _gamma_scale(a, log_x)) * (1 + a.double().sqrt())
    return (fused.double() - reference.double()).abs() / (scale * torch.finfo(a.dtype).eps)


def _gamma_both(a, log_x, torch_path):
    fused = standard_gamma_log_grad(a, log_x)
    torch_path()
    return fused, standard_gamma_log_grad(a, log_x)


@pytest.mark.parametrize("concentration", GAMMA_CONCENTRATIONS)
def test_gamma_fused_matches_torch_path(concentration, dtype, torch_path):
    torch.manual_seed(0)
    a = torch.full((SIZE,), concentration, dtype=dtype)
    log_x = torch._standard_gamma(a.double()).clamp_min(1e-300).log().to(dtype)
    fused, reference = _gamma_both(a, log_x, torch_path)
    assert _gamma_error_in_ulps(fused, reference, a, log_x).max().item() <= ULPS


@NEEDS_KERNELS
def test_gamma_runs_of_changing_concentrations_match_each_value_alone(dtype):
    """Runs of 16 equal concentrations fill whole groups of lanes (8 or 16 wide), whose
    a-dependent values the kernel keeps while a repeats (across the a < 10 / a >= 10 branches):
    each element must get what a tensor of its value alone gives, bit for bit."""
    torch.manual_seed(0)
    values = torch.tensor([2.0, 50.0, 2.0, 7.0, 0.3, 50.0], dtype=dtype)
    a = values.repeat_interleave(16).repeat(64)
    log_x = torch._standard_gamma(a.double()).clamp_min(1e-300).log().to(dtype)
    mixed = standard_gamma_log_grad(a, log_x)
    for value in values.unique():
        where = a == value
        assert torch.equal(mixed[where], standard_gamma_log_grad(a[where], log_x[where]))


def test_gamma_shorter_rule_fails_the_agreement_check(dtype, torch_path, monkeypatch):
    """Twin: the torch path with one node fewer than the rule differs by far more than ULPS."""
    torch.manual_seed(0)
    a = torch.full((SIZE,), 1.0, dtype=dtype)
    log_x = torch._standard_gamma(a).clamp_min(1e-30).log()
    fused = standard_gamma_log_grad(a, log_x)
    torch_path()
    tiers = special_gamma._TIERS[dtype]
    nodes = len(tiers[0][1][0]) - 1
    shorter = ((0.0, (*special_gamma.gauss_legendre(nodes), tiers[0][1][2])),)
    monkeypatch.setitem(special_gamma._TIERS, dtype, shorter)
    reference = standard_gamma_log_grad(a, log_x)
    assert _gamma_error_in_ulps(fused, reference, a, log_x).max().item() > 10 * ULPS


def _beta_scale(a, b, x, grad_a, grad_b):
    a64, b64, x64 = (t.double().numpy() for t in (a, b, x))
    mass = torch.from_numpy(scipy.special.betainc(a64, b64, x64))
    x64 = torch.from_numpy(x64)
    a64, b64 = torch.from_numpy(a64), torch.from_numpy(b64)
    log_density = (
        (a64 - 1) * x64.log()
        + (b64 - 1) * torch.log1p(-x64)
        - (torch.lgamma(a64) + torch.lgamma(b64) - torch.lgamma(a64 + b64))
    )
    on_form = torch.where(special_beta._mirror(a64, b64, x64), 1 - mass, mass)
    lower = on_form / log_density.exp()  # x m0 on the form the kernels use
    centred = x64.log().abs() + torch.log1p(-x64).abs() + torch.digamma(a64 + b64).abs()
    centred = centred + torch.digamma(a64).abs() + torch.digamma(b64).abs()
    scale = lower * centred
    return grad_a.double().abs() + scale, grad_b.double().abs() + scale


@pytest.mark.parametrize(("a", "b"), BETA_PAIRS)
def test_beta_fused_matches_torch_path(a, b, dtype, torch_path):
    torch.manual_seed(0)
    ca = torch.full((SIZE,), a, dtype=dtype)
    cb = torch.full((SIZE,), b, dtype=dtype)
    eps = torch.finfo(dtype).eps
    x = torch.distributions.Beta(ca.double(), cb.double()).sample().to(dtype)
    x = x.clamp(torch.finfo(dtype).tiny, 1 - eps / 2)
    fused = beta_grad(ca, cb, x)
    torch_path()
    reference = beta_grad(ca, cb, x)
    for f, r, scale in zip(fused, reference, _beta_scale(ca, cb, x, *reference), strict=True):
        error = (f.double() - r.double()).abs() / (scale * eps)
        assert error.max().item() <= ULPS


def test_beta_complement_is_used(dtype, torch_path):
    """An explicit ``1 - x`` (more precise than rounding it) reaches both paths alike."""
    a = torch.full((9,), 3.0, dtype=dtype)
    b = torch.full((9,), 1e3, dtype=dtype)
    x = torch.linspace(1e-4, 1e-2, 9, dtype=dtype)
    complement = (1 - x.double()).to(dtype)
    fused = beta_grad(a, b, x, complement)
    torch_path()
    reference = beta_grad(a, b, x, complement)
    for f, r in zip(fused, reference, strict=True):
        torch.testing.assert_close(f, r, rtol=64 * torch.finfo(dtype).eps, atol=0)


@NEEDS_KERNELS
def test_inline_exp_and_expm1_are_within_two_ulps(dtype):
    """The node loops' own exp/expm1 against float64 references, over the whole finite range.

    Relative error <= 1.5 eps (float32, against float64) or 2 eps (float64, against torch's
    Sleef, itself within 1 ulp), i.e. about 2-3 ulps; documented limits at both ends.
    """
    lo, hi = (-708.0, 709.0) if dtype == torch.float64 else (-87.0, 88.0)
    small = torch.logspace(-30, 0, 3001, dtype=torch.float64)
    y = torch.cat([torch.linspace(lo, hi, 100_003, dtype=torch.float64), small, -small])
    y = torch.cat([y, torch.linspace(-1, 1, 20_001, dtype=torch.float64)]).to(dtype)
    exp, expm1 = torch.ops.stochgrad_special.exp_expm1(y)
    bound = (2.0 if dtype == torch.float64 else 1.5) * torch.finfo(dtype).eps
    for ours, reference in ((exp, torch.exp(y.double())), (expm1, torch.expm1(y.double()))):
        assert ((ours.double() - reference).abs() / reference.abs()).max().item() <= bound
    # Twin: expm1 as exp(y) - 1 loses the small arguments and fails the same bound.
    naive = torch.exp(y) - 1
    reference = torch.expm1(y.double())
    assert ((naive.double() - reference).abs() / reference.abs()).max().item() > 1e3 * bound
    special = torch.tensor([math.nan, math.inf, -math.inf, 1e4, -1e4], dtype=dtype)
    exp, expm1 = torch.ops.stochgrad_special.exp_expm1(special)
    assert exp[0].isnan() and expm1[0].isnan()
    assert exp[1] == math.inf and expm1[1] == math.inf and exp[3] == math.inf
    assert 0 <= exp[2].item() <= 4 * torch.finfo(dtype).tiny and expm1[2] == -1 and expm1[4] == -1


def _assert_inline_log1p_within_one_ulp(u):
    """The kernels' float64 log1p at ``u`` within 1.5 ulps of mpmath; twin: log(1 + u) without
    the rounding correction fails that bound."""
    import mpmath

    ours = torch.ops.stochgrad_special.log1p_nonnegative(u)
    with mpmath.workdps(40):
        reference = torch.tensor([float(mpmath.log1p(v)) for v in u.tolist()], dtype=u.dtype)
    eps = torch.finfo(torch.float64).eps
    assert ((ours - reference).abs() / reference.abs()).max().item() <= 1.5 * eps
    naive = torch.log(1 + u)
    assert ((naive - reference).abs() / reference.abs()).max().item() > 1e3 * eps


@NEEDS_KERNELS
def test_inline_log1p_is_within_one_ulp():
    """The float64 Beta node loop's log1p (u >= 0) against mpmath, from subnormal to huge u."""
    u = torch.cat([torch.logspace(-320, 308, 1201, dtype=torch.float64),
                   torch.linspace(0, 4, 801, dtype=torch.float64)[1:],
                   torch.tensor([2.0**53, 2.0**54 + 4, 1e300], dtype=torch.float64)])  # fmt: skip
    _assert_inline_log1p_within_one_ulp(u)
    special = torch.tensor([math.nan, math.inf, 0.0], dtype=torch.float64)
    out = torch.ops.stochgrad_special.log1p_nonnegative(special)
    assert out[0].isnan() and out[1] == math.inf and out[2] == 0


@NEEDS_KERNELS
def test_inline_log1p_is_within_one_ulp_down_to_minus_one_half():
    """The same log1p serves the Gamma kernel's log(x/a) = log1p((x - a)/a) on [-0.5, 1]."""
    u = torch.cat([-torch.logspace(-320, math.log10(0.5), 1201, dtype=torch.float64),
                   torch.linspace(-0.5, 0, 801, dtype=torch.float64)[:-1]])  # fmt: skip
    _assert_inline_log1p_within_one_ulp(u)


def test_special_values_match_torch_path(dtype, torch_path):
    """NaN parameters or samples give NaN in the same places; broadcast inputs; empty inputs."""
    a = torch.tensor([0.5, math.nan, 2.0, 30.0, 1e4, 7.0, 0.3, 1.0, 1.5], dtype=dtype)
    log_x = torch.tensor([-1.0, 0.0, math.nan, 3.4, 9.2, 1.9, -700.0, 0.0, 0.4], dtype=dtype)
    beta_x = torch.tensor([0.3, 0.5, math.nan, 0.9, 0.99, 0.1, 1e-30, 0.5, 0.5], dtype=dtype)
    fused_gamma = standard_gamma_log_grad(a, log_x)
    fused_beta = beta_grad(a, a.flip(0), beta_x)
    fused_broadcast = standard_gamma_log_grad(torch.tensor(2.0, dtype=dtype), log_x)
    fused_empty = standard_gamma_log_grad(a[:0], log_x[:0])
    torch_path()
    for fused, reference in [
        (fused_gamma, standard_gamma_log_grad(a, log_x)),
        *zip(fused_beta, beta_grad(a, a.flip(0), beta_x), strict=True),
        (fused_broadcast, standard_gamma_log_grad(torch.tensor(2.0, dtype=dtype), log_x)),
    ]:
        assert torch.equal(fused.isnan(), reference.isnan())
        finite = ~reference.isnan()
        torch.testing.assert_close(fused[finite], reference[finite], rtol=1e-4, atol=0)
    assert fused_empty.shape == (0,)


def test_beta_nan_concentration_keeps_the_full_rule_on_both_paths(torch_path):
    """A NaN concentration anywhere selects the first (longest) rule for the others, on both
    paths: the torch path took min(a_min, b_min) with Python's min, which drops a NaN in b and
    gave b = 1e-3 the 24-node rule of a = 2 (3.4e-6 off in dz/db)."""
    a = torch.full((16,), 2.0, dtype=torch.float64)
    b = torch.tensor([math.nan, 1e-3] * 8, dtype=torch.float64)
    x = torch.tensor([0.5, 1 - 1e-12] * 8, dtype=torch.float64)
    alone = beta_grad(a[1:2], b[1:2], x[1:2])  # the element without the NaN beside it
    fused = beta_grad(a, b, x)
    torch_path()
    reference = beta_grad(a, b, x)
    for grads in (fused, reference):
        for grad, single in zip(grads, alone, strict=True):
            assert grad[0].isnan()
            torch.testing.assert_close(grad[1::2], single.expand(8), rtol=1e-13, atol=0)


@pytest.mark.parametrize(
    ("family", "params"),
    [("gamma", (0.05,)), ("gamma", (3.5,)), ("gamma", (40.0,)), ("gamma", (1e8,)),
     ("gamma", (1e15,)), ("beta", (0.05, 2.0))],
)  # fmt: skip
def test_torch_path_matches_oracle(family, params, dtype, torch_path):
    """The fallback stays within the accuracy targets (1e-10 / 1e-4) on its own."""
    from tests.special import oracle

    torch_path()
    torch.manual_seed(0)
    tol = {torch.float64: 1e-10, torch.float32: 1e-4}[dtype]
    if family == "gamma":
        alpha = torch.full((6,), params[0], dtype=dtype, requires_grad=True)
        z = irt.Gamma(alpha, torch.ones((), dtype=dtype)).rsample()
        z.sum().backward()
        pairs = [
            (g, oracle.gamma_dz_dconcentration(params[0], v))
            for g, v in zip(alpha.grad.tolist(), z.tolist(), strict=True)
        ]
    else:
        c1 = torch.full((6,), params[0], dtype=dtype, requires_grad=True)
        c0 = torch.full((6,), params[1], dtype=dtype, requires_grad=True)
        z = irt.Beta(c1, c0).rsample()
        z.sum().backward()
        refs = [oracle.beta_dz_dconcentrations(*params, v) for v in z.tolist()]
        pairs = [(g, r[0]) for g, r in zip(c1.grad.tolist(), refs, strict=True)]
        pairs += [(g, r[1]) for g, r in zip(c0.grad.tolist(), refs, strict=True)]
    assert max(abs(g - r) / abs(r) for g, r in pairs if r != 0) <= tol
