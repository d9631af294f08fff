"""Bad command lines end with one line on stderr and a non-zero exit, never a traceback."""

import subprocess
import sys

import pytest

from stochgrad.cli import main

BAD_COMMAND_LINES = [
    (["train", "--latent", "poisson"], "unknown latent family 'poisson'"),
    (["train", "--latent", "bernoulli", "--estimator", "implicit"], "cannot be trained with"),
    (["train", "--latent", "gamma", "--estimator", "reparam"], "cannot be trained with"),
    (["train", "--latent", "normal", "--estimator", "disarm"], "cannot be trained with"),
    (["train", "--estimator", "magic"], "unknown estimator 'magic'"),
    (["train", "--data", "mnist"], "needs --data-dir"),
    (["train", "--data", "mnist", "--data-dir", "/no/such/folder"], "does not exist"),
    (["train", "--data", "cifar"], "invalid choice"),
    (["train", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "--lr", "-1"], "--lr must be > 0"),
    (["train", "--latent", "bernoulli", "--estimator", "vimco", "--samples", "1"], "--samples"),
    (["train", "--latent", "dirichlet", "--dim", "1"], "--dim must be >= 2"),
    (["train", "--dim", "ten"], "invalid int value"),
    (["train", "--device", "tpu"], "--device must be cpu or cuda"),
    (["train", "--no-such-option"], "unrecognized arguments"),
    (["launch"], "invalid choice"),
    (["compare", "--latents", "normal,poisson"], "unknown latent family 'poisson'"),
    (["compare", "--latents", "gamma", "--estimators", "disarm"], "the grid is empty"),
    (["compare", "--seeds", "a,b"], "--seeds"),
    (["compare", "--jobs", "0"], "--jobs must be >= 1"),
    (["train", "--threads", "-1"], "--threads must be >= 1, got -1"),
    (["train", "--threads", "0"], "--threads must be >= 1, got 0"),
    (
        ["train", "--data", "digits", "--data-dir", "/tmp"],
        "--data-dir is only read by --data mnist",
    ),
    (["compare", "--data-dir", "/tmp"], "--data mnist5k is built in"),
    (["train", "--resume", "--overwrite"], "pick one"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_COMMAND_LINES, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else None)  # fmt: skip
def test_bad_arguments_give_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("stochgrad: error: ")
    assert message in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_cuda_request_without_cuda(capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["train", "--device", "cuda"]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err


def test_help_exits_zero(capsys):
    assert main(["train", "--help"]) == 0
    assert "--latent" in capsys.readouterr().out


def test_python_dash_m_prints_no_traceback():
    """The real entry point in a fresh interpreter (the in-process cases cover the rest)."""
    argv, message = BAD_COMMAND_LINES[1]
    process = subprocess.run(
        [sys.executable, "-m", "stochgrad", *argv], capture_output=True, text=True, timeout=120
    )
    assert process.returncode == 2
    assert process.stderr.count("\n") == 1 and message in process.stderr
    assert "Traceback" not in process.stderr


def test_no_command_runs_the_main_job(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(
        "stochgrad.cli.compare.compare_from_args", lambda args: calls.append(args) or 0
    )
    assert main([]) == 0
    assert (
        calls[0].command == "compare" and calls[0].latents == "normal,gamma,beta,vonmises,bernoulli"
    )
    assert "running `stochgrad compare`" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "compare"])
def test_help_shows_the_defaults(command, capsys):
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # undo the line wrapping
    # compare's budgeted options take their defaults from --budget (quick or full).
    budgeted = "from --budget" if command == "compare" else None
    for shown in ("--epochs EPOCHS passes over the training set (default: ",
                  "--lr LR Adam learning rate (default: 0.001)",
                  f"--iwae-samples IWAE_SAMPLES K of the test log p(x) "
                  f"(default: {budgeted or 1000}",
                  "--batch-size BATCH_SIZE images per step (default: 100)",
                  *(["(default: quick)"] if budgeted else [])):  # fmt: skip
        assert shown in text
    assert "(default: None)" not in text and "(default: False)" not in text
