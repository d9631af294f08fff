"""The reports of ``stochgrad bench`` (mixture, relaxed, estimators) at tiny sizes.

Timings are never asserted: only that every expected row is there and the sizes are printed.
"""

import math
import sys

import pytest
import torch

from stochgrad.cli import bench
from stochgrad.cli.report_estimators import TOY_PROBLEMS, estimators_report, toy_rows
from stochgrad.cli.report_mixture import METHODS, mixture_report
from stochgrad.cli.report_relaxed import CASES, relaxed_report

ESTIMATORS = [
    "REINFORCE",
    "REINFORCE+moving avg",
    "NVIL (learned b(x), no norm.)",
    "REINFORCE leave-one-out K=2",
    "MuProp+moving avg",
    "ARM",
    "DisARM",
    "REBAR (η=1, λ=0.5 fixed)",
    "REBAR (η, λ tuned)",
    "RELAX (tuned)",
    "straight-through",
    "Gumbel straight-through λ=0.5",
    "Concrete relaxation λ=0.5",
]


def _table_rows(text: str, first_cell: str) -> list[list[str]]:
    """The cells of the Markdown rows of ``text`` whose first cell is ``first_cell``."""
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith(f"| {first_cell} |")
    ]


def test_bench_discovers_every_part():
    assert {"report_estimators", "report_mixture", "report_relaxed"} <= set(
        bench.discover_reports()
    )


def test_mixture_report_has_every_method_and_concentration():
    text = mixture_report(components=3, dims=2, batch=16, samples=500, repeats=1)
    assert "3 diagonal Gaussians in 2 dims, batch 16" in text and "500 samples" in text
    for name in METHODS:
        (row,) = _table_rows(text, name)
        assert len(row) == 8 and all(math.isfinite(float(cell)) for cell in row[1:])
    for kappa in ("0.5", "5", "50", "500"):
        (row,) = _table_rows(text, kappa)
        assert len(row) == 7 and all(float(cell) >= 0 for cell in row[1:])


def _relaxed(monkeypatch, installed: bool) -> str:
    if not installed:  # an import of a name mapped to None raises ImportError
        monkeypatch.setitem(sys.modules, "relaxit", None)
        monkeypatch.setitem(sys.modules, "relaxit.distributions", None)
    return relaxed_report(batch=4, categories=3, min_run_time=1e-3, repeats=1)


def test_relaxed_report_without_relaxit_times_stochgrad_and_says_how_to_install(monkeypatch):
    text = _relaxed(monkeypatch, installed=False)
    assert "parameters of shape (4, 3)" in text
    assert "relaxit is not installed: `pip install relaxit==1.2.1`" in text
    assert "| class | stochgrad (µs) |" in text and "ratio" not in text
    for case in CASES:
        (row,) = _table_rows(text, case.name)
        assert len(row) == 2 and float(row[1]) > 0


def test_relaxed_report_with_relaxit_gives_ratios(monkeypatch):
    pytest.importorskip("relaxit.distributions")
    text = _relaxed(monkeypatch, installed=True)
    assert "relaxit 1.2.1" in text and "not installed" not in text
    for case in CASES:
        (row,) = _table_rows(text, case.name)
        ours, theirs, ratio = map(float, row[1:])
        assert ratio == pytest.approx(theirs / ours, rel=0.05, abs=0.01)  # printed rounded
    assert len(_table_rows(text, "geometric mean")) == 1


def test_estimators_report_has_every_estimator_on_every_toy_problem():
    text = estimators_report(num=20, warm_steps=1)
    assert text.startswith("20 gradient estimates per estimator")
    assert "bench_estimators_variance.py" in text  # where the VAE table is
    titles = [line for line in text.splitlines() if line.startswith("### Toy problem")]
    assert titles == [
        "### Toy problem, t = 0.499, d = 1",
        "### Toy problem, t = 0.45, d = 1",
        "### Toy problem, t = 0.45, d = 10",
    ]
    for name in ESTIMATORS:
        rows = _table_rows(text, name)
        assert len(rows) == len(TOY_PROBLEMS) and all(len(row) == 7 for row in rows)
    (reference,) = {row[4] for row in _table_rows(text, "REINFORCE+moving avg")}
    assert reference == "1"


@pytest.mark.parametrize("target", [0.499, 0.45, 0.2])
def test_toy_exact_gradient_matches_closed_form(target):
    # E f = σ(α)(1 − t)² + (1 − σ(α)) t², so dE/dα = σ(α)(1 − σ(α))(1 − 2t).
    _, exact = toy_rows((target,), (0.3,), num=2, warm_steps=0)
    sigma = torch.sigmoid(torch.tensor(0.3, dtype=torch.float64))
    assert exact.item() == pytest.approx((sigma * (1 - sigma) * (1 - 2 * target)).item(), rel=1e-12)
