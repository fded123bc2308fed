"""Datasets as tensors: digits, and each torchvision format written here in its native layout.

The files are tiny random images written the way the real datasets ship them (MNIST idx files,
CIFAR python pickles, SVHN .mat files, an ImageFolder of PNGs) and read back through
``explore.engine.data.load_dataset``, i.e. through torchvision's own dataset classes.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from explore.config import DataSettings
from explore.engine.data import DATASETS, Dataset, dataset_shape, load_dataset
from studies.errors import UsageError


def load(seed: int = 0, **settings: Any) -> Dataset:
    return load_dataset(DataSettings(**settings), seed=seed)


def normalized(x: np.ndarray | torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """``x`` (uint8, (N, C, H, W)) scaled to [0, 1] and normalized by ``train``'s channel stats."""
    x = torch.as_tensor(np.asarray(x)).float() / 255.0
    ref = train.float() / 255.0
    mean = ref.mean(dim=(0, 2, 3), keepdim=True)
    std = ref.std(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / std


def assert_channels_standardized(x: torch.Tensor) -> None:
    channels = x.shape[1]
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(channels), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3)), torch.ones(channels), atol=1e-4, rtol=0)


# --- digits -------------------------------------------------------------------------------------


def test_digits_shapes_and_normalization() -> None:
    data = load()
    assert data.train_x.shape == (1437, 1, 8, 8) and data.eval_x.shape == (360, 1, 8, 8)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert data.image_shape == (1, 8, 8) and data.num_classes == 10
    assert data.eval_split == "val" and not data.augment_flip  # flipped digits are not digits
    assert_channels_standardized(data.train_x)
    assert data.eval_x.mean().abs() < 0.1  # normalized with the training split's statistics
    assert dataset_shape(DataSettings()) == (8, 1, 10)


def test_digits_split_is_stratified_and_deterministic() -> None:
    from sklearn.datasets import load_digits

    full = torch.as_tensor(load_digits().target).bincount()
    first, again, other = load(seed=0), load(seed=0), load(seed=1)
    torch.testing.assert_close(first.train_x, again.train_x, rtol=0, atol=0)
    assert torch.equal(first.eval_y, again.eval_y)
    assert not torch.equal(first.eval_y, other.eval_y)
    for data in (first, other):
        train_counts = data.train_y.bincount(minlength=10)
        eval_counts = data.eval_y.bincount(minlength=10)
        assert torch.equal(train_counts + eval_counts, full)
        assert (train_counts > 0).all() and (eval_counts > 0).all()
        # Stratified: each class holds out its share, to within one image.
        assert ((eval_counts - 0.2 * full).abs() <= 1).all()
    half = load(val_fraction=0.5)
    assert abs(len(half.eval_y) - len(half.train_y)) <= 1


def test_digits_are_scikit_learns_digits() -> None:
    """Read from the wheel's file without scikit-learn, and identical to its loader's."""
    from sklearn.datasets import load_digits

    from explore.engine.data import _load_digits

    x, y, test = _load_digits(DataSettings())
    bunch = load_digits()
    assert test is None
    assert torch.equal(y, torch.as_tensor(bunch.target, dtype=torch.int64))
    torch.testing.assert_close(x, torch.as_tensor(bunch.images, dtype=torch.float32)
                               .unsqueeze(1) / 16.0, rtol=0, atol=0)


def _split_files(cache: Path) -> list[Path]:
    return sorted((cache / "splits").glob("*.npz"))


def test_split_cache_gives_scikit_learns_split(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.model_selection import train_test_split

    monkeypatch.setenv("EXPLORE_CACHE_DIR", str(tmp_path))
    cold = load(seed=3)  # computes and stores the split
    assert len(_split_files(tmp_path)) == 1
    warm = load(seed=3)  # reads it back
    assert torch.equal(cold.eval_y, warm.eval_y)
    torch.testing.assert_close(cold.train_x, warm.train_x, rtol=0, atol=0)
    # The very split scikit-learn makes (the split every earlier study was trained on).
    from explore.engine.data import _load_digits

    x, y, _ = _load_digits(DataSettings())
    _, val_idx = train_test_split(np.arange(len(y)), test_size=0.2, random_state=3,
                                  stratify=y.numpy())
    assert torch.equal(warm.eval_y, y[np.sort(val_idx)])
    load(seed=4)
    load(seed=3, max_train=100)  # a subset is a split too
    assert len(_split_files(tmp_path)) == 3


def test_cached_split_needs_no_scikit_learn(tmp_path: Path) -> None:
    """A process whose split is cached starts without importing scikit-learn (~1 s)."""
    code = ("import sys; from explore.config import DataSettings; "
            "from explore.engine.data import load_dataset; "
            "d = load_dataset(DataSettings(), seed=5); "
            "print(len(d.eval_y), 'sklearn' in sys.modules)")
    env = {**os.environ, "EXPLORE_CACHE_DIR": str(tmp_path)}
    outs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True).stdout.split() for _ in range(2)]
    assert outs == [["360", "True"], ["360", "False"]]


def test_damaged_or_unwritable_split_cache_is_only_slower(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPLORE_CACHE_DIR", str(tmp_path))
    reference = load(seed=6)
    (path,) = _split_files(tmp_path)
    path.write_bytes(b"not a numpy file")
    assert torch.equal(load(seed=6).eval_y, reference.eval_y)  # split again, and stored again
    np.savez(path, first=np.arange(10), second=np.arange(5))  # readable, but not a partition
    assert torch.equal(load(seed=6).eval_y, reference.eval_y)
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache directory should be")
    monkeypatch.setenv("EXPLORE_CACHE_DIR", str(blocked))
    assert torch.equal(load(seed=6).eval_y, reference.eval_y)


def test_digits_has_no_official_test_split() -> None:
    with pytest.raises(UsageError, match="no official test split"):
        load(eval_split="test")


def test_max_train_takes_a_stratified_subset() -> None:
    full, small = load(), load(max_train=100)
    assert small.train_x.shape == (100, 1, 8, 8)
    assert torch.equal(small.train_y.bincount(minlength=10), torch.full((10,), 10))
    assert torch.equal(small.eval_y, full.eval_y)  # the evaluation split is untouched
    assert_channels_standardized(small.train_x)  # statistics of what is trained on
    assert torch.equal(load(max_train=100).train_y, small.train_y)
    assert len(load(max_train=10_000).train_y) == len(full.train_y)
    with pytest.raises(UsageError, match=r"max_train \(5\) must be at least the number of classes"):
        load(max_train=5)


def test_unknown_dataset() -> None:
    with pytest.raises(UsageError, match="unknown dataset 'imagenet'.*imagefolder:PATH"):
        load(dataset="imagenet")
    with pytest.raises(UsageError, match="unknown dataset"):
        dataset_shape(DataSettings(dataset="imagenet"))


# --- torchvision formats ------------------------------------------------------------------------

RNG = np.random.default_rng(0)


def random_images(n: int, *shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def balanced_labels(n: int, classes: int) -> np.ndarray:
    return RNG.permutation(np.arange(n) % classes).astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """The MNIST idx format: big-endian magic (0, 0, dtype 0x08 = uint8, ndim), dims, bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str, n_train: int = 60, n_test: int = 20
                ) -> dict[str, np.ndarray]:
    """``root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (uncompressed, as
    torchvision leaves them after extracting its .gz downloads; it reads only these)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {"train_x": random_images(n_train, 28, 28), "train_y": balanced_labels(n_train, 10),
              "test_x": random_images(n_test, 28, 28), "test_y": balanced_labels(n_test, 10)}
    write_idx(raw / "train-images-idx3-ubyte", arrays["train_x"])
    write_idx(raw / "train-labels-idx1-ubyte", arrays["train_y"])
    write_idx(raw / "t10k-images-idx3-ubyte", arrays["test_x"])
    write_idx(raw / "t10k-labels-idx1-ubyte", arrays["test_y"])
    return arrays


@pytest.fixture
def skip_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let torchvision's CIFAR and SVHN classes accept files that are not the official ones.

    They compare every file's MD5 with the official archive's, which no test-written file can
    match. Only that comparison is replaced: the file must still exist where torchvision looks.
    (Patching ``CIFAR10._check_integrity`` alone is not enough: ``_load_meta`` calls the
    module's ``check_integrity`` with the meta file's MD5 directly.)
    """
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.svhn as svhn

    def exists(fpath: str, md5: str | None = None) -> bool:
        return os.path.isfile(fpath)

    monkeypatch.setattr(cifar, "check_integrity", exists)
    monkeypatch.setattr(svhn, "check_integrity", exists)


@pytest.mark.parametrize(("dataset", "folder"),
                         [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"),
                          ("kmnist", "KMNIST")])
def test_mnist_idx_files(tmp_path: Path, dataset: str, folder: str) -> None:
    arrays = write_mnist(tmp_path, folder)
    data = load(dataset=dataset, data_dir=str(tmp_path), eval_split="test")
    assert data.train_x.shape == (60, 1, 28, 28) and data.eval_x.shape == (20, 1, 28, 28)
    assert data.num_classes == 10 and data.augment_flip == DATASETS[dataset].augment_flip
    assert data.train_y.tolist() == arrays["train_y"].tolist()
    assert data.eval_y.tolist() == arrays["test_y"].tolist()  # the official test split, in order
    train = torch.as_tensor(arrays["train_x"]).unsqueeze(1)
    torch.testing.assert_close(data.train_x, normalized(train, train))
    torch.testing.assert_close(data.eval_x, normalized(arrays["test_x"][:, None], train))
    assert dataset_shape(DataSettings(dataset=dataset)) == (28, 1, 10)


def test_mnist_validation_split_comes_from_train(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path, "MNIST", n_train=100)
    data = load(dataset="mnist", data_dir=str(tmp_path), val_fraction=0.2, seed=3)
    assert data.eval_split == "val"
    assert len(data.train_y) == 80 and len(data.eval_y) == 20
    assert torch.equal(data.eval_y.bincount(minlength=10), torch.full((10,), 2))
    assert sorted(data.train_y.tolist() + data.eval_y.tolist()) == sorted(arrays["train_y"])


def write_cifar(root: Path, classes: int = 10, per_batch: int = 10, n_test: int = 20
                ) -> dict[str, np.ndarray]:
    """CIFAR's python pickles: rows of 3072 bytes (the R, G, B planes of a 32x32 image)."""
    cifar100 = classes == 100
    folder = root / ("cifar-100-python" if cifar100 else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    label_key = "fine_labels" if cifar100 else "labels"
    names = ["train"] if cifar100 else [f"data_batch_{i}" for i in range(1, 6)]
    per_file = per_batch * (5 if cifar100 else 1)
    train_x, train_y = [], []
    for name in [*names, "test" if cifar100 else "test_batch"]:
        n = n_test if name.startswith("test") else per_file
        # Ten classes only, also for CIFAR-100: its head must still have 100 outputs.
        x, y = random_images(n, 3 * 32 * 32), balanced_labels(n, 10).tolist()
        entry = {"data": x, label_key: y, "batch_label": name}
        if cifar100:
            entry["coarse_labels"] = [label // 5 for label in y]
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
        if name.startswith("test"):
            test_x, test_y = x, y
        else:
            train_x.append(x)
            train_y += y
    meta_key = "fine_label_names" if cifar100 else "label_names"
    with open(folder / ("meta" if cifar100 else "batches.meta"), "wb") as f:
        pickle.dump({meta_key: [f"class{i}" for i in range(classes)]}, f)
    return {"train_x": np.concatenate(train_x).reshape(-1, 3, 32, 32), "train_y": np.array(train_y),
            "test_x": test_x.reshape(-1, 3, 32, 32), "test_y": np.array(test_y)}


@pytest.mark.parametrize(("dataset", "classes"), [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pickles(tmp_path: Path, skip_md5: None, dataset: str, classes: int) -> None:
    arrays = write_cifar(tmp_path, classes)
    data = load(dataset=dataset, data_dir=str(tmp_path), eval_split="test")
    assert data.train_x.shape == (50, 3, 32, 32) and data.eval_x.shape == (20, 3, 32, 32)
    assert data.num_classes == classes and data.augment_flip
    assert data.train_y.tolist() == arrays["train_y"].tolist()
    assert data.eval_y.tolist() == arrays["test_y"].tolist()
    train = torch.as_tensor(arrays["train_x"])
    torch.testing.assert_close(data.train_x, normalized(train, train))
    torch.testing.assert_close(data.eval_x, normalized(arrays["test_x"], train))
    assert_channels_standardized(data.train_x)
    assert dataset_shape(DataSettings(dataset=dataset)) == (32, 3, classes)


def test_svhn_mat_files(tmp_path: Path, skip_md5: None) -> None:
    from scipy.io import savemat

    split = {}
    for name, n in (("train", 50), ("test", 20)):
        x = random_images(n, 3, 32, 32)  # (N, C, H, W); the .mat holds (H, W, C, N)
        y = balanced_labels(n, 10) + 1  # SVHN labels 1..10, where 10 is the digit 0
        savemat(tmp_path / f"{name}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": y[:, None]})
        split[name] = (x, y)
    data = load(dataset="svhn", data_dir=str(tmp_path), eval_split="test")
    assert data.train_x.shape == (50, 3, 32, 32) and data.eval_x.shape == (20, 3, 32, 32)
    assert data.num_classes == 10 and not data.augment_flip
    (train_x, train_y), (test_x, test_y) = split["train"], split["test"]
    assert data.train_y.tolist() == (train_y % 10).tolist()  # 10 → 0
    assert data.eval_y.tolist() == (test_y % 10).tolist()
    assert set(data.train_y.tolist()) == set(range(10))
    torch.testing.assert_close(data.train_x, normalized(train_x, torch.as_tensor(train_x)))
    torch.testing.assert_close(data.eval_x, normalized(test_x, torch.as_tensor(train_x)))


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100",
                                     "svhn"])
def test_missing_files_name_the_path_and_download(tmp_path: Path, dataset: str) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(UsageError) as info:
        load(dataset=dataset, data_dir=str(root))
    message = str(info.value)
    assert str(root) in message and "--download" in message and "--data-dir" in message


def test_cifar_files_that_fail_the_md5_check_are_reported(tmp_path: Path) -> None:
    write_cifar(tmp_path)  # present, but not the official files (no skip_md5 here)
    with pytest.raises(UsageError, match="--download"):
        load(dataset="cifar10", data_dir=str(tmp_path))


# --- imagefolder --------------------------------------------------------------------------------

COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "owl": (0, 0, 255)}


def write_images(folder: Path, per_class: int, classes: dict[str, tuple[int, int, int]] = COLOURS
                 ) -> None:
    """Solid-colour 12x10 PNGs, ``per_class`` in each class folder."""
    for name, colour in classes.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (12, 10), colour).save(folder / name / f"{i}.png")


def test_imagefolder_flat_layout(tmp_path: Path) -> None:
    write_images(tmp_path / "pets", per_class=5)
    (tmp_path / "pets" / "zebra").mkdir()
    for i in range(2):  # greyscale files of another size: converted to RGB and resized
        Image.new("L", (7, 9), 128).save(tmp_path / "pets" / "zebra" / f"{i}.png")
    dataset = f"imagefolder:{tmp_path / 'pets'}"
    assert dataset_shape(DataSettings(dataset=dataset, image_size=8)) == (8, 3, 4)
    data = load(dataset=dataset, image_size=8, val_fraction=0.25)
    assert data.train_x.shape == (12, 3, 8, 8) and data.eval_x.shape == (5, 3, 8, 8)
    assert data.num_classes == 4 and data.augment_flip
    assert set(data.eval_y.tolist()) == {0, 1, 2, 3}  # stratified: every class held out
    assert_channels_standardized(data.train_x)
    # Labels follow the sorted folder names (cat, dog, owl, zebra). Solid colours stay solid
    # through the resize; a class's own channel is above that channel's mean, the others below.
    x, y = torch.cat([data.train_x, data.eval_x]), torch.cat([data.train_y, data.eval_y])
    assert (x.std(dim=(2, 3)) < 1e-4).all()
    for label in range(3):
        own = torch.arange(3) == label
        images = x[y == label]
        assert (images[:, own] > 0).all() and (images[:, ~own] < 0).all()
    with pytest.raises(UsageError, match="no official test split"):
        load(dataset=dataset, eval_split="test")


def test_imagefolder_default_size_is_32(tmp_path: Path) -> None:
    write_images(tmp_path / "pets", per_class=5)
    data = load(dataset=f"imagefolder:{tmp_path / 'pets'}")
    assert data.train_x.shape[1:] == (3, 32, 32)


def test_imagefolder_train_and_test_layout(tmp_path: Path) -> None:
    write_images(tmp_path / "pets" / "train", per_class=5)
    write_images(tmp_path / "pets" / "test", per_class=2)
    dataset = f"imagefolder:{tmp_path / 'pets'}"
    assert dataset_shape(DataSettings(dataset=dataset, image_size=16)) == (16, 3, 3)
    data = load(dataset=dataset, image_size=16, eval_split="test")
    assert data.train_x.shape == (15, 3, 16, 16) and data.eval_x.shape == (6, 3, 16, 16)
    assert data.train_y.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert data.eval_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.num_classes == 3
    # The test images are the train images' colours: normalized alike, they match exactly.
    torch.testing.assert_close(data.eval_x[0], data.train_x[0])
    val = load(dataset=dataset, image_size=16)  # "val": held out of train/, test/ unused
    assert len(val.train_y) + len(val.eval_y) == 15


def test_imagefolder_test_classes_must_match_train(tmp_path: Path) -> None:
    write_images(tmp_path / "pets" / "train", per_class=3)
    write_images(tmp_path / "pets" / "test", per_class=1,
                 classes={k: v for k, v in COLOURS.items() if k != "cat"})
    with pytest.raises(UsageError, match="use the same class folders"):
        load(dataset=f"imagefolder:{tmp_path / 'pets'}", eval_split="test")


def test_imagefolder_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="image folder not found"):
        load(dataset=f"imagefolder:{tmp_path / 'none'}")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(UsageError, match=str(tmp_path / "empty")):
        load(dataset=f"imagefolder:{tmp_path / 'empty'}")
