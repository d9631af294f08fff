"""stochgrad compare (grid, tables, figures, reuse of finished runs) and stochgrad bench."""

import csv

import pytest

from stochgrad.cli import bench, main
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
