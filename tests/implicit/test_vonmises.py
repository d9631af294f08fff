"""Von Mises: the vectorised sampler, its edges (κ = 0, huge, inf, NaN) and tracing.

Samples are checked by Kolmogorov-Smirnov distance against scipy's CDF at a false-failure rate of
1e-6 per check (critical value ``sqrt(-log(α/2)/2)/sqrt(n)``), with twins at a wrong
concentration (10%, 40% at κ = 0.5) that the same check rejects.
"""

import math
import subprocess
import sys
import textwrap

import pytest
import torch
from scipy import stats

import stochgrad.implicit as irt
from stochgrad.special.vonmises import von_mises_cdf_and_dz_dconcentration

N = 40_000
KS_CRITICAL = math.sqrt(-math.log(1e-6 / 2) / 2) / math.sqrt(N)


def _ks(samples: torch.Tensor, cdf) -> float:
    return float(stats.kstest(samples.double().numpy(), cdf).statistic)


def _centred(z: torch.Tensor, loc: float) -> torch.Tensor:
    return torch.remainder(z - loc + math.pi, 2 * math.pi) - math.pi


def _draws(kappa: float, loc: float = 0.3, dtype=torch.float64) -> torch.Tensor:
    torch.manual_seed(0)
    law = irt.VonMises(torch.tensor(loc, dtype=dtype), torch.tensor(kappa, dtype=dtype))
    return _centred(law.sample((N,)), loc)


@pytest.mark.parametrize("kappa", [1e-6, 0.01, 0.5, 2.0, 5.0, 50.0, 500.0, 1e5])
def test_samples_follow_the_law(kappa):
    assert _ks(_draws(kappa), stats.vonmises(kappa).cdf) < KS_CRITICAL


@pytest.mark.parametrize("kappa, wrong", [(0.5, 0.7), (5.0, 5.5), (50.0, 55.0), (500.0, 550.0)])
def test_twin_rejects_a_wrong_concentration(kappa, wrong):
    assert _ks(_draws(kappa), stats.vonmises(wrong).cdf) > KS_CRITICAL


def test_float32_samples_follow_the_law():
    assert _ks(_draws(3.0, dtype=torch.float32), stats.vonmises(3.0).cdf) < KS_CRITICAL


def test_zero_concentration_is_uniform():
    law = irt.VonMises(torch.tensor(0.3), torch.tensor(0.0), validate_args=False)
    torch.manual_seed(0)
    z = law.sample((N,))
    assert _ks(z, stats.uniform(-math.pi, 2 * math.pi).cdf) < KS_CRITICAL


def test_huge_concentration_is_the_gaussian_limit():
    kappa = 1e10
    z = _draws(kappa, loc=0.0)
    assert _ks(z * math.sqrt(kappa), stats.norm().cdf) < KS_CRITICAL


def test_nan_in_nan_out():
    torch.manual_seed(0)
    kappa = torch.tensor([1.0, math.nan, 3.0], dtype=torch.float64)
    z = irt.VonMises(torch.tensor([0.0, 0.0, math.nan]), kappa, validate_args=False).sample((7,))
    assert z[:, 0].isfinite().all() and z[:, 1:].isnan().all()


@pytest.mark.parametrize("kappa", [math.inf, math.nan, -1.0])
def test_validation_rejects_non_finite_concentration(kappa):
    with pytest.raises(ValueError, match="concentration"):
        irt.VonMises(0.0, kappa, validate_args=True)


def test_edge_concentrations_never_hang():
    """κ = inf, 1e30 (validation passes it), NaN and 0 (validation off) each return at once;
    torch's rejection loop spins forever on every one of them."""
    script = textwrap.dedent(
        """
        import math, torch
        import stochgrad.implicit as irt
        for kappa, validate in [(1e30, True), (math.inf, False), (math.nan, False), (0.0, False)]:
            law = irt.VonMises(torch.tensor(0.5), torch.tensor(kappa), validate_args=validate)
            z = law.sample((1000,))
            concentration = torch.tensor(kappa, requires_grad=True)
            irt.VonMises(0.5, concentration, validate_args=False).rsample((10,)).sum().backward()
            print(kappa, float(z.nan_to_num(-9).min()), float(z.nan_to_num(9).max()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert lines["1e+30"] == lines["inf"] == "0.5 0.5"  # the point mass at loc
    assert lines["nan"] == "-9.0 9.0"


def _rsample_mean_cos(loc, kappa):
    return torch.cos(irt.VonMises(loc, kappa, validate_args=False).rsample((2000,))).mean()


@pytest.mark.slow  # tracing the series and expansion loops takes ~30 s
def test_rsample_compiles_fullgraph():
    """fullgraph=True: no graph break (no ``.item()``, no data-dependent Python control flow)."""
    loc = torch.tensor([0.3, 1.0])
    kappa = torch.tensor([2.0, 40.0], requires_grad=True)
    compiled = torch.compile(_rsample_mean_cos, fullgraph=True, backend="eager")
    torch.manual_seed(0)
    value = compiled(loc, kappa)
    value.backward()
    assert torch.isfinite(kappa.grad).all()


def test_traced_sampler_follows_the_law():
    """Under torch.compile the sampler runs a fixed number of rounds: same law."""
    sample = torch.compile(
        lambda kappa: irt.VonMises(0.0, kappa, validate_args=False).sample((N,)),
        fullgraph=True,
        backend="eager",
    )
    torch.manual_seed(0)
    z = sample(torch.tensor(5.0, dtype=torch.float64))
    assert _ks(z, stats.vonmises(5.0).cdf) < KS_CRITICAL


@pytest.mark.slow  # ~20 s of tracing
def test_traced_cdf_derivative_equals_eager():
    """The traced path takes the largest term counts; the values are the same."""
    x = torch.linspace(-7, 7, 301, dtype=torch.float64)
    kappa = torch.tensor([0.01, 2.0, 25.0, 300.0], dtype=torch.float64).unsqueeze(-1)
    eager = von_mises_cdf_and_dz_dconcentration(x, kappa)
    traced = torch.compile(von_mises_cdf_and_dz_dconcentration, fullgraph=True, backend="eager")
    for a, b in zip(traced(x, kappa), eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


# in-place series updates go through functorch's (correct, slower) batching fallback
@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")
def test_vmap_over_concentration():
    kappas = torch.tensor([1.0, 50.0])

    def draw(kappa):
        return irt.VonMises(torch.tensor(0.0), kappa, validate_args=False).rsample((5,))

    out = torch.func.vmap(draw, randomness="different")(kappas)
    assert out.shape == (2, 5) and out.isfinite().all()
    x = torch.linspace(-3, 3, 11, dtype=torch.float64)
    mapped = torch.func.vmap(lambda k: von_mises_cdf_and_dz_dconcentration(x, k)[2])(
        kappas.double()
    )
    looped = torch.stack([von_mises_cdf_and_dz_dconcentration(x, k)[2] for k in kappas.double()])
    torch.testing.assert_close(mapped, looped, rtol=1e-13, atol=1e-15)
