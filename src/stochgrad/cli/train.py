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

from stochgrad import estimators
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
    normalize_learning_signal,
)
from stochgrad.cli.outdir import locked
from stochgrad.data import DATASETS, Dataset, binarize, load_dataset, minibatches

__all__ = [
    "TrainConfig",
    "build_vae",
    "options_from_args",
    "probe_gradient",
    "public_config",
    "resolve_config",
    "resume_mismatch",
    "split_validation",
    "to_json",
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
    "test_size", "samples", "temperature", "hidden", "optimizer", "binarization", "anneal_rate",
    "anneal_every", "steps", "normalize_signal", "validation",
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
    overwrite: bool = False
    progress: bool | None = None
    # The settings of published setups (`stochgrad preset`); the defaults change nothing.
    hidden: tuple[int, ...] | None = None  # encoder widths (decoder mirrors); None: (256, 128)
    optimizer: str = "adam"  # or "sgd": SGD with momentum 0.9
    steps: int | None = None  # stop after this many updates in all (replaces epochs)
    binarization: str = "dynamic"  # or "static": the training images binarized once
    anneal_rate: float = 0.0  # > 0: temperature max(temperature, exp(-rate t)), Jang et al.
    anneal_every: int = 1  # t advances in multiples of this many steps
    normalize_signal: bool = False  # reinforce/muprop: NVIL's variance normalisation


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
    _check_schedule(config)
    if config.grad_draws == 1 or config.grad_draws < 0:
        raise UsageError(f"--grad-draws must be 0 (off) or >= 2, got {config.grad_draws}")
    if not 0 <= config.validation < 1:
        raise UsageError(f"--validation must be in [0, 1), got {config.validation}")
    if config.patience and not config.validation:
        raise UsageError("--patience needs a validation split: set --validation, e.g. 0.1")
    if config.data not in DATASETS:
        raise UsageError(f"unknown dataset {config.data!r}; choose one of {', '.join(DATASETS)}")
    if config.data_dir is not None and config.data != "mnist":
        raise UsageError(
            f"--data-dir is only read by --data mnist; --data {config.data} is built in"
        )
    if config.resume and config.overwrite:
        raise UsageError("--resume continues the run in --out, --overwrite replaces it: pick one")
    device = config.device
    if not (device == "cpu" or device.startswith("cuda")):
        raise UsageError(f"--device must be cpu or cuda[:index], got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was requested but torch.cuda.is_available() is False")
    return replace(config, estimator=estimator, dim=dim)


def _check_schedule(config: TrainConfig) -> None:
    checks = [
        ("steps", config.steps is None or config.steps >= 1, ">= 1", config.steps),
        ("hidden", config.hidden is None or all(w >= 1 for w in config.hidden), "widths >= 1",
         config.hidden),
        ("optimizer", config.optimizer in OPTIMIZERS, " or ".join(OPTIMIZERS), config.optimizer),
        ("binarization", config.binarization in ("dynamic", "static"), "dynamic or static",
         config.binarization),
        ("anneal_rate", config.anneal_rate >= 0, ">= 0", config.anneal_rate),
        ("anneal_every", config.anneal_every >= 1, ">= 1", config.anneal_every),
    ]  # fmt: skip
    for name, valid, allowed, value in checks:
        if not valid:
            raise UsageError(f"{name} must be {allowed}, got {value!r}")


OPTIMIZERS = ("adam", "sgd")


def make_optimizer(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum 0.9 (``config.optimizer``), at ``config.lr``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9)
    return torch.optim.Adam(parameters, lr=config.lr)


def annealed_temperature(config: TrainConfig, step: int) -> float:
    """Jang et al. (2017)'s schedule: max(temperature, exp(-rate t)) at ``step`` rounded down
    to a multiple of ``anneal_every``; the fixed ``temperature`` when the rate is 0.

    Example::

        >>> config = TrainConfig(temperature=0.5, anneal_rate=1e-4, anneal_every=1000)
        >>> annealed_temperature(config, 0), round(annealed_temperature(config, 2999), 4)
        (1.0, 0.8187)
    """
    if config.anneal_rate == 0:
        return config.temperature
    held = step - step % config.anneal_every
    return max(config.temperature, math.exp(-config.anneal_rate * held))


def _set_temperature(step: _Step, temperature: float) -> None:
    """Set the temperature of the relaxed samplers: ``gumbel``'s posterior, ``st``'s estimator."""
    relaxed = getattr(step.vae, "relaxed_inf_net", None)
    if relaxed is not None:
        relaxed.temperature = temperature
    for child in step.objective.modules():
        if isinstance(child, estimators.GumbelStraightThrough):
            child.temperature = temperature


def build_vae(config: TrainConfig, num_pixels: int) -> VAE:
    """The model of a resolved ``config`` for images of ``num_pixels``."""
    family = FAMILIES[config.latent]
    hidden = {} if config.hidden is None else {"hidden": tuple(config.hidden)}
    return VAE(family, cast(int, config.dim), num_pixels, cast(str, config.estimator),
               temperature=config.temperature, **hidden)  # fmt: skip


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
    if dataset is None:  # before the output folder is touched: bad data writes nothing
        dataset = load_dataset(config.data, config.data_dir)
    rank, world_size, owns_group = _distributed(config.device)
    try:
        # Rank 0 owns the folder: it alone writes the checkpoint and the metrics.
        with locked(config.out) if rank == 0 else contextlib.nullcontext():
            return _train(config, dataset, log if rank == 0 else (lambda _: None), rank,
                          world_size)  # fmt: skip
    finally:
        if owns_group:
            dist.destroy_process_group()


def _train(config, dataset, log, rank, world_size) -> dict[str, Any]:
    device = _rank_device(config.device, world_size)
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
    if config.normalize_signal:
        normalize_learning_signal(objective)
    step = _Step(vae, objective).to(device)
    model: nn.Module = step
    if world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            step,
            device_ids=[device.index] if device.type == "cuda" else None,
            # The estimators average their own statistics; only the initial buffers are synced.
            forward_sync_buffers=False,
        )
    optimizer = make_optimizer(config, step.parameters())
    data_generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed * 1_000_003 + rank)
    if device.type == "cuda":
        torch.cuda.manual_seed(config.seed * 1_000_003 + rank)

    history: list[dict[str, float]] = []
    start_epoch = 0
    _check_fresh_start(config, out, rank, log)
    best: dict[str, Any] = {"epoch": 0, "model": None}
    if config.resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        _check_resumable(state, config, world_size, checkpoint_path)
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
    if config.binarization == "static":  # re-binarizing 0/1 pixels below leaves them unchanged
        train_images = dataset.binarized_train_images()
    per_epoch = max(1, len(train_images) // config.batch_size)  # minibatches drops the last
    epochs = config.epochs if config.steps is None else math.ceil(config.steps / per_epoch)
    probe_images = _probe_batch(train_images, config.batch_size).to(device)
    if validation_images is not None:
        validation_images = validation_images.to(device)
    log(
        f"train {config.latent}/{config.estimator} dim={config.dim} on {dataset.name} "
        f"({len(train_images)} train, {len(test_images)} test), {world_size} process(es)"
    )
    for epoch in range(start_epoch + 1, epochs + 1):
        if _stopped(history, best, config.patience):
            break
        started = time.perf_counter()
        batches = minibatches(len(train_images), config.batch_size, data_generator)
        first = (epoch - 1) * per_epoch  # the global number of this epoch's first step
        if config.steps is not None:
            batches = batches[: config.steps - first]
        total = torch.zeros(2, dtype=torch.float64)
        for number, index in enumerate(_progress(batches, config, rank, epoch), 1):
            where = f"epoch {epoch}, step {number}/{len(batches)}"
            if config.anneal_rate > 0:
                _set_temperature(step, annealed_temperature(config, first + number - 1))
            images = binarize(train_images[index], data_generator)[rank::world_size].to(device)
            loss = _forward(model, step, images, where)
            if not torch.isfinite(loss):
                raise _diverged(f"the loss became {loss.item()}", where)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            gradient_norm = _gradient_norm(step)
            if not math.isfinite(gradient_norm):
                raise _diverged(f"the gradient norm became {gradient_norm}", where)
            optimizer.step()
            total += torch.tensor([objective.bound, 1.0], dtype=torch.float64)
        if world_size > 1:
            dist.all_reduce(total)
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch,
            "step": first + len(batches),  # updates so far
            "train_bound": (total[0] / total[1]).item(),
            "test_neg_elbo": _evaluate(vae, test_images, device, negative_elbo)
            if rank == 0
            else float("nan"),
            "seconds": seconds,
        }
        if rank == 0 and not math.isfinite(record["test_neg_elbo"]):
            raise _diverged(f"the test -ELBO became {record['test_neg_elbo']}", f"epoch {epoch}")
        if validation_images is not None:  # on every rank: all take the same stopping decision
            record["validation_neg_elbo"] = _evaluate(vae, validation_images, device, negative_elbo)
            earlier = [r["validation_neg_elbo"] for r in history]
            if config.patience and record["validation_neg_elbo"] < min(earlier, default=math.inf):
                best = {"epoch": epoch, "model": copy.deepcopy(step.state_dict())}
        last = epoch == epochs or _stopped([*history, record], best, config.patience)
        if config.grad_draws and (epoch & (epoch - 1) == 0 or last):  # 1, 2, 4, 8, ... and last
            started = time.perf_counter()
            record.update(probe_gradient(step, probe_images, config.grad_draws, device))
            record["probe_seconds"] = time.perf_counter() - started
        history.append(record)
        log(_epoch_line(record, epochs))
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
        for key in ("test_neg_elbo", "test_iwae_ll"):
            if not math.isfinite(result[key]):
                raise _diverged(
                    f"the final {key} became {result[key]}",
                    f"the evaluation after epoch {len(history)}",
                )
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS_NAME).write_text(to_json(result))
        log(
            f"done: test -ELBO {result['test_neg_elbo']:.3f}  "
            f"test log p(x) >= {result['test_iwae_ll']:.3f} (K={config.iwae_samples})  "
            f"{result['seconds_per_epoch']:.2f} s/epoch"
        )
    return {**result, "model": vae, "objective": objective, "dataset": dataset}


def _diverged(what: str, where: str) -> TrainingError:
    return TrainingError(
        f"{what} in {where}; training stopped, the last good checkpoint is kept; try a smaller --lr"
    )


# How torch reports non-finite values: a distribution's validate_args (ValueError) and
# sampling from NaN probabilities (RuntimeError).
_NON_FINITE_MESSAGES = ("but found invalid values", "contains either `inf`, `nan`")


def _forward(model: nn.Module, step: _Step, images: Tensor, where: str) -> Tensor:
    """The training loss; torch rejecting non-finite values on the way means divergence."""
    try:
        return model(images)
    except (ValueError, RuntimeError) as error:
        message = str(error)
        weights_finite = all(torch.isfinite(p.detach()).all() for p in step.parameters())
        if weights_finite and not any(marker in message for marker in _NON_FINITE_MESSAGES):
            raise
        first = message.splitlines()[0].split(": tensor(")[0].rstrip(":")
        raise _diverged(f"a non-finite value reached the model ({first})", where) from None


def _gradient_norm(step: _Step) -> float:
    """The Euclidean norm of all gradients (inf or nan if any entry is)."""
    norms = [parameter.grad.detach().norm() for parameter in step.parameters()
             if parameter.grad is not None]  # fmt: skip
    return torch.stack(norms).norm().item() if norms else 0.0


def to_json(value: Any) -> str:
    """``json.dumps`` for metrics: non-finite numbers become ``null`` (bare NaN is not JSON)."""

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {key: clean(inner) for key, inner in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(inner) for inner in item]
        return item

    return json.dumps(clean(value), indent=2, allow_nan=False)


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
        key: value
        for key, value in asdict(config).items()
        if key not in ("resume", "overwrite", "progress")
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


def _check_fresh_start(config: TrainConfig, out: Path, rank: int, log) -> None:
    """Never replace a run without --overwrite; say when --resume finds nothing to resume."""
    found = [name for name in (CHECKPOINT_NAME, METRICS_NAME) if (out / name).exists()]
    if config.resume:
        if CHECKPOINT_NAME not in found:
            log(f"--resume: no {CHECKPOINT_NAME} in {out}, starting a fresh run")
        return
    if not found:
        return
    if not config.overwrite:
        raise UsageError(
            f"--out {str(out)!r} already holds a run ({', '.join(found)}); add --resume to "
            "continue it or --overwrite to replace it"
        )
    if rank == 0:
        for name in found:
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
        log(f"--overwrite: removed the earlier {' and '.join(found)} from {out}")


def resume_mismatch(state: dict[str, Any], config: TrainConfig, world_size: int) -> str | None:
    """Why the checkpoint ``state`` cannot be continued by ``config``, or None if it can."""
    if state["epoch"] > config.epochs:
        return f"it has trained {state['epoch']} epochs, more than --epochs {config.epochs}"
    saved = state["config"]
    for key in _RUN_DEFINING:
        if saved.get(key) != getattr(config, key):
            wanted = getattr(config, key)
            return f"it was written with {key}={saved.get(key)!r}, this run has {key}={wanted!r}"
    if state["world_size"] != world_size:
        return f"it was written by {state['world_size']} process(es), this run has {world_size}"
    return None


def _check_resumable(
    state: dict[str, Any], config: TrainConfig, world_size: int, path: Path
) -> None:
    mismatch = resume_mismatch(state, config, world_size)
    if mismatch is not None:
        raise UsageError(f"--resume: cannot continue {path}: {mismatch}; retrain with --overwrite")
