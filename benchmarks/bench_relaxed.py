"""Benchmark ``rsample`` + ``backward`` of every stochgrad.relaxed class against relaxit 1.2.1.

Both libraries run in this process on the same parameters and shapes (torch.utils.benchmark,
process CPU time, interleaved repeats); the script prints the best of the repeats' medians for
each and the ratio relaxit / stochgrad (at least 1: stochgrad is as fast or faster, the target),
plus the shapes each library returns, flagging where relaxit's shapes disagree with torch's
conventions. Self-contained: it imports only the public library.

Run: ``python benchmarks/bench_relaxed.py [--batch 4096] [--categories 200] [--threads 1]``.
Needs ``relaxit==1.2.1`` (and its dependency ``pyro-ppl``): ``pip install -e .[bench]``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType

import torch
from torch.utils import benchmark

import stochgrad.relaxed as ours

RELAXIT_VERSION = "1.2.1"


@dataclass
class Case:
    name: str
    ours: Callable[[dict], torch.distributions.Distribution]
    theirs: Callable[[ModuleType, dict], object]
    params: Callable[[int, int], dict]
    note: str = ""


def _correlation(k: int) -> torch.Tensor:
    """An equicorrelated matrix with correlation 0.3."""
    return 0.7 * torch.eye(k) + 0.3 * torch.ones(k, k)


CASES: list[Case] = [
    Case(
        "GaussianRelaxedBernoulli",
        lambda p: ours.GaussianRelaxedBernoulli(p["loc"], p["scale"]),
        lambda d, p: d.GaussianRelaxedBernoulli(p["loc"], p["scale"]),
        lambda b, k: {"loc": torch.rand(b, k), "scale": torch.full((b, k), 0.5)},
    ),
    Case(
        "CorrelatedRelaxedBernoulli",
        lambda p: ours.CorrelatedRelaxedBernoulli(p["pi"], p["R"], p["tau"]),
        lambda d, p: d.CorrelatedRelaxedBernoulli(p["pi"], p["R"], p["tau"]),
        lambda b, k: {
            "pi": torch.rand(b, k) * 0.8 + 0.1,
            "R": _correlation(k),
            "tau": torch.tensor(0.5),
        },
        "relaxit's log_prob is a clipped-normal density, not the law of its rsample",
    ),
    Case(
        "GumbelSoftmaxTopK",
        lambda p: ours.GumbelSoftmaxTopK(p["logits"], 3, p["tau"], hard=True),
        lambda d, p: d.GumbelSoftmaxTopK(
            logits=p["logits"], K=torch.tensor(3), tau=p["tau"], hard=True
        ),
        lambda b, k: {"logits": torch.randn(b, k), "tau": torch.tensor(0.5)},
        "relaxit perturbs probs instead of logits, rsample takes no sample_shape, "
        "event_shape is () and log_prob is a Bernoulli cross-entropy",
    ),
    Case(
        "StraightThroughBernoulli",
        lambda p: ours.StraightThroughBernoulli(p["probs"]),
        lambda d, p: d.StraightThroughBernoulli(p["probs"]),
        lambda b, k: {"probs": torch.rand(b, k)},
    ),
    Case(
        "StochasticTimesSmooth",
        lambda p: ours.StochasticTimesSmooth(p["probs"]),
        lambda d, p: d.StochasticTimesSmooth(p["probs"]),
        lambda b, k: {"probs": torch.rand(b, k)},
        "relaxit returns sqrt(p) * Bernoulli(sqrt p), not a Bernoulli(p) draw",
    ),
    Case(
        "InvertibleGaussian",
        lambda p: ours.InvertibleGaussian(p["loc"], p["scale"], p["temperature"]),
        lambda d, p: d.InvertibleGaussian(p["loc"], p["scale"], p["temperature"]),
        lambda b, k: {
            "loc": torch.randn(b, k - 1),
            "scale": torch.ones(b, k - 1),
            "temperature": torch.tensor(0.5),
        },
        "relaxit: event_shape () and batch_shape (B, K-1) for samples of shape (B, K); "
        "log_prob has the wrong Jacobian sign and shape (B, K-1)",
    ),
    Case(
        "HardConcrete",
        lambda p: ours.HardConcrete(p["alpha"], p["beta"], p["xi"], p["gamma"]),
        lambda d, p: d.HardConcrete(p["alpha"], p["beta"], p["xi"], p["gamma"]),
        lambda b, k: {
            "alpha": torch.rand(b, k) + 0.5,
            "beta": torch.tensor(2 / 3),
            "xi": torch.tensor(1.1),
            "gamma": torch.tensor(-0.1),
        },
        "relaxit draws one uniform of shape (1,) shared by the whole batch",
    ),
    Case(
        "LogisticNormalSoftmax",
        lambda p: ours.LogisticNormalSoftmax(p["loc"], p["scale"]),
        lambda d, p: d.LogisticNormalSoftmax(p["loc"], p["scale"]),
        lambda b, k: {"loc": torch.randn(b, k), "scale": torch.ones(b, k)},
        "relaxit's log_prob treats softmax as a bijection of R^K (it is not)",
    ),
    Case(
        "GeneralizedGumbelSoftmax",
        lambda p: ours.GeneralizedGumbelSoftmax(p["values"], logits=p["logits"], tau=p["tau"]),
        lambda d, p: d.GeneralizedGumbelSoftmax(p["values"], logits=p["logits"], tau=p["tau"]),
        lambda b, k: {
            "values": torch.arange(k, dtype=torch.float32),
            "logits": torch.randn(b, k),
            "tau": torch.tensor(0.5),
        },
        "relaxit: rsample takes no sample_shape; event_shape () for one-hot samples",
    ),
    Case(
        "DecoupledStraightThroughGumbelSoftmax",
        lambda p: ours.DecoupledStraightThroughGumbelSoftmax(p["logits"], 0.5, 2.0),
        lambda d, p: d.DecoupledStraightThroughGumbelSoftmax(0.5, 2.0, logits=p["logits"]),
        lambda b, k: {"logits": torch.randn(b, k)},
        "relaxit's forward temperature does not change the forward law (argmax is invariant)",
    ),
    Case(
        "RebarRelaxation",
        lambda p: ours.RebarRelaxation(p["theta"], p["lambd"]),
        lambda d, p: d.RebarRelaxation(p["theta"], p["lambd"]),
        lambda b, k: {"theta": torch.rand(b, k) * 0.8 + 0.1, "lambd": torch.tensor(0.5)},
        "relaxit draws one scalar uniform shared by the whole batch and defines no arg_constraints",
    ),
]


def _rsample_backward(make: Callable, params: dict) -> None:
    leaves = {
        k: v.detach().requires_grad_(v.is_floating_point() and k not in ("values", "R"))
        for k, v in params.items()
    }
    z = make(leaves).rsample()
    z.sum().backward()


def _time(make: Callable, params: dict, min_run_time: float) -> float:
    # Process CPU time, not wall time: on a shared machine, time spent descheduled is not ours.
    timer = benchmark.Timer(
        stmt="run(make, params)",
        globals={"run": _rsample_backward, "make": make, "params": params},
        timer=time.process_time,
    )
    return timer.blocked_autorange(min_run_time=min_run_time).median


def _shapes(dist) -> str:
    try:
        value = dist.rsample()
    except Exception as error:  # report, do not crash: this is a survey of another library
        return f"rsample failed: {type(error).__name__}"
    try:
        log_prob = tuple(dist.log_prob(value.detach()).shape)
    except Exception as error:
        log_prob = f"log_prob failed: {type(error).__name__}"
    return (
        f"sample {tuple(value.shape)} batch {tuple(dist.batch_shape)} "
        f"event {tuple(dist.event_shape)} log_prob {log_prob}"
    )


def import_relaxit() -> ModuleType | None:
    """The ``relaxit`` package with its ``distributions`` subpackage loaded, or ``None``."""
    try:
        import relaxit
        import relaxit.distributions  # noqa: F401  (relaxit does not import it itself)
    except ImportError:
        return None
    return relaxit


@contextlib.contextmanager
def _quiet_relaxit() -> Iterator[None]:
    # relaxit's RebarRelaxation warns that it defines no arg_constraints on every construction.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not define `arg_constraints`")
        yield


Row = tuple[str, float, float | None]


def relaxed_rows(
    batch: int = 256,
    categories: int = 16,
    min_run_time: float = 0.2,
    repeats: int = 5,
    relaxit: ModuleType | None = None,
) -> list[Row]:
    """``(class, stochgrad seconds, relaxit seconds or None)`` per case."""
    torch.manual_seed(0)
    rows = []
    with _quiet_relaxit():
        for case in CASES:
            params = case.params(batch, categories)
            # Interleaved repeats, best median of each: the machine may be shared.
            ours_times, theirs_times = [], []
            for _ in range(repeats):
                ours_times.append(_time(case.ours, params, min_run_time))
                if relaxit is not None:
                    theirs = functools.partial(case.theirs, relaxit.distributions)
                    theirs_times.append(_time(theirs, params, min_run_time))
            rows.append((case.name, min(ours_times), min(theirs_times, default=None)))
    return rows


def relaxed_table(rows: list[Row]) -> str:
    """Markdown table of :func:`relaxed_rows`; with relaxit, ratios and their geometric mean."""
    if any(theirs is None for _, _, theirs in rows):
        lines = ["| class | stochgrad (µs) |", "|---|---|"]
        lines += [f"| {name} | {1e6 * seconds:.1f} |" for name, seconds, _ in rows]
        return "\n".join(lines)
    lines = [
        "| class | stochgrad (µs) | relaxit (µs) | ratio | target >= 1 |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {1e6 * ours_time:.1f} | {1e6 * theirs_time:.1f} | "
        f"{theirs_time / ours_time:.2f} | {'met' if theirs_time >= ours_time else 'MISSED'} |"
        for name, ours_time, theirs_time in rows
    ]
    log_ratios = [math.log(theirs_time / ours_time) for _, ours_time, theirs_time in rows]
    lines.append(f"| geometric mean | | | {math.exp(sum(log_ratios) / len(log_ratios)):.2f} |")
    return "\n".join(lines)


def shape_notes(batch: int, categories: int, relaxit: ModuleType) -> str:
    """The shapes each library returns for every case, and where relaxit departs from torch."""
    torch.manual_seed(0)
    notes = []
    with _quiet_relaxit():
        for case in CASES:
            params = case.params(batch, categories)
            notes.append(
                f"{case.name}:\n  stochgrad {_shapes(case.ours(params))}\n"
                f"  relaxit   {_shapes(case.theirs(relaxit.distributions, params))}"
                + (f"\n  note: {case.note}" if case.note else "")
            )
    return "\n".join(notes)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--categories", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-run-time", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-shapes", action="store_true", help="skip the shape survey")
    args = parser.parse_args()
    relaxit = import_relaxit()
    if relaxit is None:
        parser.error("relaxit is not installed: pip install relaxit==1.2.1 (or -e .[bench])")

    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, relaxit {relaxit.__version__}, threads {args.threads}, "
        f"batch {args.batch}, categories {args.categories}, rsample() + backward(), "
        "best of the repeats' median process CPU time"
    )
    rows = relaxed_rows(args.batch, args.categories, args.min_run_time, args.repeats, relaxit)
    print(relaxed_table(rows))
    print("\nratio = relaxit time / stochgrad time (above 1: stochgrad is faster)\n")
    if not args.no_shapes:
        print("Shapes for parameters of batch shape", (args.batch, args.categories), "\n")
        print(shape_notes(args.batch, args.categories, relaxit))


if __name__ == "__main__":
    main()
