"""Moving MNIST from files: your own MNIST idx files, or the standard ``mnist_test_seq.npy``.

- :func:`load_mnist_idx` reads ``train-images-idx3-ubyte[.gz]`` and its labels file, for
  ``MovingMNIST(..., digits=load_mnist_idx(path))``.
- :class:`MovingMNISTFile` serves clips from ``mnist_test_seq.npy`` (Srivastava et al., 2015): uint8
  ``[20, 10000, 64, 64]``, 10,000 sequences of 20 frames, split 8:1:1 in order into train/val/test.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .hdf5 import SPLITS, to_video_tensor


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{str(path)!r} is not an MNIST idx file of unsigned bytes (magic {data[:4].hex()}, "
                         "expected 0000080N)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    values = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if values.size != np.prod(shape):
        raise ValueError(f"{str(path)!r} is truncated: header says {shape}, found {values.size} values")
    return values.reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_mnist_idx(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST idx files -> (images uint8 ``[N, 28, 28]`` in [0, 255], labels int64 ``[N]``).

    ``path`` is an images file (``train-images-idx3-ubyte`` or ``t10k-...``, optionally ``.gz``) with its
    labels file beside it, or a folder holding ``train-images-idx3-ubyte[.gz]`` and its labels.
    """
    path = Path(path)
    if path.is_dir():
        images_path = _find(path, "train-images-idx3-ubyte")
        if images_path is None:
            raise ValueError(f"folder {str(path)!r} holds no train-images-idx3-ubyte[.gz]; expected the MNIST idx files")
    else:
        images_path = path
    if not images_path.is_file():
        raise FileNotFoundError(f"MNIST images file {str(images_path)!r} does not exist")
    labels_stem = images_path.name.removesuffix(".gz").replace("images-idx3", "labels-idx1")
    labels_path = _find(images_path.parent, labels_stem)
    if labels_path is None:
        raise ValueError(f"no labels file {labels_stem}[.gz] beside {str(images_path)!r}; expected the idx labels")
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(f"expected images [N, 28, 28] and labels [N], got {images.shape} and {labels.shape}")
    return images, labels.astype(np.int64)


class MovingMNISTFile(Dataset):
    """Clips of ``sequence_length`` (at most 20) frames from ``mnist_test_seq.npy``.

    Sequences 0-7999 are ``train``, 8000-8999 ``val``, 9000-9999 ``test`` (fractions for files of other
    sizes). In ``train`` a clip starts at a frame drawn from a generator seeded by ``(seed, epoch,
    index)``; in ``val``/``test`` it starts at frame 0. Item: ``dict(video=float32 [1, T, 64, 64] in
    [-0.5, 0.5], actions=float32 [T, 0], label=int)``, the label being the sequence's index in the file.
    """

    def __init__(self, path: str | Path, split: str, sequence_length: int, seed: int = 0):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} does not exist; expected mnist_test_seq.npy")
        if split not in SPLITS:
            raise ValueError(f"split {split!r} does not exist: expected one of {', '.join(SPLITS)}")
        try:
            self.sequences = np.load(path, mmap_mode="r")  # uint8 [frames, sequences, H, W]
        except ValueError as error:
            raise ValueError(f"{str(path)!r} is not a .npy array file ({error})") from error
        if self.sequences.ndim != 4 or self.sequences.dtype != np.uint8 or self.sequences.shape[2] != self.sequences.shape[3]:
            raise ValueError(f"{str(path)!r} holds {self.sequences.dtype} {self.sequences.shape}; expected uint8 "
                             "[frames, sequences, H, W] like mnist_test_seq.npy ([20, 10000, 64, 64])")
        frames, count = self.sequences.shape[:2]
        if not 1 <= sequence_length <= frames:
            raise ValueError(f"sequence_length {sequence_length} does not fit sequences of {frames} frames in "
                             f"{str(path)!r}; expected 1 to {frames}")
        cuts = [0, round(count * 0.8), round(count * 0.9), count]
        index = SPLITS.index(split)
        self.first, self.count = cuts[index], cuts[index + 1] - cuts[index]
        self.split, self.sequence_length, self.seed, self.epoch = split, sequence_length, seed, 0
        self.resolution = self.sequences.shape[2]

    def set_epoch(self, epoch: int) -> None:
        """Choose fresh random windows (training split) for this epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        return self.item(index, self.epoch)

    def item(self, index: int, epoch: int) -> dict:
        """Item ``index`` in ``epoch``: a fresh random start per epoch in ``train``, frame 0 otherwise."""
        if not 0 <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} sequences")
        start = 0
        if self.split == "train":
            rng = np.random.default_rng([self.seed, epoch, index])
            start = int(rng.integers(0, self.sequences.shape[0] - self.sequence_length + 1))
        frames = self.sequences[start:start + self.sequence_length, self.first + index]  # [T, H, W]
        return {"video": to_video_tensor(frames[..., None]),
                    "actions": torch.zeros(self.sequence_length, 0), "label": self.first + index}
