"""stochgrad train's settings for published setups: hidden widths (linear VAE), optimizer, a
step budget, static binarization, temperature annealing and signal normalisation."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from stochgrad import estimators
from stochgrad.cli import train as train_module
from stochgrad.cli.checkpoint import load_checkpoint
from stochgrad.cli.errors import UsageError
from stochgrad.cli.objectives import make_objective, normalize_learning_signal
from stochgrad.cli.train import (
    TrainConfig,
    annealed_temperature,
    build_vae,
    make_optimizer,
    resolve_config,
    train,
)

# 200 digits in batches of 20: 10 steps per epoch.
TINY = dict(data="digits", train_size=200, test_size=40, batch_size=20, iwae_samples=5,
            progress=False)  # fmt: skip


def _quiet(line):
    pass


def test_hidden_empty_is_a_linear_vae():
    config = resolve_config(TrainConfig(latent="bernoulli", dim=200, hidden=()))
    vae = build_vae(config, 784)
    linear = [m for m in vae.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(784, 200), (200, 784)]
    assert not any(isinstance(m, nn.ReLU) for m in vae.modules())
    # the default stays the 256-128 MLP
    default = build_vae(resolve_config(TrainConfig(latent="bernoulli")), 784)
    assert sum(isinstance(m, nn.Linear) for m in default.modules()) == 6


def test_steps_end_training_inside_an_epoch(tmp_path):
    config = TrainConfig(latent="bernoulli", estimator="arm", dim=8, steps=13, out=str(tmp_path),
                         **TINY)  # fmt: skip
    result = train(config, log=_quiet)
    assert [record["step"] for record in result["history"]] == [10, 13]
    state = load_checkpoint(tmp_path / "checkpoint.pt")["optimizer"]["state"]
    assert {int(param_state["step"]) for param_state in state.values()} == {13}


def test_resume_refuses_another_step_budget(tmp_path):
    config = TrainConfig(latent="bernoulli", estimator="arm", dim=8, steps=13, out=str(tmp_path),
                         **TINY)  # fmt: skip
    first = train(config, log=_quiet)
    again = train(replace(config, resume=True), log=_quiet)  # same budget: nothing left to do
    assert again["history"] == first["history"]
    with pytest.raises(UsageError, match="steps=13, this run has steps=20"):
        train(replace(config, steps=20, resume=True), log=_quiet)


def test_sgd_is_momentum_sgd(tmp_path):
    parameter = nn.Parameter(torch.zeros(3))
    optimizer = make_optimizer(TrainConfig(optimizer="sgd", lr=0.1), [parameter])
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["lr"] == 0.1
    assert isinstance(make_optimizer(TrainConfig(), [parameter]), torch.optim.Adam)
    config = TrainConfig(latent="bernoulli", estimator="gumbel", dim=8, steps=3, optimizer="sgd",
                         out=str(tmp_path), **TINY)  # fmt: skip
    train(config, log=_quiet)
    state = load_checkpoint(tmp_path / "checkpoint.pt")["optimizer"]["state"]
    assert all("momentum_buffer" in param_state for param_state in state.values())


def test_annealing_schedule():
    # Jang et al. (2017): max(0.5, exp(-r t)) with t held for N steps.
    config = TrainConfig(temperature=0.5, anneal_rate=1e-4, anneal_every=1000)
    assert annealed_temperature(config, 0) == 1.0
    assert annealed_temperature(config, 999) == 1.0
    assert annealed_temperature(config, 1000) == pytest.approx(0.904837, abs=1e-6)
    assert annealed_temperature(config, 7000) == 0.5  # exp(-0.7) = 0.497 < 0.5
    assert annealed_temperature(replace(config, anneal_rate=0.0), 5000) == 0.5


@pytest.mark.parametrize("estimator", ["gumbel", "st"])
def test_training_sets_the_annealed_temperature(estimator, tmp_path):
    config = TrainConfig(latent="bernoulli", estimator=estimator, dim=8, steps=12,
                         anneal_rate=0.05, anneal_every=5, out=str(tmp_path), **TINY)  # fmt: skip
    result = train(config, log=_quiet)
    expected = annealed_temperature(config, 11)  # the last step's: exp(-0.05 * 10)
    assert expected == pytest.approx(0.60653, abs=1e-5)
    if estimator == "gumbel":
        assert result["model"].relaxed_inf_net.temperature == expected
    else:
        [st] = [m for m in result["objective"].modules()
                if isinstance(m, estimators.GumbelStraightThrough)]  # fmt: skip
        assert st.temperature == expected
    # twin: without annealing the temperature stays the configured one
    fixed = train(replace(config, anneal_rate=0.0, out=str(tmp_path / "fixed")), log=_quiet)
    if estimator == "gumbel":
        assert fixed["model"].relaxed_inf_net.temperature == 0.5


@pytest.mark.parametrize("binarization", ["static", "dynamic"])
def test_static_binarization_trains_on_fixed_binary_images(binarization, tmp_path, monkeypatch):
    seen = []

    def spy(images, generator=None):
        seen.append(images.clone())
        return torch.bernoulli(images, generator=generator)

    monkeypatch.setattr(train_module, "binarize", spy)
    config = TrainConfig(latent="bernoulli", estimator="arm", dim=8, steps=20,
                         binarization=binarization, out=str(tmp_path), **TINY)  # fmt: skip
    result = train(config, log=_quiet)
    batches = torch.cat(seen)
    binary = bool(((batches == 0) | (batches == 1)).all())
    if binarization == "static":
        assert binary
        fixed = {row.numpy().tobytes() for row in result["dataset"].binarized_train_images()}
        assert all(row.numpy().tobytes() in fixed for row in batches)
    else:  # twin: dynamic binarization sees the grey levels
        assert not binary


@pytest.mark.parametrize("estimator", ["reinforce", "muprop"])
def test_normalize_signal_gives_nvil_variance_normalisation(estimator):
    config = resolve_config(TrainConfig(latent="bernoulli", estimator=estimator, dim=8))
    vae = build_vae(config, 64)
    objective = make_objective(estimator, vae, 64, 1, 0.5)
    [before] = [m for m in objective.modules() if isinstance(m, estimators.Baseline)]
    assert isinstance(before, estimators.MovingAverageBaseline)
    normalize_learning_signal(objective)
    [after] = [m for m in objective.modules() if isinstance(m, estimators.Baseline)]
    assert isinstance(after, estimators.NVILBaseline)
    assert after.net is None and after.normalize


def test_normalize_signal_leaves_other_estimators_alone():
    config = resolve_config(TrainConfig(latent="bernoulli", estimator="nvil", dim=8))
    objective = make_objective("nvil", build_vae(config, 64), 64, 1, 0.5)
    [before] = [m for m in objective.modules() if isinstance(m, estimators.Baseline)]
    normalize_learning_signal(objective)
    [after] = [m for m in objective.modules() if isinstance(m, estimators.Baseline)]
    assert after is before and after.net is not None


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (dict(steps=0), "steps must be >= 1, got 0"),
        (dict(hidden=(0,)), "hidden must be widths >= 1"),
        (dict(optimizer="rmsprop"), "optimizer must be adam or sgd, got 'rmsprop'"),
        (dict(binarization="fixed"), "binarization must be dynamic or static"),
        (dict(anneal_rate=-1.0), "anneal_rate must be >= 0"),
        (dict(anneal_every=0), "anneal_every must be >= 1"),
    ],
)
def test_bad_settings_are_one_line_errors(setting, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_config(TrainConfig(latent="bernoulli", **setting))
