"""The output folder: locked while a run writes it, never silently replaced or over-resumed,
and checked (a writable folder, a readable checkpoint) before any training."""

import json
import os

import pytest
import torch

from stochgrad.cli import main
from stochgrad.cli import train as train_module
from stochgrad.cli.checkpoint import load_checkpoint
from stochgrad.cli.outdir import locked

TINY = ["--data", "digits", "--train-size", "40", "--test-size", "20", "--batch-size", "20",
        "--iwae-samples", "2", "--no-progress"]  # fmt: skip


def _train(out, *options):
    return main(["train", "--dim", "2", *TINY, "--out", str(out), *options])


def _one_error_line(capsys, *fragments):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("stochgrad: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_second_run_into_a_locked_folder_is_refused(tmp_path, capsys, command):
    with locked(tmp_path):
        if command == "train":
            code = _train(tmp_path, "--epochs", "1")
        else:
            code = main(["compare", *TINY, "--latents", "normal", "--estimators", "implicit",
                         "--dims", "2", "--seeds", "0", "--epochs", "1", "--no-figures",
                         "--out", str(tmp_path)])  # fmt: skip
    assert code == 2
    _one_error_line(capsys, "in use by another stochgrad process", f"pid {os.getpid()}")
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "runs").exists()
    assert _train(tmp_path, "--epochs", "1") == 0  # the lock ends with its holder


def test_train_does_not_replace_a_run_without_overwrite(tmp_path, capsys):
    assert _train(tmp_path, "--epochs", "1", "--seed", "1") == 0
    before = (tmp_path / "metrics.json").read_text()
    capsys.readouterr()
    assert _train(tmp_path, "--epochs", "1", "--seed", "2") == 2
    _one_error_line(capsys, "already holds a run", "--resume", "--overwrite")
    assert (tmp_path / "metrics.json").read_text() == before
    assert _train(tmp_path, "--epochs", "1", "--seed", "2", "--overwrite") == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["seed"] == 2


def test_resume_without_a_checkpoint_says_it_starts_fresh(tmp_path, capsys):
    assert _train(tmp_path, "--epochs", "1", "--resume") == 0
    assert f"--resume: no checkpoint.pt in {tmp_path}, starting a fresh run" in (
        capsys.readouterr().out
    )


def test_resume_refuses_a_checkpoint_trained_for_more_epochs(tmp_path, capsys):
    assert _train(tmp_path, "--epochs", "2") == 0
    capsys.readouterr()
    assert _train(tmp_path, "--epochs", "1", "--resume") == 2
    _one_error_line(capsys, "has trained 2 epochs, more than --epochs 1")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["epochs"] == len(metrics["history"]) == 2
    # The same epochs again is the same finished run: nothing to train, same curve.
    assert _train(tmp_path, "--epochs", "2", "--resume") == 0
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert again["history"] == metrics["history"]


@pytest.mark.parametrize("where", ["existing-file", "below-a-file", "read-only"])
def test_out_must_be_a_writable_folder_before_training(tmp_path, capsys, monkeypatch, where):
    (tmp_path / "file").write_text("not a folder")
    out = {
        "existing-file": tmp_path / "file",
        "below-a-file": tmp_path / "file" / "run",
        "read-only": "/proc/stochgrad-run",  # not writable even by root
    }[where]

    def no_training(*args, **kwargs):
        raise AssertionError("a model was built: --out was not checked first")

    monkeypatch.setattr(train_module, "build_vae", no_training)
    assert _train(out, "--epochs", "1") == 2
    _one_error_line(capsys, f"--out {str(out)!r}")


def _foreign(path):
    torch.save({"weights": torch.zeros(3)}, path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
        lambda path: path.write_bytes(b""),
        lambda path: path.write_bytes(os.urandom(4096)),
        _foreign,
    ],
    ids=["truncated", "empty", "random", "foreign"],
)
def test_resume_on_a_damaged_checkpoint_is_one_line(tmp_path, capsys, damage):
    assert _train(tmp_path, "--epochs", "1") == 0
    load_checkpoint(tmp_path / "checkpoint.pt")
    damage(tmp_path / "checkpoint.pt")
    capsys.readouterr()
    assert _train(tmp_path, "--epochs", "2", "--resume") == 2
    _one_error_line(capsys, "checkpoint.pt")
