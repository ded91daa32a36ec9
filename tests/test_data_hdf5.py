"""HDF5 video files: the writer, HDF5Dataset's windows, determinism, workers, errors; build_dataset; the CLI."""
import argparse

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from videogen_lite.config import DataConfig
from videogen_lite.data import HDF5Dataset, HDF5Writer, MovingMNIST, build_dataset, read_attrs
from videogen_lite.data.cli import add_data_commands, run_data

LENGTHS = {"train": [40, 10, 33], "val": [20], "test": [21, 16]}


@pytest.fixture
def episodes(tmp_path):
    """A small file (8x8 RGB frames, 2 action values) and the episodes written to it."""
    rng = np.random.default_rng(0)
    path = tmp_path / "clips.h5"
    written = {split: [] for split in LENGTHS}
    with HDF5Writer(path, source="test", attrs={"action_names": ["x", "y"]}) as writer:
        for split, lengths in LENGTHS.items():
            for length in lengths:
                frames = rng.integers(0, 256, (length, 8, 8, 3), dtype=np.uint8)
                actions = rng.normal(size=(length, 2)).astype(np.float32)
                writer.add_episode(split, frames, actions)
                written[split].append((frames, actions))
    return path, written


def test_items_are_windows_of_the_written_episodes(episodes):
    path, written = episodes
    dataset = HDF5Dataset(path, "train", 16)
    assert len(dataset) == 40 // 16 + 10 // 16 + 33 // 16  # the 10-frame episode is too short
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["video"].shape == (3, 16, 8, 8) and item["video"].dtype == torch.float32
        assert item["actions"].shape == (16, 2)
        assert -0.5 <= item["video"].min() and item["video"].max() <= 0.5
        frames, actions = written["train"][item["label"]]
        start = dataset.window_start(index)
        assert 0 <= start <= len(frames) - 16
        expected = torch.from_numpy(frames[start:start + 16]).permute(3, 0, 1, 2).float() / 255 - 0.5
        assert torch.equal(item["video"], expected)
        assert torch.equal(item["actions"], torch.from_numpy(actions[start:start + 16]))


def test_training_windows_are_random_but_deterministic(episodes):
    path, _ = episodes
    a, b = HDF5Dataset(path, "train", 8, seed=1), HDF5Dataset(path, "train", 8, seed=1)
    starts = [a.window_start(i) for i in range(len(a))]
    assert starts == [b.window_start(i) for i in range(len(b))]
    assert torch.equal(a[3]["video"], b[3]["video"])
    assert starts != [HDF5Dataset(path, "train", 8, seed=2).window_start(i) for i in range(len(a))]
    a.set_epoch(1)
    assert starts != [a.window_start(i) for i in range(len(a))]


def test_evaluation_windows_are_fixed_and_back_to_back(episodes):
    path, _ = episodes
    dataset = HDF5Dataset(path, "test", 8)
    assert len(dataset) == 21 // 8 + 16 // 8
    assert [dataset.window_start(i) for i in range(len(dataset))] == [0, 8, 0, 8]
    assert [dataset[i]["label"] for i in range(len(dataset))] == [0, 0, 1, 1]
    dataset.set_epoch(5)
    assert dataset.window_start(1) == 8


def test_no_actions_gives_an_empty_action_axis(tmp_path):
    with HDF5Writer(tmp_path / "a.h5", source="test") as writer:
        writer.add_episode("train", np.zeros((5, 4, 4, 1), np.uint8))
    item = HDF5Dataset(tmp_path / "a.h5", "train", 5)[0]
    assert item["actions"].shape == (5, 0) and item["video"].shape == (1, 5, 4, 4)


def test_dataloader_with_two_workers_matches_one_process(episodes):
    path, _ = episodes
    dataset = HDF5Dataset(path, "train", 8, seed=3)
    dataset[0]  # opens the file in this process; workers must open their own
    serial = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    parallel = torch.cat([batch["video"] for batch in DataLoader(dataset, batch_size=2, num_workers=2)])
    assert torch.equal(serial["video"], parallel)


def test_bad_arguments_name_the_problem(episodes, tmp_path):
    path, _ = episodes
    with pytest.raises(ValueError, match="longer than every episode"):
        HDF5Dataset(path, "val", 21)
    with pytest.raises(ValueError, match="split 'validation' does not exist"):
        HDF5Dataset(path, "validation", 8)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        HDF5Dataset(tmp_path / "text.h5", "train", 8)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a videogen_lite video file"):
        HDF5Dataset(tmp_path / "other.h5", "train", 8)
    with pytest.raises(FileNotFoundError):
        HDF5Dataset(tmp_path / "missing.h5", "train", 8)
    with HDF5Writer(tmp_path / "w.h5", source="test") as writer:
        writer.add_episode("train", np.zeros((5, 4, 4, 3), np.uint8))
        with pytest.raises(ValueError, match="every episode"):
            writer.add_episode("train", np.zeros((5, 8, 8, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            writer.add_episode("train", np.zeros((5, 4, 4, 3), np.float32))


def test_attributes_are_kept(episodes):
    path, _ = episodes
    attrs = read_attrs(path)
    assert attrs["source"] == "test" and attrs["action_names"] == ["x", "y"]


def test_build_dataset_maps_names_and_explains_missing_files(episodes, tmp_path):
    path, _ = episodes
    assert isinstance(build_dataset(DataConfig(sequence_length=4, resolution=32), "val"), MovingMNIST)
    cfg = DataConfig(name="hdf5", path=str(path), channels=3, resolution=8, sequence_length=8, action_size=2)
    assert isinstance(build_dataset(cfg, "train"), HDF5Dataset)
    with pytest.raises(ValueError, match="videogen-lite data vizdoom"):
        build_dataset(DataConfig(name="vizdoom", channels=3), "train")
    with pytest.raises(FileNotFoundError, match="videogen-lite data bair"):
        build_dataset(DataConfig(name="bair", path=str(tmp_path / "bair.h5")), "train")
    cfg.resolution = 64
    with pytest.raises(ValueError, match=r"\[8, 8, 3\].*\[64, 64, 3\]"):
        build_dataset(cfg, "train")


def test_cli_writes_moving_mnist_clips(tmp_path):
    parser = argparse.ArgumentParser()
    add_data_commands(parser.add_subparsers(dest="command"))
    out = tmp_path / "mm.h5"
    args = parser.parse_args(["data", "moving-mnist", "--out", str(out), "--clips", "3", "1", "1",
                              "--sequence-length", "6", "--resolution", "32"])
    args.run(args)
    dataset = HDF5Dataset(out, "train", 6)
    assert len(dataset) == 3 and dataset[0]["video"].shape == (1, 6, 32, 32)
    expected, _ = MovingMNIST("train", sequence_length=6, resolution=32, length=3).clip(2)
    assert np.array_equal(((dataset[2]["video"][0] + 0.5) * 255).round().byte().numpy(), expected)
    assert run_data is args.run
