"""ViZDoom rollouts collected live from the engine in the vizdoom wheel (a few episodes of 20 steps)."""
import argparse
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from videogen_lite.data import HDF5Dataset, collect_vizdoom, read_attrs, scenario_names
from videogen_lite.data.cli import add_data_commands

BUTTONS = {"health_gathering_supreme": ["TURN_LEFT", "TURN_RIGHT", "MOVE_FORWARD"],
           "basic": ["MOVE_LEFT", "MOVE_RIGHT", "ATTACK"]}


@pytest.mark.parametrize("scenario", sorted(BUTTONS))
def test_collects_moving_frames_and_one_hot_actions(scenario, tmp_path):
    out = tmp_path / f"{scenario}.h5"
    summary = collect_vizdoom(scenario, episodes=3, length=20, out=out, progress=False)
    assert summary["episodes"] == {"train": 1, "val": 1, "test": 1}
    attrs = read_attrs(out)
    assert attrs["source"] == "vizdoom" and attrs["scenario"] == scenario
    assert attrs["action_names"] == ["NOOP", *BUTTONS[scenario]] and attrs["action_size"] == 4
    with h5py.File(out) as f:
        frames, actions = f["train/frames"][:], f["train/actions"][:]
        assert f["train/episode_lengths"][:].tolist() == [20]
    assert frames.shape == (20, 64, 64, 3) and frames.dtype == np.uint8
    assert np.array_equal(actions.sum(1), np.ones(20)) and set(np.unique(actions)) == {0.0, 1.0}
    assert len(np.unique(actions.argmax(1))) > 1  # the policy does more than one thing
    motion = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert (motion > 0.5).sum() >= 5  # the view changes: not a frozen agent
    item = HDF5Dataset(out, "train", 16)[0]
    assert item["video"].shape == (3, 16, 64, 64) and item["actions"].shape == (16, 4)


def test_same_seed_same_rollouts(tmp_path):
    for name in ("a", "b"):
        collect_vizdoom("defend_the_center", 3, 12, tmp_path / f"{name}.h5", resolution=32, seed=5, progress=False)
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        for split in ("train", "val", "test"):
            assert np.array_equal(a[split]["frames"][:], b[split]["frames"][:])
            assert np.array_equal(a[split]["actions"][:], b[split]["actions"][:])


def test_a_users_cfg_path_and_the_command_line(tmp_path):
    import vizdoom

    for name in ("basic.cfg", "basic.wad"):
        shutil.copy(Path(vizdoom.scenarios_path) / name, tmp_path / name)
    parser = argparse.ArgumentParser()
    add_data_commands(parser.add_subparsers(dest="command"))
    out = tmp_path / "mine.h5"
    args = parser.parse_args(["data", "vizdoom", "--scenario", str(tmp_path / "basic.cfg"), "--episodes", "3",
                              "--length", "8", "--out", str(out), "--resolution", "16"])
    args.run(args)
    assert read_attrs(out)["scenario"] == str(tmp_path / "basic.cfg")
    assert HDF5Dataset(out, "test", 8)[0]["video"].shape == (3, 8, 16, 16)


def test_bad_arguments(tmp_path):
    assert {"health_gathering_supreme", "basic", "defend_the_center"} <= set(scenario_names())
    with pytest.raises(ValueError, match="unknown ViZDoom scenario 'battle2'.*health_gathering_supreme"):
        collect_vizdoom("battle2", 3, 10, tmp_path / "x.h5", progress=False)
    with pytest.raises(ValueError, match="does not exist"):
        collect_vizdoom(str(tmp_path / "battle2.cfg"), 3, 10, tmp_path / "x.h5", progress=False)
    with pytest.raises(ValueError, match="at least 3 episodes"):
        collect_vizdoom("basic", 2, 10, tmp_path / "x.h5", progress=False)
