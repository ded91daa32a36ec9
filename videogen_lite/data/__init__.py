"""Datasets. Every one yields ``dict(video=float32 [C, T, H, W] in [-0.5, 0.5], actions=float32 [T, A],
label=...)``; ``A = 0`` where a dataset has no actions.

- :class:`MovingMNIST`: bouncing real MNIST digits, generated on the fly (no file needed).
- :class:`HDF5Dataset`: what the converters write: ViZDoom rollouts (:func:`collect_vizdoom`),
  BAIR robot pushing (:func:`convert_bair`), cached video folders.
- :class:`VideoFolder`: any folder of mp4/webm/avi/gif files, decoded with ffmpeg.
- :class:`MovingMNISTFile` and :func:`load_mnist_idx`: the standard ``mnist_test_seq.npy`` and your own
  MNIST idx files.

:func:`build_dataset` makes the dataset a config's ``data`` section names.
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from .bair import convert_bair
from .hdf5 import HDF5Dataset, HDF5Writer, read_attrs
from .mnist_files import MovingMNISTFile, load_mnist_idx
from .moving_mnist import MovingMNIST
from .video_folder import VideoFolder
from .vizdoom import collect_vizdoom, scenario_names

__all__ = [
    "HDF5Dataset",
    "HDF5Writer",
    "MovingMNIST",
    "MovingMNISTFile",
    "VideoFolder",
    "build_dataset",
    "collect_vizdoom",
    "convert_bair",
    "load_mnist_idx",
    "read_attrs",
    "scenario_names",
]

# the command that makes each file-based dataset, for error messages
MAKE_COMMAND = {
    "vizdoom": "videogen-lite data vizdoom --scenario health_gathering_supreme --episodes 100 --length 300 "
               "--out {path}",
    "bair": "videogen-lite data bair --tfrecords softmotion30_44k --out {path}",
    "hdf5": "videogen-lite data vizdoom|bair|moving-mnist ... --out {path}",
    "video_folder": "put .mp4/.webm/.avi/.gif files in {path} (optionally in train/ and test/ subfolders)",
    "moving_mnist": "leave data.path out for the built-in digits, or point it at mnist_test_seq.npy or MNIST "
                    "idx files ({path})",
}


def _require_path(data_cfg) -> Path:
    name, path = data_cfg.name, data_cfg.path
    if not path:
        raise ValueError(f"data.name = {name!r} reads its videos from disk but data.path is not set; "
                         f"make them with: {MAKE_COMMAND[name].format(path='data/' + name + '.h5')} "
                         "and set data.path to that file")
    if not Path(path).exists():
        raise FileNotFoundError(f"data.path {path!r} for data.name = {name!r} does not exist; make it with: "
                                f"{MAKE_COMMAND[name].format(path=path)}")
    return Path(path)


def _check_shape(dataset: HDF5Dataset, data_cfg) -> HDF5Dataset:
    expected = (data_cfg.resolution, data_cfg.resolution, data_cfg.channels)
    if tuple(dataset.frame_shape) != expected:
        raise ValueError(f"{dataset.path!r} holds frames [H, W, C] = {list(dataset.frame_shape)} but the config "
                         f"expects {list(expected)} (data.resolution, data.channels); fix the config or the file")
    if dataset.action_size != data_cfg.action_size:
        raise ValueError(f"{dataset.path!r} holds actions of size {dataset.action_size} but data.action_size = "
                         f"{data_cfg.action_size}; set data.action_size={dataset.action_size}")
    return dataset


def build_dataset(data_cfg, split: str) -> Dataset:
    """The dataset that a config's ``data`` section (:class:`videogen_lite.config.DataConfig`) names."""
    name, length, seed = data_cfg.name, data_cfg.sequence_length, data_cfg.seed
    if name == "moving_mnist":
        if not data_cfg.path:
            return MovingMNIST(split, sequence_length=length, resolution=data_cfg.resolution,
                               num_digits=data_cfg.num_digits, seed=seed)
        path = _require_path(data_cfg)
        if path.suffix == ".npy":
            dataset = MovingMNISTFile(path, split, length, seed=seed)
            if dataset.resolution != data_cfg.resolution:
                raise ValueError(f"{str(path)!r} holds {dataset.resolution}x{dataset.resolution} frames but "
                                 f"data.resolution = {data_cfg.resolution}; set data.resolution={dataset.resolution}")
            return dataset
        if path.suffix in (".h5", ".hdf5"):
            return _check_shape(HDF5Dataset(path, split, length, seed=seed), data_cfg)
        return MovingMNIST(split, sequence_length=length, resolution=data_cfg.resolution,
                           num_digits=data_cfg.num_digits, seed=seed, digits=load_mnist_idx(path))
    if name in ("vizdoom", "bair", "hdf5"):
        return _check_shape(HDF5Dataset(_require_path(data_cfg), split, length, seed=seed), data_cfg)
    if name == "video_folder":
        return VideoFolder(_require_path(data_cfg), length, data_cfg.resolution, split=split, seed=seed)
    raise ValueError(f"unknown data.name {name!r}: expected one of moving_mnist, vizdoom, bair, hdf5, video_folder")
