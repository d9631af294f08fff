"""The Gamma sampler (special/sampling.py): its law, moments, randomness source and both paths.

Statistical checks draw ``SIZE`` = 10^5 variates under a fixed seed. Goodness of fit is the
Kolmogorov-Smirnov test against scipy's Gamma CDF. The log draws are tested through
``F(exp(l))``: KS is invariant under the monotone map, and the log draws of tiny
concentrations (``log x ~ -1000``) have no linear twin. A test passes when ``p > P_MIN``. The
twins draw from a concentration 5% too large and must give ``p < P_MIN``. 1% is not enough
here: between Gamma(a) and Gamma(1.01 a) the CDFs differ by at most 0.0035-0.005 for a <= 1,
below the 0.007 that KS resolves at p = 1e-4 with 10^5 draws. 5% gives 0.018-1. A second
twin accepts every proposal (no rejection step) and must fail where the acceptance rate is
visibly below 1 (a + 1 for boosted a < 1, and small a >= 1). Moments are checked within
``Z`` standard errors, each with its closed form; their twin is the same 5% shift.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

import stochgrad.implicit as irt
from stochgrad.special import _native, log_standard_gamma_sample, sampling, standard_gamma_sample

SIZE = 100_000
P_MIN = 1e-4
Z = 5.0
CONCENTRATIONS = [1e-3, 0.1, 0.5, 1.0, 2.5, 5.0, 500.0, 1e6]


@pytest.fixture
def torch_path(monkeypatch):
    """Run the torch twin of the fused pass inside the test."""

    def use_torch_path():
        monkeypatch.setattr(_native, "usable", lambda *tensors: False)

    return use_torch_path


def _log_cdf_of(concentration: float):
    """``l -> P(log X <= l)`` for X ~ Gamma(a), in float64 even where ``exp(l)`` underflows."""

    def cdf(log_x: np.ndarray) -> np.ndarray:
        # Below x = e^-700: P(a, x) = x^a / Γ(a + 1) (1 - O(x)), the series' first term.
        far = log_x < -700
        near = scipy.special.gammainc(concentration, np.exp(np.where(far, 0.0, log_x)))
        tail = np.exp(concentration * np.where(far, log_x, 0.0) - scipy.special.gammaln(
            concentration + 1))  # fmt: skip
        return np.where(far, tail, near)

    return cdf


def _ks_pvalue(concentration: float, dtype: torch.dtype, log_space: bool, law: float) -> float:
    """KS p-value of SIZE draws with concentration ``concentration`` against Gamma(``law``)."""
    torch.manual_seed(12345)
    a = torch.full((SIZE,), concentration, dtype=dtype)
    if log_space:
        draws = log_standard_gamma_sample(a).double().numpy()
        return scipy.stats.kstest(draws, _log_cdf_of(law)).pvalue
    draws = standard_gamma_sample(a).double().numpy()
    return scipy.stats.kstest(draws, scipy.stats.gamma(law).cdf).pvalue


def _linear_cases():
    # Linear draws underflow for small a (float32: 8% below its tiniest normal at a = 1e-3).
    return [a for a in CONCENTRATIONS if a >= 0.1]


@pytest.mark.parametrize("concentration", CONCENTRATIONS)
def test_log_draws_follow_the_gamma_law(concentration, dtype):
    assert _ks_pvalue(concentration, dtype, log_space=True, law=concentration) > P_MIN


@pytest.mark.parametrize("concentration", _linear_cases())
def test_draws_follow_the_gamma_law(concentration, dtype):
    assert _ks_pvalue(concentration, dtype, log_space=False, law=concentration) > P_MIN


@pytest.mark.parametrize("concentration", CONCENTRATIONS)
def test_goodness_of_fit_rejects_a_concentration_off_by_5_percent(concentration, dtype):
    """Twin: draws of Gamma(1.05 a) tested against Gamma(a) must fail, in log and linear form."""
    assert _ks_pvalue(1.05 * concentration, dtype, log_space=True, law=concentration) < P_MIN
    if concentration >= 0.1:
        assert _ks_pvalue(1.05 * concentration, dtype, False, law=concentration) < P_MIN


@pytest.mark.parametrize("concentration", [0.5, 1.0])
def test_goodness_of_fit_rejects_a_sampler_without_its_rejection_step(
    concentration, torch_path, monkeypatch
):
    """Twin: accepting every proposal (a squeeze that always holds) must fail the same test."""
    torch_path()
    monkeypatch.setattr(sampling, "_squeeze_accepts", lambda d, t, u: torch.ones_like(u) > 0)
    assert _ks_pvalue(concentration, torch.float64, True, law=concentration) < P_MIN


def _moment_errors(concentration: float, dtype: torch.dtype, law: float) -> tuple[float, float]:
    """(mean, variance) errors of SIZE draws from Gamma(concentration) against Gamma(law)'s, in
    standard errors: of x for law >= 1, of log x below (E log x = ψ(a), Var log x = ψ'(a)),
    where a 5% shift of a moves the mean of x by only ~5 standard errors at a = 0.1.
    The variance's standard error is √((κ4 + 2 κ2²) / n), κ4 the fourth cumulant."""
    torch.manual_seed(777)
    a = torch.full((SIZE,), concentration, dtype=dtype)
    if law >= 1:
        draws = standard_gamma_sample(a).double()
        mean, variance, kappa4 = law, law, 6 * law
    else:
        draws = log_standard_gamma_sample(a).double()
        mean, variance = scipy.special.digamma(law), scipy.special.polygamma(1, law)
        kappa4 = scipy.special.polygamma(3, law)
    mean_error = (draws.mean().item() - mean) / math.sqrt(variance / SIZE)
    variance_se = math.sqrt((kappa4 + 2 * variance**2) / SIZE)
    return mean_error, (draws.var().item() - variance) / variance_se


@pytest.mark.parametrize("concentration", CONCENTRATIONS)
def test_moments_match_the_closed_form(concentration, dtype):
    mean_error, variance_error = _moment_errors(concentration, dtype, concentration)
    assert abs(mean_error) < Z
    assert abs(variance_error) < Z


@pytest.mark.parametrize("concentration", CONCENTRATIONS)
def test_moments_reject_a_concentration_off_by_5_percent(concentration):
    """Twin: the mean of Gamma(1.05 a) is off by more than Z standard errors at every a."""
    mean_error, _ = _moment_errors(1.05 * concentration, torch.float64, concentration)
    assert abs(mean_error) > Z


def _both_paths(a: torch.Tensor, log_space: bool, torch_path, seed: int = 3):
    torch.manual_seed(seed)
    fused = sampling._sample(a, log_space, None)
    torch_path()
    torch.manual_seed(seed)
    return fused, sampling._sample(a, log_space, None)


def _ulps(fused: torch.Tensor, twin: torch.Tensor, log_space: bool) -> float:
    """|fused - twin| in ulps of the draw's dtype, over |log x| + 1 for the terms whose rounding
    scales with it (log x = log d + 3 log1p(t) + log(U)/a; x = exp of the boost's log(U)/a)."""
    eps = torch.finfo(twin.dtype).eps
    fused, twin = fused.double(), twin.double()
    log_x = twin if log_space else twin.log()
    scale = (1 + log_x.abs()) * (1.0 if log_space else twin.abs())
    differ = twin != fused
    if not bool(differ.any()):
        return 0.0
    return ((fused - twin).abs()[differ] / (scale[differ] * eps)).max().item()


@pytest.mark.skipif(not _native.available(), reason="needs the fused kernels")
@pytest.mark.parametrize("log_space", [False, True], ids=["x", "log_x"])
@pytest.mark.parametrize("concentration", [1e-30, *CONCENTRATIONS, 1e20, 1e30])
def test_fused_pass_and_torch_twin_give_the_same_draws(concentration, dtype, log_space, torch_path):
    """Same words, same decisions: the draws agree to a few ulps (a flipped decision would give
    an unrelated draw). Both compute in float64; float32 draws then round alike or 1 ulp apart."""
    a = torch.full((4099,), concentration, dtype=dtype)  # odd: the padded last pair is used
    fused, twin = _both_paths(a, log_space, torch_path)
    assert torch.equal(fused.isfinite(), twin.isfinite())
    finite = twin.isfinite()
    assert _ulps(fused[finite], twin[finite], log_space) <= 8


@pytest.mark.skipif(not _native.available(), reason="needs the fused kernels")
@pytest.mark.parametrize("log_space", [False, True], ids=["x", "log_x"])
def test_fused_pass_and_torch_twin_agree_on_mixed_and_special_concentrations(log_space, torch_path):
    values = [0.0, -1.0, math.nan, math.inf, 1e-3, 0.5, 0.999, 1.0, 3.0, 1e4]
    a = torch.tensor(values * 501, dtype=torch.float64)
    fused, twin = _both_paths(a, log_space, torch_path)
    assert torch.equal(fused.isnan(), twin.isnan())
    assert torch.equal(fused.isinf(), twin.isinf())
    finite = twin.isfinite()
    assert _ulps(fused[finite], twin[finite], log_space) <= 8


@pytest.mark.skipif(not _native.available(), reason="needs the fused kernels")
def test_fused_pass_and_torch_twin_agree_on_runs_of_changing_concentrations(torch_path):
    """Runs of 16 equal concentrations fill whole groups of lanes, whose constants the kernel
    keeps while the concentration repeats: each change of value must renew them."""
    values = torch.tensor([0.5, 5.0, 0.5, 2.0, 500.0, 2.0], dtype=torch.float64)
    a = values.repeat_interleave(16).repeat(64)
    for log_space in (False, True):
        fused, twin = _both_paths(a, log_space, torch_path)
        assert _ulps(fused, twin, log_space) <= 8


def _pair_correlation(draws: torch.Tensor) -> float:
    """Rank correlation of the two draws of each pair (2i, 2i+1), which share their words."""
    return scipy.stats.spearmanr(draws[0::2].numpy(), draws[1::2].numpy()).statistic


@pytest.mark.parametrize("concentration", [0.5, 5.0])
def test_the_two_draws_of_a_pair_are_independent(concentration, monkeypatch, torch_path):
    """Both elements of a pair take their normals from one Box-Muller word (r cos θ, r sin θ) and
    their uniforms from the same words: their draws must be uncorrelated, within Z standard
    errors (1/√pairs). Twin: the torch path with r cos θ for both normals must fail."""
    a = torch.full((SIZE,), concentration, dtype=torch.float64)
    torch.manual_seed(21)
    draws = log_standard_gamma_sample(a)
    pairs = SIZE // 2
    assert abs(_pair_correlation(draws)) < Z / math.sqrt(pairs)
    torch_path()
    monkeypatch.setattr(torch.Tensor, "sin", torch.Tensor.cos)
    torch.manual_seed(21)
    assert abs(_pair_correlation(log_standard_gamma_sample(a))) > Z / math.sqrt(pairs)


def test_mixed_concentrations_each_follow_their_law():
    """Interleaved concentrations below and above 1 share rounds (3 words a pair) and the
    compaction of their rejected positions: each must still follow its own law. Twin: each half
    tested against the law 5% off must fail."""
    values = (0.5, 5.0)
    a = torch.tensor(values, dtype=torch.float64).repeat(SIZE // 2)
    torch.manual_seed(31)
    draws = log_standard_gamma_sample(a).numpy()
    for k, value in enumerate(values):
        half = draws[k::2]
        assert scipy.stats.kstest(half, _log_cdf_of(value)).pvalue > P_MIN
        assert scipy.stats.kstest(half, _log_cdf_of(1.05 * value)).pvalue < P_MIN


def test_fused_agreement_check_fails_with_a_changed_constant(torch_path, monkeypatch):
    """Twin: a torch twin whose squeeze drops its ``1/(1 + t)`` for t < 0 (too loose there)
    decides differently: the draws differ."""
    a = torch.full((4099,), 1.0, dtype=torch.float64)
    torch.manual_seed(3)
    fused = sampling._sample(a, False, None)
    torch_path()

    def too_loose(d, t, u):
        return u < 1.0 - (0.75 * d) * t**4

    monkeypatch.setattr(sampling, "_squeeze_accepts", too_loose)
    torch.manual_seed(3)
    twin = sampling._sample(a, False, None)
    assert _ulps(fused, twin, log_space=False) > 1e6


@pytest.mark.parametrize("log_space", [False, True], ids=["x", "log_x"])
def test_seed_determines_the_draws_and_the_generator_advances(log_space):
    a = torch.tensor([0.3, 1.0, 7.0, 500.0]).repeat(2500)
    sample = log_standard_gamma_sample if log_space else standard_gamma_sample
    torch.manual_seed(5)
    first, second = sample(a), sample(a)
    torch.manual_seed(5)
    assert torch.equal(sample(a), first)
    assert not torch.equal(first, second)
    with torch.random.fork_rng():
        inside = sample(a)
    assert torch.equal(sample(a), inside)  # fork_rng restored the state it found
    generator = torch.Generator().manual_seed(5)
    assert torch.equal(sample(a, generator=generator), first)


def test_draws_do_not_depend_on_the_thread_count():
    # 2^21 + 2: above 2^20 a thread the pass itself runs on both threads.
    a = torch.tensor([0.3, 1.0, 7.0, 500.0], dtype=torch.float64).repeat(2**19 + 1)[: 2**21 + 2]
    threads = torch.get_num_threads()
    try:
        draws = []
        for count in (1, 2):
            torch.set_num_threads(count)
            torch.manual_seed(9)
            draws.append(log_standard_gamma_sample(a))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(draws[0], draws[1])


def test_implicit_families_draw_from_the_sampler():
    """Gamma.rsample is the sampler's x; Beta's draw follows its log draws on the same seed."""
    a = torch.full((1000,), 2.5, dtype=torch.float64)
    torch.manual_seed(4)
    expected = standard_gamma_sample(a) / 3.0
    torch.manual_seed(4)
    assert torch.equal(irt.Gamma(a, 3.0).rsample(), expected)
    torch.manual_seed(4)
    log_ratio = log_standard_gamma_sample(a) - log_standard_gamma_sample(a + 1)
    torch.manual_seed(4)
    assert torch.allclose(irt.Beta(a, a + 1).rsample(), torch.sigmoid(log_ratio))


def test_edge_concentrations(dtype):
    torch.manual_seed(0)
    tiny = torch.tensor([1e-30, 1e-3], dtype=dtype)
    assert bool(log_standard_gamma_sample(tiny).isfinite().all())
    # d, 3d/4, c and d (3 R) must not overflow, up to the largest float (whose draws above it are
    # inf in x, but finite in log x).
    largest = torch.finfo(dtype).max
    huge = torch.tensor([1e20, 1e30, largest / 2], dtype=dtype)
    # sd / a = a^-1/2 <= 1e-10, below float32's rounding
    rtol = max(1e-9, 8 * torch.finfo(dtype).eps)
    torch.manual_seed(0)
    draws = standard_gamma_sample(huge)
    assert bool(draws.isfinite().all()) and torch.allclose(draws, huge, rtol=rtol)
    huge = torch.cat([huge, torch.tensor([largest], dtype=dtype)])
    log_draws = log_standard_gamma_sample(huge)
    assert torch.allclose(log_draws, huge.double().log().to(dtype), rtol=rtol)
    special = torch.tensor([math.nan, math.inf, -1.0, 0.0, -0.0], dtype=dtype)
    x, log_x = standard_gamma_sample(special), log_standard_gamma_sample(special)
    inf = math.inf
    assert torch.equal(x.isnan(), torch.tensor([True, False, True, False, False]))
    assert x[1] == inf and x[3] == 0 and x[4] == 0  # -0.0 is the concentration 0, not -inf/inf
    assert log_x[1] == inf and log_x[3] == -inf and bool(log_x[:3:2].isnan().all())
    assert log_x[4] == -inf


def test_shapes_dtypes_and_broadcast_views():
    assert standard_gamma_sample(torch.empty(0, 3)).shape == (0, 3)
    a = torch.tensor([[0.5], [5.0]]).expand(2, 1000)
    torch.manual_seed(0)
    draws = log_standard_gamma_sample(a)
    torch.manual_seed(0)
    assert torch.equal(draws, log_standard_gamma_sample(a.contiguous()))
    assert draws.shape == (2, 1000)
    for half in (torch.float16, torch.bfloat16):
        x = standard_gamma_sample(torch.full((100,), 5.0, dtype=half))
        assert x.dtype == half and bool((x > 0).all())


def test_rejection_loop_is_capped(torch_path, monkeypatch):
    """A pass that rejected everything would loop for ever: the sampler raises instead."""
    torch_path()
    monkeypatch.setattr(sampling, "_squeeze_accepts", lambda d, t, u: torch.zeros_like(u) > 0)
    monkeypatch.setattr(sampling, "_log1p_remainder", lambda t, log1p_t: torch.full_like(t, -1e9))
    with pytest.raises(RuntimeError, match="rejected after 64 rounds"):
        standard_gamma_sample(torch.full((10,), 2.0))


def test_traced_code_uses_torch_sampler():
    a = torch.full((3, 100), 5.0)
    draws = torch.func.vmap(standard_gamma_sample, randomness="different")(a)
    assert draws.shape == (3, 100) and bool((draws > 0).all())
    log_draws = torch.func.vmap(log_standard_gamma_sample, randomness="different")(a * 0.1)
    assert bool(log_draws.isfinite().all())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_keep_torch_sampler():
    """On CUDA both samplers are torch's kernel: the draws stay on the device, with the mean of
    Gamma(5) within Z standard errors; the twin, Gamma(5.25), is rejected."""
    a = torch.full((SIZE,), 5.0, device="cuda")
    standard_error = math.sqrt(5.0 / SIZE)
    torch.manual_seed(0)
    for draws in (standard_gamma_sample(a), log_standard_gamma_sample(a).exp()):
        assert draws.device == a.device
        assert abs(draws.mean().item() - 5.0) < Z * standard_error
    assert abs(standard_gamma_sample(1.05 * a).mean().item() - 5.0) > Z * standard_error
