"""``stochgrad compare``: train a grid of VAEs and report which latent/estimator works best.

The grid is latents x estimators x dims x seeds without the pairs that cannot go together (a
discrete latent with ``implicit``, a continuous one with ``disarm``; the default list's nvil and
vimco on continuous latents); ``--dims`` sets the continuous families' size (discrete ones keep
200 Bernoulli units, 20 x 10 categorical). A finished run in ``OUT/runs/<name>/`` is reused only
when its whole configuration matches (epochs included); an interrupted or shorter run with the
same settings is resumed, any other is retrained (the log says why). ``OUT`` is locked while
compare runs. Outputs: ``results.md``/``.csv``, ``runs.csv`` and ``figures/*.png``.
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
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from stochgrad.cli.checkpoint import load_checkpoint
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
)
from stochgrad.data import load_dataset

__all__ = ["DEFAULT_GRID", "add_compare_options", "compare", "grid", "results_table"]

DEFAULT_GRID = {
    "latents": "normal,gamma,beta,vonmises,bernoulli",
    "estimators": "implicit,gumbel,nvil,vimco,disarm",
    "dims": "10",
    "seeds": "0,1",
    "epochs": 10,
    "jobs": min(2, os.cpu_count() or 1),
}


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("grid")
    for name, help_ in (("latents", "comma-separated latent families"),
                        ("estimators", "comma-separated estimators"),
                        ("dims", "latent sizes of the continuous families"),
                        ("seeds", "e.g. 0,1,2")):  # fmt: skip
        group.add_argument(f"--{name}", default=DEFAULT_GRID[name], help=help_)
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
    runs = grid(
        _split(args.latents, "--latents"),
        _split(args.estimators, "--estimators"),
        _split(args.dims, "--dims", int),
        _split(args.seeds, "--seeds", int),
    )
    if args.estimators == DEFAULT_GRID["estimators"]:  # score-function runs: discrete latents only
        runs = [run for run in runs if FAMILIES[run[0]].discrete or run[1] not in SCORE]
    base = TrainConfig(**options_from_args(args))
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
    planned = [_plan(config, dataset, log) for config in configs]
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


def _plan(config: TrainConfig, dataset, log) -> TrainConfig | None:
    """None when ``config.out`` holds this very run, finished; otherwise how to train it."""
    if _reuse(config, dataset) is not None:
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


def _reuse(config: TrainConfig, dataset) -> dict[str, Any] | None:
    """The finished run in ``config.out`` if its settings match, with its trained model."""
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
    state = state["model"]
    data = dataset.subset(config.train_size, config.test_size)
    vae = build_vae(config, data.num_pixels)
    vae.load_state_dict({key[4:]: value for key, value in state.items() if key.startswith("vae.")})
    return {**metrics, "model": vae.to(config.device), "dataset": data}


_GROUP = ("latent", "estimator", "dim")


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else math.nan


def _summaries(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(tuple(result["config"][key] for key in _GROUP), []).append(result)
    rows = []
    for group, members in groups.items():
        row: dict[str, Any] = {**dict(zip(_GROUP, group, strict=True)), "seeds": len(members)}
        for key in ("test_neg_elbo", "test_iwae_ll", "seconds_per_epoch"):
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std([m[key] for m in members])
        rows.append(row)
    return rows


def results_table(results: list[dict[str, Any]], iwae_samples: int) -> str:
    """Markdown table: mean ± std over seeds of the test -ELBO, log p(x) and time per epoch."""

    def cell(row, key, digits):
        mean, std = row[f"{key}_mean"], row[f"{key}_std"]
        return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")

    lines = [
        "| latent | estimator | dim | seeds | test −ELBO (nats) | "
        f"test log p(x) ≥, K={iwae_samples} | s / epoch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in _summaries(results):
        lines.append(
            f"| {row['latent']} | {row['estimator']} | {row['dim']} | {row['seeds']} | "
            f"{cell(row, 'test_neg_elbo', 2)} | {cell(row, 'test_iwae_ll', 2)} | "
            f"{cell(row, 'seconds_per_epoch', 2)} |"
        )
    return "\n".join(lines)


def _write_csv(out: Path, results: list[dict[str, Any]]) -> None:
    metrics = ("test_neg_elbo", "test_iwae_ll", "seconds_per_epoch")
    runs = [
        {**{key: result["config"][key] for key in (*_GROUP, "seed")},
         "epochs": len(result["history"]), **{key: result[key] for key in metrics}}
        for result in results
    ]  # fmt: skip
    for name, rows in (("results.csv", _summaries(results)), ("runs.csv", runs)):
        with open(out / name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
