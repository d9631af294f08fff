"""stochgrad train with a validation split: early stopping, the best epoch's weights, resume."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from stochgrad.cli.checkpoint import load_checkpoint
from stochgrad.cli.train import TrainConfig, split_validation, train, trained_weights
from stochgrad.data import load_dataset

from .test_training import TINY

# 30 training images and a large learning rate: the validation -ELBO turns up within a few
# epochs, long before the 40 allowed.
OVERFIT = {**TINY, "train_size": 60, "validation": 0.5, "lr": 1e-2, "grad_draws": 0}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    out = tmp_path_factory.mktemp("stopped")
    config = TrainConfig(latent="normal", epochs=40, patience=2, out=str(out), **OVERFIT)
    return config, train(config, log=lambda line: None)


def test_training_stops_when_the_validation_bound_stops_improving(stopped):
    config, result = stopped
    history = result["history"]
    validation = [record["validation_neg_elbo"] for record in history]
    best_epoch = 1 + validation.index(min(validation))
    assert result["best_epoch"] == best_epoch
    assert result["epochs_trained"] == len(history) == best_epoch + config.patience < 40
    assert min(validation[best_epoch:]) >= validation[best_epoch - 1]  # no later improvement
    metrics = json.loads((Path(config.out) / "metrics.json").read_text())
    assert (metrics["epochs_trained"], metrics["best_epoch"]) == (len(history), best_epoch)


def test_test_metrics_are_those_of_the_best_epoch(stopped):
    config, result = stopped
    best = result["history"][result["best_epoch"] - 1]
    last = result["history"][-1]
    # The same weights under the same evaluation seed give the same number, bit for bit; the
    # last epoch's weights (the twin) give another.
    assert result["test_neg_elbo"] == best["test_neg_elbo"] != last["test_neg_elbo"]
    state = load_checkpoint(f"{config.out}/checkpoint.pt")
    assert state["best"]["epoch"] == result["best_epoch"]
    weights = trained_weights(state)
    for key, value in result["model"].state_dict().items():
        assert torch.equal(weights[f"vae.{key}"], value), key
    assert not all(torch.equal(weights[k], state["model"][k]) for k in state["model"])


def test_a_stopped_run_resumed_trains_no_further(stopped, tmp_path):
    config, result = stopped
    again = train(replace(config, epochs=60, resume=True), log=lambda line: None)
    assert again["history"] == result["history"]
    assert again["test_neg_elbo"] == result["test_neg_elbo"]


def test_validation_split_is_the_same_for_every_seed():
    dataset = load_dataset("digits").subset(100, 10)
    kept, held = split_validation(dataset, 0.2)
    assert len(kept.train_images) == 80 and held.shape == (20, 64)
    assert torch.equal(kept.train_images, dataset.train_images[:80])
    assert torch.equal(held, split_validation(dataset, 0.2)[1])  # fixed binarization
    assert set(held.unique().tolist()) <= {0.0, 1.0}
    assert split_validation(dataset, 0.0)[1] is None


def test_validation_without_patience_trains_every_epoch(tmp_path):
    config = TrainConfig(latent="normal", epochs=3, out=str(tmp_path), **OVERFIT)
    result = train(config, log=lambda line: None)
    assert result["epochs_trained"] == 3 and result["best_epoch"] == 3
    assert all("validation_neg_elbo" in record for record in result["history"])
