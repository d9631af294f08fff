"""stochgrad train: learning, per-epoch atomic checkpoints and exact resume (also after a kill)."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from stochgrad.cli import checkpoint as checkpoint_module
from stochgrad.cli import main
from stochgrad.cli.checkpoint import load_checkpoint
from stochgrad.cli.errors import UsageError
from stochgrad.cli.models import FAMILIES, VAE
from stochgrad.cli.objectives import negative_elbo
from stochgrad.cli.train import TrainConfig, train

TINY = dict(data="digits", train_size=200, test_size=60, batch_size=20, iwae_samples=20,
            progress=False)  # fmt: skip


def _curve(result):
    return [(r["epoch"], r["train_bound"], r["test_neg_elbo"]) for r in result["history"]]


def test_training_lowers_the_test_loss_and_writes_metrics(tmp_path):
    config = TrainConfig(latent="normal", epochs=4, out=str(tmp_path), lr=3e-3, **TINY)
    result = train(config, log=lambda line: None)
    untrained = VAE(FAMILIES["normal"], 10, 64)
    test_images = result["dataset"].binarized_test_images()
    before = negative_elbo(untrained, test_images)
    assert before > 40.0  # 64 pixels at probability ~1/2: about 64 log 2 = 44 nats
    assert result["test_neg_elbo"] < before - 10.0
    assert result["test_iwae_ll"] >= -result["test_neg_elbo"] - 1.0  # IWAE bound is tighter
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_neg_elbo"] == result["test_neg_elbo"]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 4


def test_igr_training_lowers_the_test_loss(tmp_path):
    config = TrainConfig(latent="categorical", estimator="igr", epochs=4, out=str(tmp_path),
                         lr=3e-3, **TINY)  # fmt: skip
    result = train(config, log=lambda line: None)
    untrained = VAE(FAMILIES["categorical"], 20, 64, "igr")
    before = negative_elbo(untrained, result["dataset"].binarized_test_images())
    assert result["test_neg_elbo"] < before - 10.0
    assert result["test_iwae_ll"] >= -result["test_neg_elbo"] - 1.0
    saved = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    for key in ("vae.inf_net.heads.0.module.temperature", "vae.gen_model.priors.0.temperature"):
        assert saved[key].item() == config.temperature


@pytest.mark.parametrize("latent", ["normal", "gamma", "dirichlet", "vonmises"])
def test_igr_on_a_continuous_latent_is_one_line_error(latent, capsys):
    assert main(["train", "--latent", latent, "--estimator", "igr"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"--latent {latent} cannot be trained with --estimator igr" in err


def test_one_log_line_per_epoch(tmp_path):
    lines = []
    train(TrainConfig(latent="gamma", epochs=3, out=str(tmp_path), **TINY), log=lines.append)
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 3 and "test -ELBO" in epoch_lines[0]


# nvil keeps running statistics, relax a learned control variate, igr its temperature as a
# buffer.
@pytest.mark.parametrize(("latent", "estimator"), [("normal", None), ("bernoulli", "nvil"),
                                                   ("bernoulli", "relax"),
                                                   ("categorical", "igr")])  # fmt: skip
def test_resume_continues_exactly(tmp_path, latent, estimator):
    base = TrainConfig(latent=latent, estimator=estimator, dim=20, epochs=4, **TINY)
    straight = train(replace(base, out=str(tmp_path / "straight")), log=lambda line: None)
    first = replace(base, out=str(tmp_path / "resumed"), epochs=2)
    train(first, log=lambda line: None)
    resumed = train(replace(first, epochs=4, resume=True), log=lambda line: None)
    assert _curve(resumed) == _curve(straight)
    for key, value in straight["model"].state_dict().items():
        assert torch.equal(value, resumed["model"].state_dict()[key]), key


def test_resume_detects_a_different_run(tmp_path):
    config = TrainConfig(latent="normal", epochs=1, out=str(tmp_path), **TINY)
    train(config, log=lambda line: None)
    with pytest.raises(UsageError, match="lr=0.001.*lr=0.01"):
        train(replace(config, lr=0.01, epochs=2, resume=True), log=lambda line: None)


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = TrainConfig(latent="normal", epochs=1, out=str(tmp_path), **TINY)
    train(config, log=lambda line: None)
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def torn_save(state, stream):
        stream.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        train(replace(config, epochs=2, resume=True), log=lambda line: None)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.slow
def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path):
    """SIGKILL a real `python -m stochgrad train` mid-run, resume it, compare the curves."""
    epochs = 12
    argv = [sys.executable, "-m", "stochgrad", "train", "--latent", "bernoulli",
            "--estimator", "nvil", "--dim", "20", "--data", "digits", "--train-size", "200",
            "--test-size", "60", "--batch-size", "20", "--iwae-samples", "20", "--threads", "1",
            "--no-progress", "--epochs", str(epochs),
            "--out", str(tmp_path / "killed")]  # fmt: skip
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if checkpoint.exists() and load_checkpoint(checkpoint)["epoch"] >= 2:
                break
            time.sleep(0.005)
        assert process.poll() is None, "the run ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(checkpoint)["epoch"]
    assert killed_at < epochs
    resumed = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {checkpoint} after epoch {killed_at}" in resumed.stdout
    straight = train(
        TrainConfig(
            latent="bernoulli",
            estimator="nvil",
            dim=20,
            epochs=epochs,
            seed=0,
            out=str(tmp_path / "straight"),
            **TINY,
        ),  # fmt: skip
        log=lambda line: None,
    )
    killed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert _curve(killed) == _curve(straight)
