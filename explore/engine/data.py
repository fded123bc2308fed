"""Datasets as tensors resident on the training device.

Every dataset is loaded once per process into ``(N, C, H, W)`` float tensors, normalized with the
training split's per-channel mean and std, and kept on the device; training batches by index from
a per-epoch permutation (no DataLoader, no per-sample Python work). torchvision's own dataset
classes read the files, so their on-disk formats and ``download`` work as users know them.

Start-up matters (a short search's first result comes seconds after launch), so the bundled digits
are read straight from scikit-learn's data file, and the stratified splits that scikit-learn
computes are cached on disk (``EXPLORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/explore`` or
``~/.cache/explore``): a process whose split is cached never imports scikit-learn (~1 s).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from explore.config import DataSettings
from extattn.checkpoint import atomic_write
from studies.errors import UsageError

__all__ = ["DATASETS", "Dataset", "cache_dir", "dataset_shape", "load_dataset"]


@dataclass(frozen=True)
class _Info:
    image_size: int
    in_chans: int
    num_classes: int
    augment_flip: bool  # horizontal flips keep labels (not for digits/letters)


DATASETS: dict[str, _Info] = {
    "digits": _Info(8, 1, 10, False),
    "mnist": _Info(28, 1, 10, False),
    "fashion-mnist": _Info(28, 1, 10, True),
    "kmnist": _Info(28, 1, 10, False),
    "cifar10": _Info(32, 3, 10, True),
    "cifar100": _Info(32, 3, 100, True),
    "svhn": _Info(32, 3, 10, False),
}
IMAGEFOLDER = "imagefolder:"


@dataclass
class Dataset:
    """Training and evaluation tensors on one device."""

    name: str
    train_x: torch.Tensor  # (N, C, H, W) float32, normalized
    train_y: torch.Tensor  # (N,) int64
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    num_classes: int
    eval_split: str  # "val" or "test"
    augment_flip: bool

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    def to(self, device: torch.device) -> Dataset:
        return Dataset(self.name, self.train_x.to(device), self.train_y.to(device),
                       self.eval_x.to(device), self.eval_y.to(device), self.num_classes,
                       self.eval_split, self.augment_flip)


def dataset_shape(data: DataSettings) -> tuple[int, int, int | None]:
    """``(image_size, in_chans, num_classes)`` without loading (classes may be unknown)."""
    if data.dataset.startswith(IMAGEFOLDER):
        root = Path(data.dataset[len(IMAGEFOLDER):]).expanduser()
        if (root / "train").is_dir():  # the train/ + test/ layout
            root = root / "train"
        classes = _imagefolder_classes(root) if root.is_dir() else None
        return data.image_size or 32, 3, len(classes) if classes else None
    info = _info(data.dataset)
    return info.image_size, info.in_chans, info.num_classes


def _info(name: str) -> _Info:
    if name not in DATASETS:
        raise UsageError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} or imagefolder:PATH"
        )
    return DATASETS[name]


def load_dataset(data: DataSettings, seed: int, device: torch.device | str = "cpu") -> Dataset:
    """Load, split, normalize and move a dataset to ``device``.

    The validation split is a stratified hold-out of the training split, chosen by ``seed``;
    with ``eval_split = "test"`` the official test split is used instead.
    """
    name = data.dataset
    if name.startswith(IMAGEFOLDER):
        train_x, train_y, test = _load_imagefolder(data)
        flip = True
        num_classes = int(train_y.max()) + 1  # ImageFolder rejects empty class folders
    else:
        info = _info(name)
        flip = info.augment_flip
        num_classes = info.num_classes  # even when a subset misses the last classes
        train_x, train_y, test = _LOADERS[name](data)
    if data.eval_split == "test":
        if test is None:
            raise UsageError(f"dataset {name} has no official test split: use eval_split = 'val'")
        eval_x, eval_y = test
    else:
        train_x, train_y, eval_x, eval_y = _stratified_split(train_x, train_y,
                                                             data.val_fraction, seed)
    if data.max_train:
        keep = _stratified_subset(train_y, data.max_train, seed)
        train_x, train_y = train_x[keep], train_y[keep]
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    out = Dataset(name, (train_x - mean) / std, train_y, (eval_x - mean) / std, eval_y,
                  num_classes, data.eval_split, flip)
    return out.to(torch.device(device))


def _stratified_split(
    x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n = len(y)
    key = _split_key("split", y, fraction, seed)
    cached = _read_split(key, n)
    if cached is None:
        from sklearn.model_selection import train_test_split

        train_idx, val_idx = train_test_split(np.arange(n), test_size=fraction,
                                              random_state=seed, stratify=y.numpy())
        cached = np.sort(train_idx), np.sort(val_idx)
        _write_split(key, *cached)
    ti, vi = torch.from_numpy(cached[0]), torch.from_numpy(cached[1])
    return x[ti], y[ti], x[vi], y[vi]


def _stratified_subset(y: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    if size >= len(y):
        return torch.arange(len(y))
    classes = len(torch.unique(y))
    if size < classes:
        raise UsageError(f"max_train ({size}) must be at least the number of classes ({classes})")
    key = _split_key("subset", y, size, seed)
    cached = _read_split(key, len(y))
    if cached is None:
        from sklearn.model_selection import train_test_split

        keep, rest = train_test_split(np.arange(len(y)), train_size=size, random_state=seed,
                                      stratify=y.cpu().numpy())
        cached = np.sort(keep), np.sort(rest)
        _write_split(key, *cached)
    return torch.from_numpy(cached[0])


# ---------------------------------------------------------------------------------------------
# the split cache: scikit-learn's stratified splits, keyed by everything they depend on


def cache_dir() -> Path:
    """Where explore caches derived data (``EXPLORE_CACHE_DIR`` overrides)."""
    if os.environ.get("EXPLORE_CACHE_DIR"):
        return Path(os.environ["EXPLORE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "explore"


def _split_key(kind: str, y: torch.Tensor, size: float, seed: int) -> str:
    """The labels, the split's size and seed, and the scikit-learn release that splits them."""
    try:
        release = importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:
        release = "none"
    h = hashlib.sha256(y.cpu().numpy().astype(np.int64).tobytes())
    h.update(f"|{kind}|{size!r}|{seed}|sklearn {release}".encode())
    return h.hexdigest()[:32]


def _read_split(key: str, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A cached split of ``n`` items, or None (missing, unreadable or not a partition of n)."""
    try:
        with np.load(cache_dir() / "splits" / f"{key}.npz") as f:
            first, second = f["first"], f["second"]
    except Exception:  # absent, damaged, or a cache directory we cannot read: split again
        return None
    both = np.concatenate([first, second])
    if (first.ndim != 1 or second.ndim != 1 or len(both) != n
            or not np.array_equal(np.sort(both), np.arange(n))):
        return None
    return first.astype(np.int64), second.astype(np.int64)


def _write_split(key: str, first: np.ndarray, second: np.ndarray) -> None:
    """Store a split atomically; a cache that cannot be written is only a slower start."""
    try:
        atomic_write(cache_dir() / "splits" / f"{key}.npz",
                     lambda f: np.savez(f, first=first, second=second))
    except OSError:
        pass


_Split = tuple[torch.Tensor, torch.Tensor]
_Loaded = tuple[torch.Tensor, torch.Tensor, _Split | None]


def _load_digits(data: DataSettings) -> _Loaded:
    """scikit-learn's digits (1797 8×8 images, values 0–16), read from the file its wheel ships
    without importing scikit-learn; ``sklearn.datasets.load_digits`` where that file is not."""
    path = _sklearn_data_file("digits.csv.gz")
    if path is not None:
        with gzip.open(path, "rt") as f:
            flat = np.loadtxt(f, delimiter=",")
        images, target = flat[:, :-1].reshape(-1, 8, 8), flat[:, -1].astype(np.int64)
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, target = bunch.images, bunch.target
    x = torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    y = torch.tensor(target, dtype=torch.int64)
    return x, y, None


def _sklearn_data_file(name: str) -> Path | None:
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


def _uint8_images(array: Any, channels_last: bool) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(array))
    if t.ndim == 3:  # (N, H, W) grey
        t = t.unsqueeze(1)
    elif channels_last:  # (N, H, W, C) → (N, C, H, W)
        t = t.permute(0, 3, 1, 2)
    return t.contiguous().float().div_(255.0)


def _torchvision(data: DataSettings, factory: Callable[..., Any], split_kw: Callable[[bool], dict],
                 channels_last: bool, labels_attr: str) -> _Loaded:
    """Both splits of a torchvision dataset, its arrays converted to tensors in one go."""
    root = Path(data.data_dir).expanduser()
    splits = []
    for train in (True, False):
        try:
            ds = factory(root=str(root), download=data.download, **split_kw(train))
        except RuntimeError as exc:
            if "not found" in str(exc).lower() or "corrupted" in str(exc).lower():
                raise UsageError(
                    f"{data.dataset} files not found under {root}: pass --data-dir to where "
                    "they are, or --download to fetch them"
                ) from exc
            if data.download and "download" in str(exc).lower():  # every mirror failed
                lines = [line for line in str(exc).splitlines() if line.strip()]
                detail = lines[0].rstrip(":") + (f" ({lines[-1]})" if len(lines) > 1 else "")
                raise UsageError(f"could not download {data.dataset} to {root}: {detail}") from exc
            raise
        except OSError as exc:  # download failed: no network, proxy, disk
            raise UsageError(f"could not download {data.dataset} to {root}: {exc}") from exc
        x = _uint8_images(ds.data, channels_last)
        y = torch.as_tensor(np.asarray(getattr(ds, labels_attr)), dtype=torch.int64)
        splits.append((x, y))
    (train_x, train_y), test = splits[0], splits[1]
    return train_x, train_y, test


def _mnist_like(cls_name: str) -> Callable[[DataSettings], _Loaded]:
    def load(data: DataSettings) -> _Loaded:
        import torchvision.datasets as tvd

        return _torchvision(data, getattr(tvd, cls_name), lambda train: {"train": train},
                            channels_last=False, labels_attr="targets")

    return load


def _cifar(cls_name: str) -> Callable[[DataSettings], _Loaded]:
    def load(data: DataSettings) -> _Loaded:
        import torchvision.datasets as tvd

        return _torchvision(data, getattr(tvd, cls_name), lambda train: {"train": train},
                            channels_last=True, labels_attr="targets")

    return load


def _load_svhn(data: DataSettings) -> _Loaded:
    import torchvision.datasets as tvd

    return _torchvision(data, tvd.SVHN, lambda train: {"split": "train" if train else "test"},
                        channels_last=False, labels_attr="labels")


def _imagefolder_classes(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _load_imagefolder(data: DataSettings) -> _Loaded:
    """``imagefolder:ROOT``: ``ROOT/<class>/*.png`` (or ``ROOT/train`` and ``ROOT/test`` each
    laid out so), resized to ``image_size`` (default 32)."""
    import torchvision.datasets as tvd
    import torchvision.transforms.v2 as T

    root = Path(data.dataset[len(IMAGEFOLDER):]).expanduser()
    if not root.is_dir():
        raise UsageError(f"image folder not found: {root}")
    size = data.image_size or 32
    transform = T.Compose([T.ToImage(), T.Resize((size, size), antialias=True),
                           T.ToDtype(torch.float32, scale=True)])

    def read(folder: Path) -> tuple[_Split, list[str]]:
        try:
            ds = tvd.ImageFolder(str(folder), transform=lambda im: transform(im.convert("RGB")))
        except (FileNotFoundError, RuntimeError) as exc:
            raise UsageError(f"{folder}: {exc}") from exc
        xs = [ds[i][0] for i in range(len(ds))]
        return (torch.stack(xs), torch.tensor(ds.targets, dtype=torch.int64)), ds.classes

    if (root / "train").is_dir():
        (train_x, train_y), classes = read(root / "train")
        test = None
        if (root / "test").is_dir():
            test, test_classes = read(root / "test")
            if test_classes != classes:  # labels are indices into each folder's own class list
                raise UsageError(f"{root / 'test'} has classes {test_classes}, but "
                                 f"{root / 'train'} has {classes}: use the same class folders")
        return train_x, train_y, test
    (x, y), _ = read(root)
    return x, y, None


_LOADERS: dict[str, Callable[[DataSettings], _Loaded]] = {
    "digits": _load_digits,
    "mnist": _mnist_like("MNIST"),
    "fashion-mnist": _mnist_like("FashionMNIST"),
    "kmnist": _mnist_like("KMNIST"),
    "cifar10": _cifar("CIFAR10"),
    "cifar100": _cifar("CIFAR100"),
    "svhn": _load_svhn,
}
