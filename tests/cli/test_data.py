"""stochgrad.data: fixed splits, dynamic binarization and the user-file loaders (IDX, NPZ)."""

import gzip
import struct

import numpy as np
import pytest
import torch

from stochgrad import data as data_module
from stochgrad.data import DataError, binarize, load_dataset, minibatches

EMBEDDED = [("mnist5k", (28, 28), 4000, 1000), ("digits", (8, 8), 1438, 359)]


@pytest.mark.parametrize(("name", "shape", "num_train", "num_test"), EMBEDDED)
def test_shapes_and_range(name, shape, num_train, num_test):
    data = load_dataset(name)
    assert data.image_shape == shape
    assert data.train_images.shape == (num_train, shape[0] * shape[1])
    assert data.test_images.shape == (num_test, shape[0] * shape[1])
    assert data.train_images.dtype == torch.float32
    assert 0.0 <= data.train_images.min() and data.train_images.max() <= 1.0
    assert data.train_images.max() == 1.0  # scaled, not left in 0..255 or 0..16


@pytest.mark.parametrize(("name", "shape", "num_train", "num_test"), EMBEDDED)
def test_split_is_fixed_disjoint_and_stratified(name, shape, num_train, num_test):
    first = load_dataset(name)
    train_rows = {row.numpy().tobytes() for row in first.train_images}
    assert not any(row.numpy().tobytes() in train_rows for row in first.test_images)
    counts = first.test_labels.bincount(minlength=10)
    assert counts.max() - counts.min() <= 2  # every class equally represented in the test split


def test_split_does_not_change_between_loads():
    recomputed = data_module._load_digits.__wrapped__()  # bypass the per-process cache
    cached = load_dataset("digits")
    assert torch.equal(recomputed.test_images, cached.test_images)
    assert torch.equal(recomputed.train_labels, cached.train_labels)


def test_splits_are_shuffled_so_subsets_mix_classes():
    data = load_dataset("mnist5k").subset(train_size=100, test_size=50)
    assert data.train_images.shape[0] == 100 and data.test_images.shape[0] == 50
    assert data.train_labels.unique().numel() == 10


def test_binarize_values_and_frequency():
    # 20,000 draws of p = 0.3: standard error sqrt(0.21 / 20000) = 0.0032; tolerance 5 SE.
    probabilities = torch.full((20_000,), 0.3)
    sample = binarize(probabilities, torch.Generator().manual_seed(0))
    assert set(sample.unique().tolist()) <= {0.0, 1.0}
    standard_error = (0.3 * 0.7 / 20_000) ** 0.5
    assert abs(sample.mean().item() - 0.3) < 5 * standard_error
    # twin: the same check rejects a wrong frequency
    assert abs(sample.mean().item() - 0.33) > 5 * standard_error


def test_binarization_is_dynamic_but_test_set_is_fixed():
    data = load_dataset("digits")
    generator = torch.Generator().manual_seed(0)
    assert not torch.equal(
        binarize(data.train_images, generator), binarize(data.train_images, generator)
    )
    assert torch.equal(data.binarized_test_images(), data.binarized_test_images())


def test_static_binarization_is_fixed_and_follows_the_grey_levels():
    data = load_dataset("mnist5k")
    binary = data.binarized_train_images()
    assert torch.equal(binary, data.binarized_train_images())  # the same images every call
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(binary, data.binarized_test_images()[: len(binary)])
    # The count of ones is a sum of independent Bernoulli(p_i): mean sum p_i, variance
    # sum p_i (1 - p_i) (3.1M pixels, standard error 243 ones); tolerance 5 SE.
    grey = data.train_images.double()
    standard_error = (grey * (1 - grey)).sum().sqrt()
    assert abs(binary.sum() - grey.sum()) < 5 * standard_error
    # twin: the same check rejects a binarization at the wrong level (p = 1.01 x grey)
    assert abs(binary.sum() - 1.01 * grey.sum()) > 5 * standard_error


def test_minibatches_cover_every_example_once():
    batches = minibatches(103, 10, torch.Generator().manual_seed(0), drop_last=False)
    assert sorted(torch.cat(batches).tolist()) == list(range(103))
    dropped = minibatches(103, 10, torch.Generator().manual_seed(0))
    assert [len(b) for b in dropped] == [10] * 10


def _write_idx(path, array, compress=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}i", *array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def _fake_mnist(seed=0, num_train=30, num_test=10):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, num_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, num_test, dtype=np.uint8),
    }


def _same_content(data, arrays):
    """The loader shuffles; compare as multisets of (image, label) pairs."""
    for images, labels, key in (
        (data.train_images, data.train_labels, "train"),
        (data.test_images, data.test_labels, "test"),
    ):
        expected = sorted(
            zip(
                map(bytes, arrays[f"x_{key}"].reshape(len(arrays[f"x_{key}"]), -1)),
                arrays[f"y_{key}"].tolist(),
                strict=True,
            )
        )
        loaded = sorted(
            zip(
                map(bytes, (images * 255).round().to(torch.uint8).numpy()),
                labels.tolist(),
                strict=True,
            )
        )
        assert loaded == expected


@pytest.mark.parametrize("compress", [False, True], ids=["idx", "idx.gz"])
def test_full_mnist_from_idx_files(tmp_path, compress):
    arrays = _fake_mnist()
    names = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    for key, name in names.items():
        _write_idx(tmp_path / (name + (".gz" if compress else "")), arrays[key], compress)
    data = load_dataset("mnist", tmp_path)
    assert data.image_shape == (28, 28)
    _same_content(data, arrays)


def test_full_mnist_from_npz_folder_or_file(tmp_path):
    arrays = _fake_mnist(seed=1)
    np.savez(tmp_path / "mnist.npz", **arrays)
    _same_content(load_dataset("mnist", tmp_path), arrays)
    _same_content(load_dataset("mnist", tmp_path / "mnist.npz"), arrays)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda path: None, "no --data-dir was given"),
        (lambda path: path / "absent", "does not exist"),
        (lambda path: path, "train-images-idx3-ubyte not found"),
    ],
    ids=["no-dir", "missing-dir", "empty-dir"],
)
def test_missing_mnist_says_what_to_provide(tmp_path, setup, message):
    with pytest.raises(DataError, match=message) as info:
        load_dataset("mnist", setup(tmp_path))
    assert "mnist.npz" in str(info.value) and "\n" not in str(info.value)


def test_malformed_files_are_rejected(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 28, 28)))
    with pytest.raises(DataError, match="lacks the arrays"):
        load_dataset("mnist", tmp_path / "bad.npz")
    arrays = _fake_mnist()
    _write_idx(tmp_path / "train-images-idx3-ubyte", arrays["x_train"])
    truncated = (tmp_path / "train-images-idx3-ubyte").read_bytes()[:-5]
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        _write_idx(tmp_path / name, arrays["y_train"])
    (tmp_path / "train-images-idx3-ubyte").write_bytes(truncated)
    with pytest.raises(DataError, match="truncated"):
        load_dataset("mnist", tmp_path)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_float_npz_already_in_unit_range_is_not_divided_again(tmp_path):
    arrays = _fake_mnist(seed=2)
    scaled = {**arrays, "x_train": arrays["x_train"] / 255.0, "x_test": arrays["x_test"] / 255.0}
    np.savez(tmp_path / "mnist.npz", **scaled)
    data = load_dataset("mnist", tmp_path)
    assert data.train_images.max() > 0.9  # not 1/255: the images are not blank
    _same_content(data, arrays)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.full((30, 28, 28), 300.0), r"values in \[0, 255\] or \[0, 1\], found \[300, 300\]"),
        (np.full((30, 28, 28), -0.5), r"found \[-0.5, -0.5\]"),
        (np.full((30, 28, 28), np.nan), "non-finite"),
        (np.full((30, 28, 28), "a"), "must hold numbers"),
    ],
    ids=["above-255", "negative", "nan", "strings"],
)
def test_npz_images_out_of_range_are_rejected(tmp_path, images, message):
    np.savez(tmp_path / "mnist.npz", **{**_fake_mnist(), "x_train": images})
    with pytest.raises(DataError, match=message) as info:
        load_dataset("mnist", tmp_path)
    assert "\n" not in str(info.value)


def test_label_count_must_match_the_images(tmp_path):
    arrays = _fake_mnist()
    np.savez(tmp_path / "mnist.npz", **{**arrays, "y_test": arrays["y_test"][:-1]})
    with pytest.raises(DataError, match="10 test images but 9 labels"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize(
    "payload", [b"", b"not gzip at all", gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 9)[:-6]],
    ids=["empty", "garbage", "torn-gzip"],
)  # fmt: skip
def test_garbage_gz_files_are_one_line_errors(tmp_path, payload):
    arrays = _fake_mnist()
    for key, name in (("y_train", "train-labels-idx1-ubyte"), ("x_test", "t10k-images-idx3-ubyte"),
                      ("y_test", "t10k-labels-idx1-ubyte")):  # fmt: skip
        _write_idx(tmp_path / f"{name}.gz", arrays[key], compress=True)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(payload)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz") as info:
        load_dataset("mnist", tmp_path)
    assert "\n" not in str(info.value)
