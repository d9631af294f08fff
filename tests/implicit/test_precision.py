"""Floating-point edges of the implicit families: float32 tails and float16/bfloat16 inputs."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

import stochgrad.implicit as irt
from stochgrad.special.elementary import log1p_square

# --- float32 tails of Student's t ------------------------------------------------------------


def test_log1p_square_matches_float64_and_never_overflows():
    x = torch.tensor([0.0, 1e-20, 0.7, 1.0, 3.0, 1e19, 2e19, 3.4e38, -3.4e38])
    scale = torch.tensor(0.3)
    got = log1p_square(x, scale)
    expected = torch.log1p((x.double() / scale.double()) ** 2)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected, rtol=2e-7, atol=1e-30)


@pytest.mark.parametrize("df", [0.1, 0.3])
def test_studentt_float32_small_df_draws_and_log_prob_are_finite(df):
    # torch's float32 log_prob overflows in y² beyond ~6e18 and our draws reached ±inf
    # (12 of 10⁵ at df = 0.1, seed 0); about 1 in 10⁴ draws lies beyond the largest float.
    torch.manual_seed(0)
    df_param = torch.tensor(df, requires_grad=True)
    law = irt.StudentT(df_param, torch.tensor(0.5), torch.tensor(0.7))
    z = law.rsample((100_000,))
    assert torch.isfinite(z).all()
    log_prob = law.log_prob(z.detach())
    assert torch.isfinite(log_prob).all()
    # the float32 density agrees with scipy's float64 one at the same (float32) points
    reference = stats.t.logpdf(z.detach().double().numpy(), df, loc=0.5, scale=0.7)
    torch.testing.assert_close(log_prob.double(), torch.from_numpy(reference), rtol=2e-6, atol=2e-5)
    z.abs().log().mean().backward()
    assert torch.isfinite(df_param.grad)


def test_studentt_float32_draws_beyond_the_largest_float_keep_their_mass():
    # P(|T| > finfo.max) at df = 0.1 is ~1.4e-4: the clamped draws must carry that mass, which a
    # sampler that dropped or wrapped them would not. Twin: the same count is far from df = 0.2.
    torch.manual_seed(1)
    n, df = 400_000, 0.1
    z = irt.StudentT(torch.tensor(df)).sample((n,))
    largest = torch.finfo(torch.float32).max
    count = (z.abs() == largest).sum().item()

    def z_score(df_claimed):
        p = 2 * stats.t.sf(float(largest), df_claimed)
        return (count - n * p) / (n * p * (1 - p)) ** 0.5

    assert abs(z_score(df)) < 5
    assert abs(z_score(0.2)) > 5


# --- float16 / bfloat16: computed in float32, returned in the input dtype ---------------------

HALF_CASES = {
    "gamma": (irt.Gamma, (torch.tensor([0.3, 2.5]), torch.tensor([1.5, 0.7]))),
    "beta": (irt.Beta, (torch.tensor([0.7, 3.0]), torch.tensor([2.0, 0.4]))),
    "dirichlet": (irt.Dirichlet, (torch.tensor([0.5, 2.0, 4.0]),)),
    "studentt": (irt.StudentT, (torch.tensor([4.0, 0.5]), torch.tensor(0.3), torch.tensor(1.7))),
}


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name", list(HALF_CASES))
def test_half_precision_is_float32_rounded(name, half):
    cls, params32 = HALF_CASES[name]
    # parameters exactly representable in the half dtype, so both runs see the same law
    params32 = [p.to(half).float().requires_grad_() for p in params32]
    params_half = [p.detach().to(half).requires_grad_() for p in params32]

    torch.manual_seed(0)
    z_half = cls(*params_half).rsample((1000,))
    torch.manual_seed(0)
    z32 = cls(*params32).rsample((1000,))
    assert z_half.dtype == half
    assert torch.equal(z_half, z32.to(half))  # the same float32 draw, rounded once

    z_half.float().sum().backward()
    z32.sum().backward()
    for p_half, p32 in zip(params_half, params32, strict=True):
        assert p_half.grad.dtype == half
        torch.testing.assert_close(p_half.grad, p32.grad.to(half))

    value = z32.detach().to(half)
    log_prob_half = cls(*params_half).log_prob(value)
    assert log_prob_half.dtype == half
    reference = value.float()
    if cls is irt.Dirichlet:  # a half simplex point sums to 1 only within half rounding
        reference = reference / reference.sum(-1, keepdim=True)
        with pytest.raises(ValueError, match="simplex"):
            cls(*params_half, validate_args=True).log_prob(value * 1.1)
    expected = cls(*[p.detach() for p in params32]).log_prob(reference).to(half)
    torch.testing.assert_close(log_prob_half, expected, rtol=0, atol=0)
    if cls is not irt.Dirichlet:
        cdf_half = cls(*params_half).cdf(value)
        expected = cls(*[p.detach() for p in params32]).cdf(value.float()).to(half)
        assert cdf_half.dtype == half
        torch.testing.assert_close(cdf_half, expected, rtol=0, atol=0)
