"""stochgrad train: learning, per-epoch atomic checkpoints and exact resume (also after a kill)."""

import json
import math
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
from stochgrad.cli.errors import TrainingError, UsageError
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


FAMILY_NAMES = list(FAMILIES)


@pytest.mark.parametrize("latent", FAMILY_NAMES)
def test_non_finite_weights_stop_with_one_line_and_keep_the_last_checkpoint(
    tmp_path, monkeypatch, latent
):
    """Weights turned NaN by the optimiser in epoch 2: every family stops in epoch 2, step 2
    with a TrainingError of one line (no tensor dump), and epoch 1's checkpoint stays."""
    adam_step = torch.optim.Adam.step
    calls = []

    def poisoning_step(self, *args, **kwargs):
        result = adam_step(self, *args, **kwargs)
        calls.append(None)
        if len(calls) == 3:  # epoch 2, step 1 (two steps per epoch)
            with torch.no_grad():
                for group in self.param_groups:
                    for parameter in group["params"]:
                        parameter.fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", poisoning_step)
    config = TrainConfig(latent=latent, epochs=3, out=str(tmp_path), **{**TINY, "batch_size": 100})
    with pytest.raises(TrainingError) as info:
        train(config, log=lambda line: None)
    message = str(info.value)
    assert "\n" not in message and "tensor(" not in message
    assert "in epoch 2, step 2/2" in message
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    assert not (tmp_path / "metrics.json").exists()


def test_non_finite_gradient_stops_before_the_step(tmp_path, monkeypatch):
    """A NaN gradient with a finite loss is caught after backward, before optimizer.step."""
    optimizers, steps = [], []
    adam_init, backward = torch.optim.Adam.__init__, torch.Tensor.backward

    def recording_init(self, *args, **kwargs):
        adam_init(self, *args, **kwargs)
        optimizers.append(self)

    def nan_backward(self, *args, **kwargs):
        backward(self, *args, **kwargs)
        optimizers[0].param_groups[0]["params"][0].grad.fill_(float("nan"))

    monkeypatch.setattr(torch.optim.Adam, "__init__", recording_init)
    monkeypatch.setattr(torch.Tensor, "backward", nan_backward)
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: steps.append(None))
    config = TrainConfig(latent="normal", epochs=1, out=str(tmp_path), **TINY)
    with pytest.raises(TrainingError, match=r"gradient norm became nan in epoch 1, step 1/10"):
        train(config, log=lambda line: None)
    assert steps == []


# gamma with exploded parameters takes ~30 s (its sampler at huge concentrations)
@pytest.mark.parametrize(
    "latent", [pytest.param(n, marks=pytest.mark.slow) if n == "gamma" else n for n in FAMILY_NAMES]
)
def test_a_huge_learning_rate_never_exits_zero_with_nan(tmp_path, latent, capsys):
    """`--lr 1e6`: either a finite result in valid JSON (exit 0) or one line naming where the
    run diverged (exit 1); never NaN in metrics.json, never a traceback."""
    out = tmp_path / "run"
    argv = ["train", "--latent", latent, "--lr", "1e6", "--data", "digits", "--train-size",
            "200", "--epochs", "1", "--iwae-samples", "2", "--no-progress",
            "--out", str(out)]  # fmt: skip
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "tensor(" not in captured.err
    if code == 0:
        # parse_constant sees NaN and Infinity, which are not JSON
        metrics = json.loads((out / "metrics.json").read_text(), parse_constant=pytest.fail)
        assert all(map(math.isfinite, (metrics["test_neg_elbo"], metrics["test_iwae_ll"])))
    else:
        assert code == 1
        assert captured.err.count("\n") == 1
        assert "epoch 1" in captured.err
        assert not (out / "metrics.json").exists()
