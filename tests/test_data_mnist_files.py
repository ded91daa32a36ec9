"""Moving MNIST from files: MNIST idx files (plain and gzipped) and mnist_test_seq.npy."""
import gzip
import struct

import numpy as np
import pytest

from videogen_lite.config import DataConfig
from videogen_lite.data import MovingMNIST, MovingMNISTFile, build_dataset, load_mnist_idx


def write_idx(path, array: np.ndarray, compress: bool = False):
    data = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_idx(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = np.arange(50, dtype=np.uint8) % 10
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, compress)
    for path in (tmp_path, tmp_path / f"train-images-idx3-ubyte{suffix}"):
        loaded_images, loaded_labels = load_mnist_idx(path)
        assert np.array_equal(loaded_images, images) and np.array_equal(loaded_labels, labels)
    clip = MovingMNIST("train", sequence_length=4, resolution=32, length=2, digits=load_mnist_idx(tmp_path))[0]
    assert clip["video"].shape == (1, 4, 32, 32)
    cfg = DataConfig(path=str(tmp_path), sequence_length=4, resolution=32)
    assert isinstance(build_dataset(cfg, "test"), MovingMNIST)


def test_bad_idx_files(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="labels"):
        load_mnist_idx(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="not an MNIST idx file"):
        load_mnist_idx(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no train-images"):
        load_mnist_idx(tmp_path / "empty")


@pytest.fixture
def sequences(tmp_path):
    """A small file in the layout of mnist_test_seq.npy: uint8 [20 frames, 30 sequences, 64, 64]."""
    array = np.random.default_rng(0).integers(0, 256, (20, 30, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", array)
    return tmp_path / "mnist_test_seq.npy", array


def test_moving_mnist_file_splits_and_windows(sequences):
    path, array = sequences
    sizes = {split: len(MovingMNISTFile(path, split, 10)) for split in ("train", "val", "test")}
    assert sizes == {"train": 24, "val": 3, "test": 3}
    test = MovingMNISTFile(path, "test", 10)
    item = test[2]
    assert item["video"].shape == (1, 10, 64, 64) and item["actions"].shape == (10, 0) and item["label"] == 29
    assert np.array_equal(((item["video"][0] + 0.5) * 255).round().byte().numpy(), array[:10, 29])
    a, b = MovingMNISTFile(path, "train", 10, seed=1), MovingMNISTFile(path, "train", 10, seed=1)
    assert all((a[i]["video"] == b[i]["video"]).all() for i in range(5))
    starts = [int(np.flatnonzero((array[:, i] == ((a[i]["video"][0, 0] + 0.5) * 255).round().byte().numpy())
                                 .all(axis=(1, 2)))[0]) for i in range(24)]
    assert len(set(starts)) > 1  # training windows start at different frames
    cfg = DataConfig(path=str(path), sequence_length=10)
    assert isinstance(build_dataset(cfg, "val"), MovingMNISTFile)


def test_moving_mnist_file_errors(sequences, tmp_path):
    path, _ = sequences
    with pytest.raises(ValueError, match="does not fit sequences of 20 frames"):
        MovingMNISTFile(path, "train", 21)
    with pytest.raises(ValueError, match="split 'dev' does not exist"):
        MovingMNISTFile(path, "dev", 10)
    np.save(tmp_path / "wrong.npy", np.zeros((20, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"expected uint8 \[frames, sequences, H, W\]"):
        MovingMNISTFile(tmp_path / "wrong.npy", "train", 10)
