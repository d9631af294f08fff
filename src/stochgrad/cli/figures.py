"""Figures of ``stochgrad compare``: learning curves, encoder gradient variance, reconstructions,
prior samples, embeddings.

Each figure shows one model per (latent, estimator, dim) group: the run with the first seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stochgrad.cli.models import FAMILIES

__all__ = ["write_figures"]

_COLUMNS = 10
_FIGURE_SEED = 2018


def write_figures(results: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Write the five PNG figures into ``folder`` and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        config = result["config"]
        label = f"{config['latent']}/{config['estimator']} d={config['dim']}"
        groups.setdefault(label, []).append(result)
    firsts = {label: members[0] for label, members in groups.items()}
    return [
        _learning_curves(plt, groups, folder / "learning_curves.png"),
        _gradient_variance(plt, groups, folder / "gradient_variance.png"),
        _image_grid(plt, firsts, folder / "reconstructions.png", reconstruct=True),
        _image_grid(plt, firsts, folder / "prior_samples.png", reconstruct=False),
        _embeddings(plt, firsts, folder / "latent_embeddings.png"),
    ]


def _panels(plt, groups):
    """A figure with one panel per kind of latent (continuous, discrete) present in ``groups``,
    and the groups of each panel."""
    kinds: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for label, members in groups.items():
        discrete = FAMILIES[members[0]["config"]["latent"]].discrete
        kinds.setdefault("discrete" if discrete else "continuous", {})[label] = members
    figure, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.8), squeeze=False)
    names = sorted(kinds)
    return figure, [(axis, kind, kinds[kind]) for axis, kind in zip(axes[0], names, strict=True)]


def _style(index: int) -> dict[str, Any]:
    """Ten colours, then the same colours dashed, then dotted: up to 30 distinguishable lines."""
    return {"color": f"C{index % 10}", "linestyle": ("-", "--", ":")[index // 10 % 3]}


def _save(plt, figure, path: Path) -> Path:
    for axis in figure.axes:
        if axis.has_data():
            axis.legend(fontsize=6, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _learning_curves(plt, groups, path: Path) -> Path:
    figure, panels = _panels(plt, groups)
    for axis, kind, members_of in panels:
        for index, (label, members) in enumerate(members_of.items()):
            # Early stopping ends the seeds' runs at different epochs: average the seeds that
            # reached each epoch.
            by_epoch: dict[int, list[float]] = {}
            for member in members:
                for record in member["history"]:
                    by_epoch.setdefault(record["epoch"], []).append(record["test_neg_elbo"])
            epochs = sorted(by_epoch)
            means = [sum(by_epoch[epoch]) / len(by_epoch[epoch]) for epoch in epochs]
            axis.plot(epochs, means, marker="o", markersize=2, label=label, **_style(index))
        axis.set_xlabel("epoch")
        axis.set_ylabel("test negative ELBO (nats, mean over the seeds still training)")
        axis.set_title(f"Learning curves, {kind} latents")
        axis.grid(alpha=0.3)
    return _save(plt, figure, path)


def _gradient_variance(plt, groups, path: Path) -> Path:
    """Total variance of the encoder gradient against the training step, one line per seed."""
    figure, panels = _panels(plt, groups)
    for axis, kind, members_of in panels:
        for index, (label, members) in enumerate(members_of.items()):
            for seed, member in enumerate(members):
                probes = [r for r in member["history"] if r.get("grad_variance") is not None]
                steps = [r.get("step", r["epoch"]) for r in probes]
                axis.plot(steps, [r["grad_variance"] for r in probes], marker="o", markersize=2,
                          alpha=0.8, label=None if seed else label, **_style(index))  # fmt: skip
        if axis.has_data():
            axis.set_xscale("log")
            axis.set_yscale("log")
        axis.set_xlabel("training step")
        axis.set_ylabel("encoder gradient variance (sum over parameters)")
        axis.set_title(f"Encoder gradient variance at fixed parameters, {kind} latents")
        axis.grid(alpha=0.3, which="both")
    return _save(plt, figure, path)


@torch.no_grad()
def _image_grid(plt, firsts, path: Path, reconstruct: bool) -> Path:
    rows = len(firsts) + (1 if reconstruct else 0)
    figure, axes = plt.subplots(rows, _COLUMNS, figsize=(_COLUMNS * 0.8, rows * 0.85),
                                squeeze=False)  # fmt: skip
    generator = torch.Generator().manual_seed(_FIGURE_SEED)
    row = 0
    if reconstruct:
        dataset = next(iter(firsts.values()))["dataset"]
        originals = dataset.test_images[:_COLUMNS]
        _show_row(axes[0], originals, dataset.image_shape, "data")
        row = 1
    for label, result in firsts.items():
        vae, dataset = result["model"], result["dataset"]
        device = next(vae.parameters()).device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
            if reconstruct:
                images = torch.bernoulli(dataset.test_images[:_COLUMNS], generator=generator)
                latents = vae.inf_net(images.to(device)).sample(1)
            else:
                latents = vae.prior().sample((_COLUMNS, 1))
            probabilities = vae.pixel_probabilities(latents)[:, 0].cpu()
        _show_row(axes[row], probabilities, dataset.image_shape, label)
        row += 1
    figure.suptitle("Reconstructions of test digits" if reconstruct else "Samples from the prior")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _show_row(axes, images, shape, label: str) -> None:
    for column, axis in enumerate(axes):
        axis.imshow(images[column].reshape(shape).numpy(), cmap="gray_r", vmin=0, vmax=1)
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)


@torch.no_grad()
def _embeddings(plt, firsts, path: Path) -> Path:
    count = len(firsts)
    columns = min(count, 4)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    for axis, (label, result) in zip(axes.flat, firsts.items(), strict=False):
        vae, dataset = result["model"], result["dataset"]
        device = next(vae.parameters()).device
        points = vae.embedding(dataset.test_images.to(device)).cpu()
        points = points.double()
        if points.shape[1] > 2:  # principal components of the posterior summaries
            centred = points - points.mean(0)
            _, _, vectors = torch.linalg.svd(centred, full_matrices=False)
            points = centred @ vectors[:2].T
        scatter = axis.scatter(points[:, 0], points[:, 1], c=dataset.test_labels, cmap="tab10",
                               s=4, vmin=-0.5, vmax=9.5)  # fmt: skip
        axis.set_title(label, fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.colorbar(scatter, ax=axes.ravel().tolist(), ticks=range(10), label="digit")
    figure.suptitle("Test-set posterior summaries (first two principal components)")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
