"""``stochgrad compare``: train a grid of VAEs and report which latent/estimator works best.

The grid is latents x estimators x dims x seeds without the pairs that cannot go together (a
discrete latent with ``implicit``, a continuous one with ``disarm``; a named ``--grid``'s
score-function estimators on continuous latents); ``--dims`` sets the continuous families' size
(discrete ones keep 200 Bernoulli units, 20 x 10 categorical). ``--grid`` names the
latents/estimators (``default``: 8 rows; ``all``: every family and estimator, 31 rows) and
``--budget`` the rest (:data:`BUDGETS`: ``quick`` fits the demo's few minutes, ``full`` trains
each run until its validation bound stops improving); explicit options override both. A
finished run in ``OUT/runs/<name>/`` is reused only when its whole configuration matches
(epochs included); an interrupted or shorter run with the same settings is resumed, any other is
retrained (the log says why). ``OUT`` is locked while compare runs. Outputs:
``results.md``/``.csv`` (mean ± standard error over seeds, paired t-tests against the best row
of each kind), ``runs.csv`` (one row per run, with its encoder gradient variance) and
``figures/*.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import math
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from stochgrad.cli.checkpoint import load_checkpoint
from stochgrad.cli.diagnostics import mean_standard_error, paired_t_test
from stochgrad.cli.errors import TrainingError, UsageError
from stochgrad.cli.models import FAMILIES, SCORE
from stochgrad.cli.objectives import ESTIMATORS
from stochgrad.cli.outdir import locked
from stochgrad.cli.train import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    TrainConfig,
    build_vae,
    options_from_args,
    public_config,
    resolve_config,
    resume_mismatch,
    train,
    trained_weights,
)
from stochgrad.data import load_dataset

__all__ = [
    "BUDGETS",
    "DEFAULT_GRID",
    "GRIDS",
    "add_compare_options",
    "compare",
    "grid",
    "results_table",
]

DEFAULT_GRID = {
    "latents": "normal,gamma,beta,vonmises,bernoulli",
    "estimators": "implicit,gumbel,nvil,vimco,disarm",
    "dims": "10",
    "seeds": "0,1,2",
    "epochs": 10,
    "jobs": min(2, os.cpu_count() or 1),
}

GRIDS: dict[str, tuple[str, str]] = {
    "default": (str(DEFAULT_GRID["latents"]), str(DEFAULT_GRID["estimators"])),
    "all": (",".join(FAMILIES), ",".join(ESTIMATORS)),
}
"""Named grids, ``--grid`` name -> (latents, estimators). Score-function estimators pair only
with discrete latents here; continuous ones get ``implicit`` (and ``reparam`` for normal)."""

BUDGETS: dict[str, dict[str, Any]] = {
    # ./run demo, 3 seeds: the K=1000 test bound took 27-96 epochs' time per run, K=100 a
    # tenth of it; 10 epochs + K=100 + 5 probes of 8 draws is ~0.4x an old run (2 seeds, K=1000).
    "quick": dict(grid="default", epochs=10, iwae_samples=100, grad_draws=8,
                  validation=0.0, patience=0),
    # Until the validation -ELBO has not improved for 5 epochs, at most 50: on mnist5k the
    # validation bound still improves near epoch 100 (normal/implicit stopped at 87, best 82;
    # bernoulli/disarm's best was 99 of 100), and 100 epochs of the all grid take ~50-60 min on
    # 2 cores against ~31-37 min for 50.
    "full": dict(grid="all", epochs=50, iwae_samples=1000, grad_draws=16,
                 validation=0.1, patience=5),
}  # fmt: skip
"""``--budget`` name -> the defaults it gives the options left unset."""


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("grid")
    group.add_argument("--budget", choices=BUDGETS, default="quick",
                       help="quick: the default grid, 10 epochs, K=100 (minutes on 2 "
                       "cores); full: the `all` grid, early stopping on a 10%% "
                       "validation split (patience 5, at most 50 epochs), K=1000 (default: "
                       "quick)")  # fmt: skip
    group.add_argument(
        "--grid",
        choices=GRIDS,
        help="named latents x estimators: default (8 "
        "rows) or all (every family and estimator; default: the budget's)",
    )
    for name, help_ in (("latents", "comma-separated latent families (default: the grid's)"),
                        ("estimators", "comma-separated estimators (default: the grid's)"),
                        ("dims", "latent sizes of the continuous families"),
                        ("seeds", "e.g. 0,1,2")):  # fmt: skip
        group.add_argument(f"--{name}", default=DEFAULT_GRID[name],
                           help=f"{help_} (default: {DEFAULT_GRID[name]})")  # fmt: skip
    group.add_argument("--out", default="runs/compare", help="results folder")
    group.add_argument("--no-figures", action="store_true", help="skip the figures")
    group.add_argument("--jobs", type=int, default=DEFAULT_GRID["jobs"],
                       help="runs trained in parallel, one torch thread each (default: 2, or 1 "
                       "on one core)")  # fmt: skip


def _split(text: str, name: str, cast=str) -> list:
    try:
        values = [cast(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError as error:
        raise UsageError(f"{name}: cannot parse {text!r} ({error})") from None
    if not values:
        raise UsageError(f"{name} must list at least one value")
    return values


def grid(
    latents: list[str], estimators: list[str], dims: list[int], seeds: list[int]
) -> list[tuple[str, str, int | None, int]]:
    """The runs (latent, estimator, dim, seed) of the grid: the pairs that go together."""
    for latent in latents:
        if latent not in FAMILIES:
            raise UsageError(f"unknown latent family {latent!r}; choose from {', '.join(FAMILIES)}")
    for estimator in estimators:
        if estimator not in ESTIMATORS:
            raise UsageError(
                f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}"
            )
    runs: list[tuple[str, str, int | None, int]] = []
    for latent in latents:
        family = FAMILIES[latent]
        for estimator in estimators:
            if estimator not in family.estimators:
                continue
            for dim in [None] if family.discrete else dims:
                runs.extend((latent, estimator, dim, seed) for seed in seeds)
    if not runs:
        raise UsageError("the grid is empty: no --latents/--estimators pair can be trained")
    return runs


def compare_from_args(args: argparse.Namespace) -> int:
    budget = BUDGETS[args.budget]
    # --latents/--estimators left at their defaults take the named grid's.
    latents, estimators = GRIDS[args.grid or budget["grid"]]
    if args.latents != DEFAULT_GRID["latents"]:
        latents = args.latents
    named = args.estimators == DEFAULT_GRID["estimators"]
    runs = grid(
        _split(latents, "--latents"),
        _split(estimators if named else args.estimators, "--estimators"),
        _split(args.dims, "--dims", int),
        _split(args.seeds, "--seeds", int),
    )
    if named:  # a named grid: score-function runs on discrete latents only
        runs = [run for run in runs if FAMILIES[run[0]].discrete or run[1] not in SCORE]
    options = options_from_args(args)
    for key, value in options.items():
        if value is None and key in budget:
            options[key] = budget[key]
    base = TrainConfig(**options)
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    compare(runs, base, Path(args.out), figures=not args.no_figures, jobs=args.jobs)
    return 0


def compare(
    runs: list[tuple[str, str, int | None, int]],
    base: TrainConfig,
    out: Path,
    figures: bool = True,
    jobs: int = 1,
    log=print,
) -> list[dict[str, Any]]:
    """Train every run of the grid (or reuse it), then write the tables and figures.

    With ``jobs > 1`` the runs are trained in that many worker processes with one torch thread
    each: on a small machine this is faster and far less sensitive to other load than one
    process with several threads.
    """
    started = time.perf_counter()
    configs = [
        resolve_config(replace(base, latent=latent, estimator=estimator, dim=dim, seed=seed))
        for latent, estimator, dim, seed in runs
    ]
    dataset = load_dataset(base.data, base.data_dir)
    with locked(out):  # the lock on OUT covers every run folder below it
        return _compare(configs, dataset, base, out, figures, jobs, log, started)


def _compare(configs, dataset, base, out, figures, jobs, log, started) -> list[dict[str, Any]]:
    log(f"compare: {len(configs)} runs on {base.data}, results in {out}")
    configs = [replace(config, out=str(out / "runs" / _run_name(config))) for config in configs]
    planned = [_plan(config, log) for config in configs]
    pending = [config for config in planned if config is not None]
    log(f"{len(configs) - len(pending)} finished run(s) reused, {len(pending)} to train")
    if jobs == 1:
        for number, config in enumerate(pending, 1):
            log(f"[{number}/{len(pending)}] {_run_name(config)}")
            train(config, dataset=dataset, log=lambda line: log("    " + line))
    else:
        _train_in_workers(pending, jobs, log)
    results = []
    for config in configs:
        result = _reuse(config, dataset)
        if result is None:
            raise TrainingError(f"run {_run_name(config)} did not finish; see its train.log")
        results.append(result)
    out.mkdir(parents=True, exist_ok=True)
    table = results_table(results, base.iwae_samples)
    (out / "results.md").write_text(table + "\n")
    _write_csv(out, results)
    if figures:
        from stochgrad.cli.figures import write_figures

        write_figures(results, out / "figures")
    minutes = (time.perf_counter() - started) / 60
    log("")
    log(table)
    log(f"\ncompare finished in {minutes:.1f} min; tables and figures in {out}")
    return results


def _plan(config: TrainConfig, log) -> TrainConfig | None:
    """None when ``config.out`` holds this very run, finished; otherwise how to train it."""
    if _finished(config) is not None:
        return None
    checkpoint_path = Path(config.out) / CHECKPOINT_NAME
    if not checkpoint_path.exists():
        return replace(config, overwrite=True)  # nothing to continue; drop any stale metrics
    try:
        mismatch = resume_mismatch(load_checkpoint(checkpoint_path), config, world_size=1)
    except UsageError as error:
        mismatch = str(error)
    if mismatch is None:
        return replace(config, resume=True)  # interrupted, or shorter: continue it exactly
    log(f"retraining {_run_name(config)}: its earlier run does not match ({mismatch})")
    return replace(config, overwrite=True)


def _init_worker(parent: int) -> None:
    """Pool worker set-up: one torch thread, and die with the parent (even after kill -9)."""
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


def _train_in_workers(pending: list[TrainConfig], jobs: int, log) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),)
    ) as pool:
        futures = {pool.submit(_train_worker, config): config for config in pending}
        for number, future in enumerate(as_completed(futures), 1):
            config = futures[future]
            metrics = future.result()
            log(
                f"[{number}/{len(pending)}] {_run_name(config)}: test -ELBO "
                f"{metrics['test_neg_elbo']:.2f}, log p(x) >= {metrics['test_iwae_ll']:.2f}, "
                f"{metrics['seconds_per_epoch']:.2f} s/epoch"
            )


@functools.lru_cache(maxsize=1)
def _worker_dataset(name: str, data_dir: str | None):
    return load_dataset(name, data_dir)


def _train_worker(config: TrainConfig) -> dict[str, Any]:
    """Train one run in a worker process; its log goes to ``<run>/train.log``."""
    Path(config.out).mkdir(parents=True, exist_ok=True)
    with open(Path(config.out) / "train.log", "a") as handle:

        def log(line: str) -> None:
            handle.write(line + "\n")
            handle.flush()

        result = train(
            replace(config, progress=False),
            dataset=_worker_dataset(config.data, config.data_dir),
            log=log,
        )
    return {key: result[key] for key in result if key not in ("model", "objective", "dataset")}


def _run_name(config: TrainConfig) -> str:
    return f"{config.latent}-{config.estimator}-d{config.dim}-s{config.seed}"


def _finished(config: TrainConfig) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(metrics, checkpoint) of the finished run in ``config.out`` if its settings match."""
    run_dir = Path(config.out)
    metrics_path, checkpoint_path = run_dir / METRICS_NAME, run_dir / CHECKPOINT_NAME
    if not (metrics_path.exists() and checkpoint_path.exists()):
        return None
    try:
        metrics = json.loads(metrics_path.read_text())
        state = load_checkpoint(checkpoint_path)
    except (ValueError, OSError):  # a torn or foreign file: not a finished run (UsageError too)
        return None
    wanted = public_config(config)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("config"), dict):
        return None
    if any(metrics["config"].get(key) != value for key, value in wanted.items() if key != "out"):
        return None
    # The checkpoint is the model the metrics describe, trained for at most --epochs (an
    # earlier release could write more history than its config said).
    epochs_done = len(metrics.get("history", ()))
    if state["epoch"] != epochs_done or epochs_done > config.epochs:
        return None
    return metrics, state


def _reuse(config: TrainConfig, dataset) -> dict[str, Any] | None:
    """The finished run in ``config.out`` if its settings match, with its trained model."""
    finished = _finished(config)
    if finished is None:
        return None
    metrics, state = finished
    weights = trained_weights(state)
    data = dataset.subset(config.train_size, config.test_size)
    vae = build_vae(config, data.num_pixels)
    vae.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("vae.")})
    return {**metrics, "model": vae.to(config.device), "dataset": data}


_GROUP = ("latent", "estimator", "dim")
_RANKED = "test_iwae_ll"  # the table ranks rows by the test log p(x) bound (higher is better)
# Estimators whose test bound is not the discrete model's: not ranked against the others.
_NOT_COMPARABLE = {
    "igr": "igr: the bound is that of the relaxed model (an InvertibleGaussian posterior and "
    "prior over the relaxed one-hot vectors, Potapczynski et al., 2020), not a bound on the "
    "discrete model's log p(x); not ranked."
}


def _summaries(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (latent, estimator, dim): mean and standard error over seeds, the row's kind
    (continuous or discrete latent), and its paired comparison with the best row of its kind."""
    groups: dict[tuple, dict[int, dict[str, Any]]] = {}
    for result in results:
        group = tuple(result["config"][name] for name in _GROUP)
        groups.setdefault(group, {})[result["config"]["seed"]] = result
    rows = []
    for group, members in groups.items():
        row: dict[str, Any] = {**dict(zip(_GROUP, group, strict=True)), "seeds": len(members)}
        row["kind"] = "discrete" if FAMILIES[row["latent"]].discrete else "continuous"
        row["comparable"] = row["estimator"] not in _NOT_COMPARABLE
        for key in ("test_neg_elbo", "test_iwae_ll", "grad_variance", "grad_snr",
                    "seconds_per_epoch", "epochs_trained"):  # fmt: skip
            values = [m[key] for m in members.values() if m.get(key) is not None]
            row[f"{key}_mean"], row[f"{key}_se"] = (
                mean_standard_error(values) if values else (math.nan, math.nan)
            )
        row["_by_seed"] = {seed: m[_RANKED] for seed, m in members.items()}
        rows.append(row)
    for kind in ("continuous", "discrete"):
        ranked = [row for row in rows if row["kind"] == kind and row["comparable"]]
        if not ranked:
            continue
        best = max(ranked, key=lambda row: row[f"{_RANKED}_mean"])
        for row in ranked:
            shared = sorted(set(row["_by_seed"]) & set(best["_by_seed"]))
            row["best"] = f"{best['latent']}/{best['estimator']}"
            row["difference"] = row[f"{_RANKED}_mean"] - best[f"{_RANKED}_mean"]
            row["paired_seeds"] = len(shared)
            row["p_value"] = (
                math.nan if row is best else paired_t_test(
                    [row["_by_seed"][seed] for seed in shared],
                    [best["_by_seed"][seed] for seed in shared],
                )
            )  # fmt: skip
    for row in rows:
        del row["_by_seed"]
    return rows


def _significance(row: dict[str, Any]) -> str:
    if not row["comparable"]:
        return "not ranked†"
    if "difference" not in row:
        return ""
    if row["best"] == f"{row['latent']}/{row['estimator']}":
        return "best"
    p = row["p_value"]
    if math.isnan(p):
        return f"{row['difference']:+.2f} (n={row['paired_seeds']})"
    stars = "**" if p < 0.01 else "*" if p < 0.05 else ""
    return f"{row['difference']:+.2f} (p={p:.2g}){stars}"


def results_table(results: list[dict[str, Any]], iwae_samples: int) -> str:
    """Markdown table and its notes: mean ± standard error over seeds of the test -ELBO, the
    test log p(x) bound (with each row's paired t-test against the best row of its kind), the
    encoder gradient variance, epochs trained and time per epoch."""

    def cell(row, key, digits):
        mean, se = row[f"{key}_mean"], row[f"{key}_se"]
        if math.isnan(mean):
            return "–"
        return f"{mean:.{digits}f}" + ("" if math.isnan(se) else f" ± {se:.{digits}f}")

    rows = _summaries(results)
    lines = [
        "| latent | estimator | dim | seeds | test −ELBO ± SE (nats) | "
        f"test log p(x) ≥ ± SE, K={iwae_samples} | vs best of its kind | "
        "encoder grad variance (SNR) | epochs | s / epoch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        variance, snr = row["grad_variance_mean"], row["grad_snr_mean"]
        variance_cell = "–" if math.isnan(variance) else f"{variance:.3g} ({snr:.2g})"
        lines.append(
            f"| {row['latent']} | {row['estimator']} | {row['dim']} | {row['seeds']} | "
            f"{cell(row, 'test_neg_elbo', 2)} | {cell(row, 'test_iwae_ll', 2)} | "
            f"{_significance(row)} | {variance_cell} | "
            f"{row['epochs_trained_mean']:.3g} | {cell(row, 'seconds_per_epoch', 2)} |"
        )
    return "\n".join([*lines, "", *_notes(rows)])


def _notes(rows: list[dict[str, Any]]) -> list[str]:
    notes = [
        "± is the standard error of the mean over seeds. *vs best of its kind*: the row's mean "
        "test log p(x) bound minus that of the best row with the same kind of latent "
        "(continuous or discrete), and the two-sided p-value of a paired t-test over the seeds "
        "both rows share (the same seed gives the same initial weights and data order); "
        "\\* p < 0.05, \\*\\* p < 0.01, not corrected for the number of rows. *encoder grad "
        "variance*: the total variance (sum over the encoder's parameters) of the training "
        "gradient at the last epoch, from independent draws at fixed parameters on one fixed "
        "batch, and its signal-to-noise ratio ‖E g‖² / tr Cov g (from unbiased estimates of "
        "both, so it can fall below 0 where the mean gradient is lost in the noise); means over "
        "seeds. The "
        "SNR compares estimators whose gradients have different scales (nvil divides its "
        "learning signal by a running standard deviation).",
    ]
    present = {(row["latent"], row["estimator"]) for row in rows}
    for estimator, note in _NOT_COMPARABLE.items():
        if any(e == estimator for _, e in present):
            notes.append(f"† {note}")
    if {("normal", "reparam"), ("normal", "implicit")} <= present:
        notes.append(
            "normal reparam and normal implicit compute the same gradient: for a Normal the "
            "implicit gradient −(∂F/∂θ)/q(z) equals the explicit path of z = loc + scale·ε, so "
            "the two rows differ only by floating-point rounding."
        )
    return [f"- {note}" for note in notes]


def _write_csv(out: Path, results: list[dict[str, Any]]) -> None:
    metrics = ("test_neg_elbo", "test_iwae_ll", "seconds_per_epoch", "epochs_trained",
               "best_epoch", "grad_variance", "grad_mean_norm2", "grad_snr")  # fmt: skip
    runs = [
        {**{key: result["config"][key] for key in (*_GROUP, "seed")},
         **{key: result.get(key) for key in metrics}}
        for result in results
    ]  # fmt: skip
    for name, rows in (("results.csv", _summaries(results)), ("runs.csv", runs)):
        fields = list({key: None for row in rows for key in row})
        with open(out / name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
