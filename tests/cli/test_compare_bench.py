"""stochgrad compare (grid, tables, figures, reuse of finished runs) and stochgrad bench."""

import csv
import sys
import types

import pytest

from stochgrad.cli import bench, main
from stochgrad.cli.compare import grid
from stochgrad.cli.train import UsageError


def test_grid_keeps_only_compatible_pairs():
    runs, skipped = grid(["normal", "bernoulli"], ["implicit", "nvil"], [2, 5], [0, 1])
    assert sorted({(latent, estimator, dim) for latent, estimator, dim, _ in runs}) == [
        ("bernoulli", "nvil", None),
        ("normal", "implicit", 2),
        ("normal", "implicit", 5),
    ]
    assert len(runs) == 6 and skipped == []


def test_grid_reports_estimators_this_build_lacks(monkeypatch):
    # a build without stochgrad.relaxed.InvertibleGaussian
    monkeypatch.setattr("stochgrad.cli.compare.estimator_available", lambda name: name != "igr")
    runs, skipped = grid(["bernoulli"], ["igr", "nvil"], [2], [0])
    assert [run[1] for run in runs] == ["nvil"]
    assert skipped and "igr" in skipped[0]
    with pytest.raises(UsageError, match="grid is empty"):
        grid(["bernoulli"], ["igr"], [2], [0])


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
    normal = [float(run["test_neg_elbo"]) for run in runs if run["latent"] == "normal"]
    mean = float(rows[0]["test_neg_elbo_mean"])
    assert mean == pytest.approx(sum(normal) / 2)  # the table aggregates the per-run values
    for name in ("learning_curves", "reconstructions", "prior_samples", "latent_embeddings"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    assert (tmp_path / "results.md").read_text().startswith("| latent |")
    # A second call finds every run finished and trains nothing.
    assert main(argv) == 0
    assert "4 finished run(s) reused, 0 to train" in capsys.readouterr().out


def test_bench_runs_each_report_and_skips_broken_ones(monkeypatch):
    module = types.ModuleType("stochgrad.cli.report_fake")
    module.fake_report = lambda: "| case | ratio |"
    monkeypatch.setitem(sys.modules, "stochgrad.cli.report_fake", module)
    monkeypatch.setattr(bench, "discover_reports", lambda: ["report_absent", "report_fake"])
    lines: list[str] = []
    assert bench.run_reports(lines.append) == 0
    assert any(line.startswith("skipped absent") for line in lines)
    assert "| case | ratio |" in lines


def test_bench_reports_a_failing_report(monkeypatch):
    module = types.ModuleType("stochgrad.cli.report_broken")

    def broken_report():
        raise RuntimeError("no reference")

    module.broken_report = broken_report
    monkeypatch.setitem(sys.modules, "stochgrad.cli.report_broken", module)
    monkeypatch.setattr(bench, "discover_reports", lambda: ["report_broken"])
    lines: list[str] = []
    assert bench.run_reports(lines.append) == 1
    assert lines == ["failed broken: RuntimeError: no reference"]


def test_bench_discovers_the_installed_reports():
    assert "report_implicit" in bench.discover_reports()
