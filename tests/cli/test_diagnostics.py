"""Gradient-variance probes and the seed statistics of the compare table."""

import math
from dataclasses import replace

import pytest
import scipy.stats
import torch

from stochgrad.cli.diagnostics import gradient_variance, mean_standard_error, paired_t_test
from stochgrad.cli.models import FAMILIES
from stochgrad.cli.objectives import make_objective
from stochgrad.cli.train import TrainConfig, _Step, build_vae, probe_gradient, resolve_config, train
from stochgrad.data import load_dataset

from .test_objectives import PAIRS
from .test_training import TINY, _curve

# A Gaussian toy with a closed-form gradient covariance: loss = mean_i sum_j (mu_j + sigma e_ij)^2
# over N draws e_ij ~ N(0, 1), so g_j = 2 mu_j + (2 sigma / N) sum_i e_ij ~ N(2 mu_j, 4 sigma^2/N)
# independently, tr Cov g = 4 d sigma^2 / N and ||E g||^2 = 4 ||mu||^2.
TOY_SIGMA, TOY_N, TOY_DRAWS = 1.5, 5, 2000
TOY_MU = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)


def _toy_probe(sigma: float) -> dict[str, float]:
    mu = TOY_MU.clone().requires_grad_()
    torch.manual_seed(0)

    def loss():
        z = mu + sigma * torch.randn(TOY_N, len(mu), dtype=torch.float64)
        return z.square().sum(-1).mean()

    return gradient_variance(loss, [mu], TOY_DRAWS)


def _toy_z_scores(measured: dict[str, float], variance_per_coordinate: float) -> tuple:
    """z-scores of the measured total variance and squared mean norm against their expectations
    when each g_j ~ N(2 mu_j, v) independently: Var s_j^2 = 2 v^2 / (G - 1), and ||g_bar||^2 has
    mean ||2 mu||^2 + d v / G and variance sum_j (4 (2 mu_j)^2 v / G + 2 v^2 / G^2)."""
    v, d, g = variance_per_coordinate, len(TOY_MU), TOY_DRAWS
    total = d * v
    z_variance = (measured["grad_variance"] - total) / math.sqrt(d * 2 * v**2 / (g - 1))
    signal = (2 * TOY_MU).square()
    mean_norm2 = signal.sum().item() + total / g
    spread = math.sqrt((4 * signal * v / g + 2 * v**2 / g**2).sum().item())
    return z_variance, (measured["grad_mean_norm2"] - mean_norm2) / spread


def test_gradient_variance_matches_the_gaussian_closed_form():
    measured = _toy_probe(TOY_SIGMA)
    z_variance, z_mean = _toy_z_scores(measured, 4 * TOY_SIGMA**2 / TOY_N)
    assert abs(z_variance) < 4 and abs(z_mean) < 4
    snr = (2 * TOY_MU).square().sum().item() / (len(TOY_MU) * 4 * TOY_SIGMA**2 / TOY_N)
    assert measured["grad_snr"] == pytest.approx(snr, rel=0.15)


def test_gradient_variance_twin_rejects_a_wrong_variance():
    # The same probe with sigma 10% too large (a gradient whose noise is off by 21%) is far
    # outside 4 standard errors of the true variance.
    measured = _toy_probe(1.1 * TOY_SIGMA)
    z_variance, _ = _toy_z_scores(measured, 4 * TOY_SIGMA**2 / TOY_N)
    assert abs(z_variance) > 8


def test_gradient_variance_needs_two_draws():
    mu = torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match="draws must be >= 2, got 1"):
        gradient_variance(lambda: mu.sum(), [mu], 1)


def _probe(
    latent: str, estimator: str, draws: int, images=None, after_step: bool = False
) -> dict[str, float]:
    config = resolve_config(TrainConfig(latent=latent, estimator=estimator))
    dataset = load_dataset("digits")
    torch.manual_seed(0)
    vae = build_vae(config, dataset.num_pixels)
    objective = make_objective(config.estimator, vae, dataset.num_pixels, 5, 0.5)
    if images is None:
        images = torch.bernoulli(
            dataset.train_images[:50], generator=torch.Generator().manual_seed(1)
        )
    step = _Step(vae, objective)
    if after_step:  # as in training: the model caches the last forward's (non-leaf) tensors
        step(images).backward()
    return probe_gradient(step, images, draws, torch.device("cpu"))


def test_reparameterised_gradient_has_far_lower_variance_than_reinforce():
    # The same initial weights (seed 0) and batch: the pathwise gradient of a Normal latent
    # against the score-function one with a moving-average baseline. Measured ratio 2.8e4.
    reparam = _probe("normal", "reparam", 16)
    reinforce = _probe("normal", "reinforce", 16)
    assert reinforce["grad_variance"] > 100 * reparam["grad_variance"]
    # The sum of squared errors of the probe itself: Var s^2 ~ 2 v^2 / (G - 1) per coordinate,
    # so a ratio of 100 is far beyond the probe's noise at G = 16.


@pytest.mark.parametrize(("latent", "estimator"), PAIRS, ids=lambda value: str(value))
def test_every_estimator_can_be_probed(latent, estimator):
    torch.manual_seed(0)
    images = torch.bernoulli(torch.full((6, 64), 0.4))
    measured = _probe(latent, estimator, 3, images, after_step=True)
    assert measured["grad_variance"] > 0 and math.isfinite(measured["grad_variance"])
    assert math.isfinite(measured["grad_mean_norm2"])


@pytest.mark.parametrize(("latent", "estimator"), [("bernoulli", "nvil"), ("bernoulli", "relax"),
                                                   ("normal", "implicit")])  # fmt: skip
def test_probes_leave_the_training_run_untouched(tmp_path, latent, estimator):
    # nvil keeps running statistics, relax a learned control variate: neither, nor the
    # optimizer or the random streams, may notice the probes.
    base = TrainConfig(latent=latent, estimator=estimator, dim=20, epochs=3, **TINY)
    plain = train(replace(base, out=str(tmp_path / "plain"), grad_draws=0), log=lambda _: None)
    probed = train(replace(base, out=str(tmp_path / "probed"), grad_draws=4), log=lambda _: None)
    assert _curve(plain) == _curve(probed)
    for key, value in plain["model"].state_dict().items():
        assert torch.equal(value, probed["model"].state_dict()[key]), key
    assert [r["epoch"] for r in probed["history"] if "grad_variance" in r] == [1, 2, 3]
    assert plain["grad_variance"] is None and probed["grad_variance"] > 0


def test_paired_t_test_matches_scipy():
    generator = torch.Generator().manual_seed(0)
    for n in (2, 3, 5, 10):
        for shift in (0.0, 0.5, 3.0):
            first = torch.randn(n, generator=generator, dtype=torch.float64)
            second = first + shift + 0.7 * torch.randn(n, generator=generator, dtype=torch.float64)
            expected = scipy.stats.ttest_rel(first.tolist(), second.tolist()).pvalue
            assert paired_t_test(first.tolist(), second.tolist()) == pytest.approx(
                expected, rel=1e-9, abs=1e-14
            )


def test_paired_t_test_edge_cases():
    assert paired_t_test([1.0, 2.0], [1.0, 2.0]) == 1.0  # identical rows
    assert paired_t_test([1.0, 2.0], [0.5, 1.5]) == 0.0  # a constant, non-zero difference
    assert math.isnan(paired_t_test([1.0], [0.0]))
    with pytest.raises(ValueError, match="equal lengths"):
        paired_t_test([1.0, 2.0], [1.0])


def test_mean_standard_error_matches_scipy():
    values = [3.0, 1.0, 4.0, 1.5, 9.0]
    mean, se = mean_standard_error(values)
    assert mean == pytest.approx(sum(values) / 5)
    assert se == pytest.approx(scipy.stats.sem(values))
    assert math.isnan(mean_standard_error([2.0])[1])


def test_families_cover_the_issue_list():
    assert set(FAMILIES) == {"normal", "gamma", "beta", "dirichlet", "vonmises", "mixture",
                             "bernoulli", "categorical"}  # fmt: skip
