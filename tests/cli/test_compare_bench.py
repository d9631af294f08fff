"""stochgrad compare (grid, tables, figures, reuse of finished runs) and stochgrad bench."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stochgrad.cli import bench, main
from stochgrad.cli.checkpoint import load_checkpoint
from stochgrad.cli.compare import grid
from stochgrad.cli.errors import UsageError


def test_grid_keeps_only_compatible_pairs():
    runs = grid(["normal", "bernoulli"], ["implicit", "disarm"], [2, 5], [0, 1])
    assert sorted({(latent, estimator, dim) for latent, estimator, dim, _ in runs}) == [
        ("bernoulli", "disarm", None),
        ("normal", "implicit", 2),
        ("normal", "implicit", 5),
    ]
    assert len(runs) == 6
    with pytest.raises(UsageError, match="grid is empty"):
        grid(["gamma"], ["disarm"], [2], [0])


def test_score_function_estimators_train_continuous_latents_when_named(tmp_path):
    # Named explicitly, nvil pairs with a continuous latent; the default list keeps the default
    # grid of discrete score-function runs only.
    runs = grid(["gamma", "bernoulli"], ["implicit", "nvil"], [2], [0])
    assert sorted((latent, estimator) for latent, estimator, _, _ in runs) == [
        ("bernoulli", "nvil"),
        ("gamma", "implicit"),
        ("gamma", "nvil"),
    ]
    out = tmp_path / "default"
    code = main(
        [
            "compare",
            "--data",
            "digits",
            "--train-size",
            "40",
            "--test-size",
            "20",
            "--batch-size",
            "20",
            "--epochs",
            "1",
            "--iwae-samples",
            "2",
            "--latents",
            "gamma",
            "--dims",
            "2",
            "--seeds",
            "0",
            "--no-figures",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert [path.name for path in (out / "runs").iterdir()] == ["gamma-implicit-d2-s0"]


def test_compare_writes_tables_and_figures_and_reuses_runs(tmp_path, capsys):
    argv = ["compare", "--data", "digits", "--train-size", "100", "--test-size", "40",
            "--batch-size", "20", "--epochs", "2", "--iwae-samples", "5", "--latents",
            "normal,bernoulli", "--estimators", "implicit,gumbel", "--dims", "2",
            "--seeds", "0,1", "--jobs", "1", "--no-progress", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "| normal | implicit | 2 | 2 |" in printed and "| bernoulli | gumbel | 200 | 2 |" in printed
    )
    with open(tmp_path / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["latent"], row["seeds"]) for row in rows] == [("normal", "2"), ("bernoulli", "2")]
    with open(tmp_path / "runs.csv") as handle:
        runs = list(csv.DictReader(handle))
    assert len(runs) == 4
    assert all(float(run["grad_variance"]) > 0 and run["epochs_trained"] == "2" for run in runs)
    normal = [float(run["test_neg_elbo"]) for run in runs if run["latent"] == "normal"]
    mean = float(rows[0]["test_neg_elbo_mean"])
    assert mean == pytest.approx(sum(normal) / 2)  # the table aggregates the per-run values
    for name in (
        "learning_curves",
        "gradient_variance",
        "reconstructions",
        "prior_samples",
        "latent_embeddings",
    ):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    assert (tmp_path / "results.md").read_text().startswith("| latent |")
    # A second call finds every run finished and trains nothing.
    assert main(argv) == 0
    assert "4 finished run(s) reused, 0 to train" in capsys.readouterr().out


def test_bench_runs_the_checkout_script_with_its_options(tmp_path, monkeypatch, capsys):
    script = tmp_path / "benchmarks" / "bench_relaxed.py"
    script.parent.mkdir()
    script.write_text(
        "import sys\nprint('ran', sys.argv[1:])\nsys.exit(3 if '--fail' in sys.argv else 0)\n"
    )
    monkeypatch.setattr(bench.stochgrad, "__file__", str(tmp_path / "src" / "stochgrad" / "x.py"))
    assert bench.find_benchmark("relaxed") == script
    assert main(["bench", "relaxed", "--quick"]) == 0
    assert "ran ['--quick']" in capsys.readouterr().out
    assert main(["bench", "relaxed", "--fail"]) == 3


def test_bench_without_a_checkout_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench.stochgrad, "__file__", str(tmp_path / "site" / "stochgrad" / "x.py"))
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "estimators"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "source checkout" in err and "Traceback" not in err


def test_bench_finds_every_script_of_this_checkout():
    for name, file in bench.BENCHMARKS.items():
        assert bench.find_benchmark(name).name == file


def test_bench_rejects_an_unknown_benchmark(capsys):
    assert main(["bench", "speed"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def _tiny_compare(out, epochs, *extra):
    return ["compare", "--data", "digits", "--train-size", "40", "--test-size", "20",
            "--batch-size", "20", "--iwae-samples", "2", "--latents", "normal",
            "--estimators", "implicit", "--dims", "2", "--seeds", "0", "--jobs", "1",
            "--no-figures", "--no-progress", "--epochs", str(epochs), "--out", str(out),
            *extra]  # fmt: skip


def _curve(metrics):
    timings = ("seconds", "probe_seconds")
    return [{k: v for k, v in r.items() if k not in timings} for r in metrics["history"]]


def test_compare_reuses_a_run_only_when_its_whole_configuration_matches(tmp_path, capsys):
    run = tmp_path / "runs" / "normal-implicit-d2-s0"
    assert main(_tiny_compare(tmp_path, 2)) == 0
    two_epochs = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()
    # Fewer epochs: the 2-epoch model must not be reported as a 1-epoch one.
    assert main(_tiny_compare(tmp_path, 1)) == 0
    printed = capsys.readouterr().out
    assert "0 finished run(s) reused, 1 to train" in printed
    assert "retraining normal-implicit-d2-s0" in printed and "more than --epochs 1" in printed
    one_epoch = json.loads((run / "metrics.json").read_text())
    assert one_epoch["config"]["epochs"] == len(one_epoch["history"]) == 1
    assert _curve(one_epoch)[0] == _curve(two_epochs)[0]  # the same first epoch, retrained
    with open(tmp_path / "runs.csv") as handle:
        assert [row["epochs_trained"] for row in csv.DictReader(handle)] == ["1"]
    # More epochs continue the 1-epoch run exactly; the same epochs again reuse it.
    assert main(_tiny_compare(tmp_path, 2)) == 0
    assert _curve(json.loads((run / "metrics.json").read_text())) == _curve(two_epochs)
    assert main(_tiny_compare(tmp_path, 2)) == 0
    assert "1 finished run(s) reused, 0 to train" in capsys.readouterr().out


def test_compare_retrains_a_run_with_a_damaged_checkpoint(tmp_path, capsys):
    run = tmp_path / "runs" / "normal-implicit-d2-s0"
    assert main(_tiny_compare(tmp_path, 1)) == 0
    (run / "checkpoint.pt").write_bytes(b"")
    capsys.readouterr()
    assert main(_tiny_compare(tmp_path, 1)) == 0
    assert "retraining normal-implicit-d2-s0" in capsys.readouterr().out
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1


def _children(pid):
    """Pids of the live (not zombie) processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            state, parent = stat.rsplit(")", 1)[1].split()[:2]
            if int(parent) == pid and state != "Z":
                found.append(int(entry))
    return found


def _alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_on_compare_takes_its_workers_along(tmp_path):
    argv = [
        sys.executable,
        "-m",
        "stochgrad",
        *_tiny_compare(tmp_path, 1000, "--jobs", "2", "--seeds", "0,1"),
    ]
    logs = [tmp_path / "runs" / f"normal-implicit-d2-s{seed}" / "train.log" for seed in (0, 1)]
    workers: list[int] = []
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as parent:
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not all(log.exists() for log in logs):
                assert parent.poll() is None, "compare ended before its workers started"
                time.sleep(0.05)
            workers = [pid for pid in _children(parent.pid) if _alive(pid)]
            assert len(workers) >= 2, workers
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait(timeout=30)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(map(_alive, workers)):
                time.sleep(0.05)
            survivors = [
                (pid, Path(f"/proc/{pid}/cmdline").read_text()[:120])
                for pid in workers
                if _alive(pid)
            ]
            assert not survivors, survivors
        finally:
            for pid in workers:  # on failure, do not leave the orphans running
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_compare_does_not_reuse_metrics_with_more_epochs_than_their_config(tmp_path, capsys):
    """What the earlier release left behind (2 epochs of history under epochs=1) is redone."""
    metrics_path = tmp_path / "runs" / "normal-implicit-d2-s0" / "metrics.json"
    assert main(_tiny_compare(tmp_path, 1)) == 0
    metrics = json.loads(metrics_path.read_text())
    metrics_path.write_text(json.dumps({**metrics, "history": metrics["history"] * 2}))
    capsys.readouterr()
    assert main(_tiny_compare(tmp_path, 1)) == 0
    assert "0 finished run(s) reused, 1 to train" in capsys.readouterr().out
    assert len(json.loads(metrics_path.read_text())["history"]) == 1
