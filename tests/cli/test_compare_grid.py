"""stochgrad compare: named grids, --budget defaults, and the results table's statistics."""

import pytest
import scipy.stats

from stochgrad.cli import compare as compare_module
from stochgrad.cli import main
from stochgrad.cli.compare import BUDGETS, results_table
from stochgrad.cli.models import FAMILIES
from stochgrad.cli.objectives import ESTIMATORS


@pytest.fixture
def planned(monkeypatch):
    """The (runs, base config) that `main(["compare", ...])` would train, without training."""
    calls = []
    monkeypatch.setattr(
        compare_module, "compare", lambda runs, base, *a, **k: calls.append((runs, base))
    )
    return calls


def test_quick_budget_is_the_default(planned):
    assert main(["compare"]) == 0
    runs, base = planned[0]
    quick = BUDGETS["quick"]
    assert (base.epochs, base.iwae_samples, base.grad_draws) == (10, 100, 8)
    assert (base.validation, base.patience) == (quick["validation"], quick["patience"]) == (0, 0)
    assert sorted({seed for *_, seed in runs}) == [0, 1, 2]
    rows = {(latent, estimator) for latent, estimator, _, _ in runs}
    assert len(rows) == 8 and len(runs) == 24
    assert ("bernoulli", "nvil") in rows and ("normal", "nvil") not in rows


def test_full_budget_trains_the_all_grid_with_early_stopping(planned):
    assert main(["compare", "--budget", "full"]) == 0
    runs, base = planned[0]
    assert (base.epochs, base.iwae_samples, base.grad_draws) == (50, 1000, 16)
    assert (base.validation, base.patience) == (0.1, 5)
    rows = {(latent, estimator) for latent, estimator, _, _ in runs}
    assert {latent for latent, _ in rows} == set(FAMILIES)
    assert {estimator for _, estimator in rows} == set(ESTIMATORS)
    continuous = {(l, e) for l, e in rows if not FAMILIES[l].discrete}
    assert continuous == {("normal", "reparam")} | {(l, "implicit") for l, _ in continuous}
    assert len(rows) == 31 and len(runs) == 93


def test_explicit_options_override_the_budget(planned):
    argv = ["compare", "--budget", "full", "--epochs", "7", "--patience", "2", "--seeds", "4",
            "--grid", "default", "--iwae-samples", "50"]  # fmt: skip
    assert main(argv) == 0
    runs, base = planned[0]
    assert (base.epochs, base.patience, base.iwae_samples, base.validation) == (7, 2, 50, 0.1)
    assert {seed for *_, seed in runs} == {4} and len(runs) == 8


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "--budget", "long"], "invalid choice"),
        (["compare", "--grid", "everything"], "invalid choice"),
        (["train", "--patience", "3"], "--patience needs a validation split"),
        (["train", "--validation", "1.5"], "--validation must be in [0, 1)"),
        (["train", "--grad-draws", "1"], "--grad-draws must be 0 (off) or >= 2"),
    ],
)
def test_bad_budget_options_give_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def _result(latent, estimator, seed, log_px, **extra):
    config = {"latent": latent, "estimator": estimator, "dim": 10, "seed": seed}
    return {"config": config, "test_iwae_ll": log_px, "test_neg_elbo": -log_px + 1.0,
            "seconds_per_epoch": 1.0, "epochs_trained": 10, "grad_variance": 2.0,
            "grad_snr": 0.5, **extra}  # fmt: skip


def _row(table: str, latent: str, estimator: str) -> list[str]:
    prefix = f"| {latent} | {estimator} |"
    (line,) = [line for line in table.splitlines() if line.startswith(prefix)]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_table_gives_standard_errors_and_paired_significance():
    best = [-100.0, -101.0, -99.5]
    close = [-100.2, -100.6, -99.9]  # within seed noise of the best
    worse = [-103.0, -104.1, -102.2]  # 3 nats worse on every seed
    results = [
        *(_result("normal", "implicit", s, v) for s, v in enumerate(best)),
        *(_result("gamma", "implicit", s, v) for s, v in enumerate(close)),
        *(_result("beta", "implicit", s, v) for s, v in enumerate(worse)),
        *(_result("bernoulli", "disarm", s, v - 50) for s, v in enumerate(best)),
        *(_result("bernoulli", "igr", s, v) for s, v in enumerate(best)),  # not comparable
    ]
    table = results_table(results, iwae_samples=100)
    assert "test log p(x) ≥ ± SE, K=100" in table.splitlines()[0]
    assert _row(table, "normal", "implicit")[6] == "best"
    mean, se = -100.1666667, scipy.stats.sem(best)
    assert _row(table, "normal", "implicit")[5] == f"{mean:.2f} ± {se:.2f}"
    p_close = scipy.stats.ttest_rel(close, best).pvalue
    p_worse = scipy.stats.ttest_rel(worse, best).pvalue
    assert p_close > 0.05 and p_worse < 0.01
    difference = sum(close) / 3 - sum(best) / 3
    assert _row(table, "gamma", "implicit")[6] == f"{difference:+.2f} (p={p_close:.2g})"
    assert _row(table, "beta", "implicit")[6].endswith("**")
    # each kind of latent has its own best row; igr is marked and explained, not ranked
    assert _row(table, "bernoulli", "disarm")[6] == "best"
    assert _row(table, "bernoulli", "igr")[6] == "not ranked†"
    assert "† igr: the bound is that of the relaxed model" in table


def test_table_explains_identical_normal_rows():
    results = [_result("normal", e, s, -100.0 - s) for e in ("reparam", "implicit") for s in (0, 1)]
    table = results_table(results, iwae_samples=10)
    assert _row(table, "normal", "implicit")[6] == "+0.00 (p=1)"
    assert "normal reparam and normal implicit compute the same gradient" in table
    single = results_table([_result("gamma", "implicit", 0, -90.0)], iwae_samples=10)
    assert _row(single, "gamma", "implicit")[5] == "-90.00"  # one seed: no ± SE
