"""The HDF5 video file: one format that every converter writes and :class:`HDF5Dataset` reads.

Layout of a file (``h5py`` names; ``N`` frames and ``E`` episodes per split)::

    /                       attrs: format = "videogen_lite.video", version = 1, source ("vizdoom",
                                   "bair", "video_folder", ...) and what the source adds (scenario,
                                   action_names, action_size, ...)
    /<split>/frames         uint8   [N, H, W, C]  every frame of the split, episodes one after another
    /<split>/actions        float32 [N, A]        the action taken at each frame (absent: no actions)
    /<split>/episode_lengths int64  [E]           episode e is frames[start_e : start_e + length_e],
                                                  start_e = sum of the lengths before it

``<split>`` is ``train``, ``val`` or ``test`` (a file holds the ones it has). An *episode* is one
continuous video: a ViZDoom game, a BAIR clip, one file of a video folder.

Write a file with :class:`HDF5Writer`, read clips with :class:`HDF5Dataset`::

    with HDF5Writer("clips.h5", source="mine") as writer:
        writer.add_episode("train", frames)            # uint8 [L, H, W, C]
    dataset = HDF5Dataset("clips.h5", "train", sequence_length=16)
    dataset[0]["video"].shape                          # [C, 16, H, W], float in [-0.5, 0.5]
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset
from typing_extensions import Self

FORMAT = "videogen_lite.video"
SPLITS = ("train", "val", "test")


def to_video_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames ``[T, H, W, C]`` in [0, 255] -> float32 video ``[C, T, H, W]`` in [-0.5, 0.5]."""
    video = torch.from_numpy(frames.astype(np.float32)) / 255.0 - 0.5
    return rearrange(video, "t h w c -> c t h w")


class HDF5Writer:
    """Appends episodes to a new HDF5 video file (the layout in this module's docstring).

    ``source`` and ``attrs`` go into the file's root attributes. Every episode of a file has the same
    frame shape ``[H, W, C]`` and action size ``A``; both are fixed by the first episode written.
    """

    def __init__(self, path: str | Path, source: str, attrs: dict | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.path, "w")
        self.file.attrs.update({"format": FORMAT, "version": 1, "source": source, **(attrs or {})})
        self.frame_shape: tuple | None = None
        self.action_size: int | None = None

    def add_episode(self, split: str, frames: np.ndarray, actions: np.ndarray | None = None) -> None:
        """Append one episode: ``frames`` uint8 ``[L, H, W, C]``, ``actions`` float ``[L, A]`` or None."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {SPLITS}")
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or len(frames) == 0:
            raise ValueError(f"frames must be uint8 [L, H, W, C] with L >= 1, got {frames.dtype} {frames.shape}")
        actions = np.zeros((len(frames), 0), np.float32) if actions is None else np.asarray(actions, np.float32)
        if actions.shape[:1] != frames.shape[:1] or actions.ndim != 2:
            raise ValueError(f"actions must be [L={len(frames)}, A], got {actions.shape}")
        if self.frame_shape is None:
            self.frame_shape, self.action_size = frames.shape[1:], actions.shape[1]
        if frames.shape[1:] != self.frame_shape or actions.shape[1] != self.action_size:
            raise ValueError(
                f"every episode of a file must have frames [L, {', '.join(map(str, self.frame_shape))}] and "
                f"actions [L, {self.action_size}]; got {frames.shape} and {actions.shape}"
            )
        group = self.file.require_group(split)
        if "frames" not in group:
            # chunks of 16 frames: a clip window touches at most two chunks
            group.create_dataset("frames", (0, *self.frame_shape), np.uint8,
                                 maxshape=(None, *self.frame_shape), chunks=(16, *self.frame_shape))
            if self.action_size:
                group.create_dataset("actions", (0, self.action_size), np.float32,
                                     maxshape=(None, self.action_size), chunks=(1024, self.action_size))
            group.create_dataset("episode_lengths", (0,), np.int64, maxshape=(None,), chunks=(1024,))
        for name, values in (("frames", frames), ("actions", actions), ("episode_lengths", [len(frames)])):
            if name not in group:  # no actions
                continue
            dataset = group[name]
            start = len(dataset)
            dataset.resize(start + len(values), axis=0)
            dataset[start:] = values

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_attrs(path: str | Path) -> dict:
    """The root attributes of an HDF5 video file (source, scenario, action names, ...)."""
    with _open_checked(path) as f:
        return {key: (value.tolist() if isinstance(value, np.ndarray) else value) for key, value in f.attrs.items()}


def _open_checked(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HDF5 video file {str(path)!r} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{str(path)!r} is not an HDF5 file ({error}); expected a file written by "
                         "`videogen-lite data ...`") from error
    found = f.attrs.get("format")
    if found != FORMAT:
        f.close()
        raise ValueError(f"{str(path)!r} is an HDF5 file but not a videogen_lite video file: its attribute "
                         f"'format' is {found!r}, expected {FORMAT!r}")
    return f


class HDF5Dataset(Dataset):
    """Clips of ``sequence_length`` frames from one split of an HDF5 video file.

    Each episode of length ``L`` gives ``L // sequence_length`` items per epoch. In ``train`` an item's
    window starts anywhere in its episode, drawn from a generator seeded by ``(seed, epoch, index)``
    (call :meth:`set_epoch` each epoch for fresh windows); in ``val``/``test`` the windows are fixed,
    back to back from each episode's start. Episodes shorter than ``sequence_length`` are left out.

    Item: ``dict(video=float32 [C, T, H, W] in [-0.5, 0.5], actions=float32 [T, A], label=int)``, the
    label being the episode's index within the split. The file is opened lazily in each process, so the
    dataset works with ``DataLoader(num_workers > 0)``.
    """

    def __init__(self, path: str | Path, split: str, sequence_length: int, seed: int = 0):
        if sequence_length < 1:
            raise ValueError(f"sequence_length must be a positive integer, got {sequence_length}")
        self.path, self.split, self.sequence_length, self.seed = str(path), split, sequence_length, seed
        self.epoch = 0
        with _open_checked(path) as f:
            if split not in f:
                raise ValueError(f"split {split!r} does not exist in {self.path!r}; the file has "
                                 f"{sorted(k for k in f if k in SPLITS)}")
            lengths = f[split]["episode_lengths"][:]
            self.frame_shape = f[split]["frames"].shape[1:]  # (H, W, C)
            self.action_size = f[split]["actions"].shape[1] if "actions" in f[split] else 0
            self.attrs = dict(f.attrs)
        if not (lengths >= sequence_length).any():
            raise ValueError(
                f"sequence_length {sequence_length} is longer than every episode of split {split!r} in "
                f"{self.path!r} (longest: {lengths.max()} frames); choose sequence_length <= {lengths.max()}"
            )
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        windows = lengths // sequence_length
        # item i -> its episode; items of one episode are consecutive
        self.item_episode = np.repeat(np.arange(len(lengths)), windows)
        self.item_window = np.concatenate([np.arange(n) for n in windows])
        self.episode_starts, self.episode_lengths = starts, lengths
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Choose fresh random windows (training split) for this epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.item_episode)

    def _frames(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():  # first use in this (worker) process
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file[self.split]

    def window_start(self, index: int, epoch: int | None = None) -> int:
        """First frame (within its episode) of item ``index``'s clip in ``epoch`` (default: the one set)."""
        episode = self.item_episode[index]
        if self.split == "train":
            rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])
            return int(rng.integers(0, self.episode_lengths[episode] - self.sequence_length + 1))
        return int(self.item_window[index]) * self.sequence_length

    def __getitem__(self, index: int) -> dict:
        return self.item(index, self.epoch)

    def item(self, index: int, epoch: int) -> dict:
        """Item ``index`` in ``epoch``: a fresh random window per epoch in ``train``, a fixed one otherwise."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        episode = self.item_episode[index]
        start = int(self.episode_starts[episode]) + self.window_start(index, epoch)
        group = self._frames()
        frames = group["frames"][start:start + self.sequence_length]  # uint8 [T, H, W, C]
        if self.action_size:
            actions = group["actions"][start:start + self.sequence_length]  # float32 [T, A]
        else:
            actions = np.zeros((self.sequence_length, 0), np.float32)
        return {"video": to_video_tensor(frames), "actions": torch.from_numpy(actions), "label": int(episode)}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": None}
