"""``stochgrad train``: one VAE, with per-epoch checkpoints, exact resume and DDP.

Randomness has three owners so that a resumed run repeats an uninterrupted one bit for bit:
a data generator (shuffling and dynamic binarization, the same on every rank), the global torch
RNG (latent samples, seeded per rank) and a fixed evaluation seed used inside ``fork_rng`` (so
measuring the test loss never moves the training streams). All three are saved every epoch.

Under ``torchrun --nproc_per_node=N`` each rank takes every N-th example of the same global
batch; DDP averages the gradients and the estimators' running statistics are averaged by the
objectives themselves.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn

from stochgrad.cli.checkpoint import load_checkpoint, remove_stale_temporaries, save_atomic
from stochgrad.cli.diagnostics import gradient_variance
from stochgrad.cli.errors import TrainingError, UsageError
from stochgrad.cli.models import FAMILIES, VAE
from stochgrad.cli.objectives import (
    ESTIMATORS,
    MULTI_SAMPLE,
    Objective,
    iwae_log_likelihood,
    make_objective,
    negative_elbo,
)
from stochgrad.data import DATASETS, Dataset, binarize, load_dataset, minibatches

__all__ = [
    "TrainConfig",
    "build_vae",
    "options_from_args",
    "probe_gradient",
    "public_config",
    "resolve_config",
    "split_validation",
    "train",
    "trained_weights",
]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.json"
_EVAL_SEED = 987654321
_VALIDATION_BINARIZATION_SEED = 4321
# Settings that must match for --resume to continue the same run.
_RUN_DEFINING = (
    "latent", "estimator", "dim", "batch_size", "lr", "seed", "data", "train_size",
    "test_size", "samples", "temperature", "validation",
)  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that defines one training run (the ``stochgrad train`` options)."""

    latent: str = "normal"
    estimator: str | None = None
    dim: int | None = None
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    out: str = "runs/train"
    data: str = "mnist5k"
    data_dir: str | None = None
    train_size: int | None = None
    test_size: int | None = None
    iwae_samples: int = 1000
    samples: int = 5
    temperature: float = 0.5
    grad_draws: int = 8
    validation: float = 0.0
    patience: int = 0
    resume: bool = False
    progress: bool | None = None


_OPTIONS = ("epochs", "batch_size", "lr", "device", "data", "data_dir", "train_size",
            "test_size", "iwae_samples", "samples", "temperature", "grad_draws", "validation",
            "patience")  # fmt: skip


def options_from_args(args: Any) -> dict[str, Any]:
    """The :class:`TrainConfig` fields set by the data and training options of the parser."""
    options = {name: getattr(args, name) for name in _OPTIONS}
    return {**options, "progress": False if args.no_progress else None}


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fill per-family defaults and reject impossible settings with a one-line UsageError."""
    if config.latent not in FAMILIES:
        raise UsageError(
            f"unknown latent family {config.latent!r}; choose one of {', '.join(FAMILIES)}"
        )
    family = FAMILIES[config.latent]
    estimator = config.estimator or family.estimators[0]
    if estimator not in ESTIMATORS:
        raise UsageError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if estimator not in family.estimators:
        kind = "discrete" if family.discrete else "continuous"
        raise UsageError(
            f"--latent {family.name} cannot be trained with --estimator {estimator}: "
            f"a {kind} latent takes one of {', '.join(family.estimators)}"
        )
    dim = family.default_dim if config.dim is None else config.dim
    checks = [
        ("--dim", dim, 2 if family.name == "dirichlet" else 1),
        ("--epochs", config.epochs, 1),
        ("--batch-size", config.batch_size, 1),
        ("--iwae-samples", config.iwae_samples, 1),
        ("--samples", config.samples, 2 if estimator in MULTI_SAMPLE else 1),
        ("--patience", config.patience, 0),
    ]
    for name, value, minimum in checks:
        if value < minimum:
            raise UsageError(f"{name} must be >= {minimum}, got {value}")
    for name, rate in (("--lr", config.lr), ("--temperature", config.temperature)):
        if not rate > 0:
            raise UsageError(f"{name} must be > 0, got {rate}")
    if config.grad_draws == 1 or config.grad_draws < 0:
        raise UsageError(f"--grad-draws must be 0 (off) or >= 2, got {config.grad_draws}")
    if not 0 <= config.validation < 1:
        raise UsageError(f"--validation must be in [0, 1), got {config.validation}")
    if config.patience and not config.validation:
        raise UsageError("--patience needs a validation split: set --validation, e.g. 0.1")
    if config.data not in DATASETS:
        raise UsageError(f"unknown dataset {config.data!r}; choose one of {', '.join(DATASETS)}")
    device = config.device
    if not (device == "cpu" or device.startswith("cuda")):
        raise UsageError(f"--device must be cpu or cuda[:index], got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was requested but torch.cuda.is_available() is False")
    return replace(config, estimator=estimator, dim=dim)


def build_vae(config: TrainConfig, num_pixels: int) -> VAE:
    """The model of a resolved ``config`` for images of ``num_pixels``."""
    family = FAMILIES[config.latent]
    return VAE(family, cast(int, config.dim), num_pixels, cast(str, config.estimator),
               temperature=config.temperature)  # fmt: skip


class _Step(nn.Module):
    """The VAE and its objective (with any learned control variate) as one module, so DDP sees
    and syncs both."""

    def __init__(self, vae: VAE, objective: Objective):
        super().__init__()
        self.vae = vae
        self.objective = objective

    def forward(self, images: Tensor) -> Tensor:
        return self.objective(images)


def _distributed(device: str) -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def _rank_device(device: str, world_size: int) -> torch.device:
    if device.startswith("cuda") and world_size > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device(device)


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _gather(obj: Any, world_size: int) -> list[Any]:
    if world_size == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered


@contextlib.contextmanager
def _fixed_seed(device: torch.device):
    """The evaluation seed inside ``fork_rng``: the training RNG streams do not move."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(_EVAL_SEED)
        yield


def _evaluate(vae: VAE, images: Tensor, device: torch.device, fn: Callable, *args) -> float:
    """Run ``fn`` under a fixed seed without touching the training RNG streams."""
    was_training = vae.training
    vae.eval()
    with _fixed_seed(device):
        value = fn(vae, images, *args)
    vae.train(was_training)
    return value


def train(
    config: TrainConfig,
    dataset: Dataset | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train one VAE as ``config`` says and return its metrics (also written to metrics.json).

    The returned dict holds the resolved config, ``history`` (one record per epoch), the final
    ``test_neg_elbo``, ``test_iwae_ll``, ``seconds_per_epoch``, ``epochs_trained``,
    ``best_epoch`` (early stopping; else the last), ``grad_variance``, ``grad_mean_norm2`` and
    ``grad_snr`` (the last probe's).

    With ``validation`` > 0 the last fraction of the training images is held out and its -ELBO
    recorded every epoch; with ``patience`` > 0 training stops once it has not improved for that
    many epochs, and the test metrics are those of the best epoch's weights. With ``grad_draws``
    G >= 2 the encoder gradient is probed (:func:`probe_gradient`) after epochs 1, 2, 4, 8, ...
    and the last one.
    """
    config = resolve_config(config)
    rank, world_size, owns_group = _distributed(config.device)
    try:
        return _train(config, dataset, log if rank == 0 else (lambda _: None), rank, world_size)
    finally:
        if owns_group:
            dist.destroy_process_group()


def _train(config, dataset, log, rank, world_size) -> dict[str, Any]:
    device = _rank_device(config.device, world_size)
    if dataset is None:
        dataset = load_dataset(config.data, config.data_dir)
    dataset = dataset.subset(config.train_size, config.test_size)
    dataset, validation_images = split_validation(dataset, config.validation)
    if config.batch_size % world_size:
        raise UsageError(
            f"--batch-size {config.batch_size} must be divisible by the {world_size} processes"
        )
    out = Path(config.out)
    checkpoint_path = out / CHECKPOINT_NAME

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    vae = build_vae(config, dataset.num_pixels)
    objective = make_objective(
        config.estimator, vae, dataset.num_pixels, config.samples, config.temperature
    )
    step = _Step(vae, objective).to(device)
    model: nn.Module = step
    if world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            step,
            device_ids=[device.index] if device.type == "cuda" else None,
            # The estimators average their own statistics; only the initial buffers are synced.
            forward_sync_buffers=False,
        )
    optimizer = torch.optim.Adam(step.parameters(), lr=config.lr)
    data_generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed * 1_000_003 + rank)
    if device.type == "cuda":
        torch.cuda.manual_seed(config.seed * 1_000_003 + rank)

    history: list[dict[str, float]] = []
    start_epoch = 0
    best: dict[str, Any] = {"epoch": 0, "model": None}
    if config.resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        _check_resumable(state, config, world_size)
        step.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        data_generator.set_state(state["rng"]["data"])
        _set_rng_state(state["rng"]["ranks"][rank], device)
        history = state["history"]
        start_epoch = state["epoch"]
        best = state.get("best", best)
        log(f"resumed from {checkpoint_path} after epoch {start_epoch}")
    if rank == 0:
        remove_stale_temporaries(checkpoint_path)

    test_images = dataset.binarized_test_images().to(device)
    train_images = dataset.train_images
    probe_images = _probe_batch(train_images, config.batch_size).to(device)
    if validation_images is not None:
        validation_images = validation_images.to(device)
    log(
        f"train {config.latent}/{config.estimator} dim={config.dim} on {dataset.name} "
        f"({len(train_images)} train, {len(test_images)} test), {world_size} process(es)"
    )
    for epoch in range(start_epoch + 1, config.epochs + 1):
        if _stopped(history, best, config.patience):
            break
        started = time.perf_counter()
        batches = minibatches(len(train_images), config.batch_size, data_generator)
        total = torch.zeros(2, dtype=torch.float64)
        for index in _progress(batches, config, rank, epoch):
            images = binarize(train_images[index], data_generator)[rank::world_size].to(device)
            loss = model(images)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss.item()} in epoch {epoch}; try a smaller --lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += torch.tensor([objective.bound, 1.0], dtype=torch.float64)
        if world_size > 1:
            dist.all_reduce(total)
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch,
            "step": epoch * len(batches),
            "train_bound": (total[0] / total[1]).item(),
            "test_neg_elbo": _evaluate(vae, test_images, device, negative_elbo)
            if rank == 0
            else float("nan"),
            "seconds": seconds,
        }
        if validation_images is not None:  # on every rank: all take the same stopping decision
            record["validation_neg_elbo"] = _evaluate(vae, validation_images, device, negative_elbo)
            earlier = [r["validation_neg_elbo"] for r in history]
            if config.patience and record["validation_neg_elbo"] < min(earlier, default=math.inf):
                best = {"epoch": epoch, "model": copy.deepcopy(step.state_dict())}
        last = epoch == config.epochs or _stopped([*history, record], best, config.patience)
        if config.grad_draws and (epoch & (epoch - 1) == 0 or last):  # 1, 2, 4, 8, ... and last
            started = time.perf_counter()
            record.update(probe_gradient(step, probe_images, config.grad_draws, device))
            record["probe_seconds"] = time.perf_counter() - started
        history.append(record)
        log(_epoch_line(record, config.epochs))
        _save(checkpoint_path, step, optimizer, data_generator, history, config, rank,
              world_size, device, best)  # fmt: skip

    if best["model"] is not None and config.patience:
        step.load_state_dict(best["model"])
        log(f"restored the weights of epoch {best['epoch']} (best validation -ELBO)")

    result: dict[str, Any] = {}
    if rank == 0:
        log(f"importance-weighted log-likelihood with K={config.iwae_samples} ...")
        times = [record["seconds"] for record in history]
        result = {
            "config": public_config(config),
            "history": history,
            "test_neg_elbo": _evaluate(vae, test_images, device, negative_elbo),
            "test_iwae_ll": _evaluate(
                vae, test_images, device, iwae_log_likelihood, config.iwae_samples
            ),
            "seconds_per_epoch": sum(times) / max(len(times), 1),
            "epochs_trained": len(history),
            "best_epoch": best["epoch"] if config.patience else len(history),
            "grad_variance": _last(history, "grad_variance"),
            "grad_mean_norm2": _last(history, "grad_mean_norm2"),
            "grad_snr": _last(history, "grad_snr"),
            "world_size": world_size,
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS_NAME).write_text(json.dumps(result, indent=2))
        log(
            f"done: test -ELBO {result['test_neg_elbo']:.3f}  "
            f"test log p(x) >= {result['test_iwae_ll']:.3f} (K={config.iwae_samples})  "
            f"{result['seconds_per_epoch']:.2f} s/epoch"
        )
    return {**result, "model": vae, "objective": objective, "dataset": dataset}


def split_validation(dataset: Dataset, fraction: float) -> tuple[Dataset, Tensor | None]:
    """The training set without its last ``fraction`` of images, and those images binarized
    once with a fixed generator (the same split and pixels for every seed); ``None`` at 0."""
    held = round(fraction * len(dataset.train_images))
    if held == 0:
        return dataset, None
    if held >= len(dataset.train_images):
        raise UsageError(f"--validation {fraction} leaves no training images")
    generator = torch.Generator().manual_seed(_VALIDATION_BINARIZATION_SEED)
    validation = binarize(dataset.train_images[-held:], generator)
    kept = replace(dataset, train_images=dataset.train_images[:-held],
                   train_labels=dataset.train_labels[:-held])  # fmt: skip
    return kept, validation


def _stopped(history: list[dict[str, float]], best: dict[str, Any], patience: int) -> bool:
    """Whether early stopping has ended the run: ``patience`` epochs without a better
    validation -ELBO than the best epoch's."""
    return bool(patience and history and history[-1]["epoch"] - best["epoch"] >= patience)


def _probe_batch(train_images: Tensor, batch_size: int) -> Tensor:
    """The fixed held batch of the gradient probes: the first training images, binarized with
    the evaluation seed."""
    generator = torch.Generator().manual_seed(_EVAL_SEED)
    return binarize(train_images[:batch_size], generator)


def probe_gradient(step: nn.Module, images: Tensor, draws: int, device: torch.device) -> dict:
    """:func:`~stochgrad.cli.diagnostics.gradient_variance` of the training objective with
    respect to the encoder's parameters, ``draws`` estimates on ``images`` at the current
    parameters.

    It runs on a deep copy of the model and objective (so the optimizer, the gradients, the
    learned control variates' running statistics and the loss history stay untouched) under a
    fixed seed inside ``fork_rng`` (so the training random streams do not move).
    """
    probe = _detached_copy(step)
    with _fixed_seed(device):
        encoder = cast(VAE, probe.vae).encoder
        return gradient_variance(lambda: probe(images), encoder.parameters(), draws)


def _detached_copy(module: nn.Module) -> nn.Module:
    """``copy.deepcopy(module)``, also when it caches tensors of the last forward pass (the
    protocol objects keep their parameters and distributions): those are not graph leaves, which
    deepcopy refuses, so the copy gets detached clones of them."""
    memo: dict[int, Any] = {}
    seen: set[int] = set()
    pending: list[Any] = [module]
    while pending:
        value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, Tensor):
            if value.grad_fn is not None:
                memo[id(value)] = value.detach().clone()
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list | tuple | set):
            pending.extend(value)
        elif hasattr(value, "__dict__") and not isinstance(value, type):
            pending.extend(vars(value).values())
    return copy.deepcopy(module, memo)


def _last(history: list[dict[str, float]], key: str) -> float | None:
    values = [record[key] for record in history if key in record]
    return values[-1] if values else None


def _epoch_line(record: dict[str, float], epochs: int) -> str:
    line = (
        f"epoch {record['epoch']:3d}/{epochs}  train bound {record['train_bound']:9.3f}  "
        f"test -ELBO {record['test_neg_elbo']:9.3f}  {record['seconds']:6.2f} s"
    )
    if "validation_neg_elbo" in record:
        line += f"  validation -ELBO {record['validation_neg_elbo']:9.3f}"
    if "grad_variance" in record:
        line += f"  encoder grad variance {record['grad_variance']:.3g}"
    return line


def trained_weights(state: dict[str, Any]) -> dict[str, Tensor]:
    """The weights a checkpoint's test metrics were measured with: the best epoch's when early
    stopping restored them, else the last epoch's."""
    best = state.get("best") or {}
    patience = state.get("config", {}).get("patience", 0)
    return best["model"] if patience and best.get("model") is not None else state["model"]


def _progress(batches, config: TrainConfig, rank: int, epoch: int):
    if config.progress is False or rank != 0:
        return batches
    from tqdm.auto import tqdm

    # disable=None lets tqdm hide the bar when stderr is not a terminal.
    disable = None if config.progress is None else False
    return tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=disable)


def public_config(config: TrainConfig) -> dict[str, Any]:
    """The config as saved in checkpoints and metrics (without resume and progress)."""
    return {
        key: value for key, value in asdict(config).items() if key not in ("resume", "progress")
    }


def _save(path, step, optimizer, data_generator, history, config, rank, world_size, device,
          best):  # fmt: skip
    rng = _gather(_rng_state(device), world_size)
    if rank == 0:
        state = {
            "epoch": history[-1]["epoch"],
            "history": history,
            "config": public_config(config),
            "world_size": world_size,
            "model": step.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": {"data": data_generator.get_state(), "ranks": rng},
            "best": best,
        }
        save_atomic(state, path)
    if world_size > 1:
        dist.barrier()


def _check_resumable(state: dict[str, Any], config: TrainConfig, world_size: int) -> None:
    saved = state["config"]
    for key in _RUN_DEFINING:
        if saved.get(key) != getattr(config, key):
            raise UsageError(
                f"--resume: the checkpoint was written with {key}={saved.get(key)!r}, "
                f"this run has {key}={getattr(config, key)!r}"
            )
    if state["world_size"] != world_size:
        raise UsageError(
            f"--resume: the checkpoint was written by {state['world_size']} process(es), "
            f"this run has {world_size}"
        )
