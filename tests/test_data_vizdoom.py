"""ViZDoom rollouts collected live from the engine in the vizdoom wheel (a few episodes of 20 to 40 steps)."""
import argparse
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from videogen_lite.data import HDF5Dataset, collect_vizdoom, read_attrs, scenario_names
from videogen_lite.data.cli import add_data_commands
from videogen_lite.data.vizdoom import (
    TURN_AWAY_DEPTH,
    VIEW_CLEAR_DEPTH,
    WALL_NEAR_DEPTH,
    ExploringPolicy,
    _start_in_temp_dir,
    make_game,
    read_view,
    resize_frame,
)

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


HGS_ACTIONS = ["NOOP", "TURN_LEFT", "TURN_RIGHT", "MOVE_FORWARD"]
FAR = 60  # depth units: an open room


def depth_buffer(left=FAR, centre=FAR, right=FAR) -> np.ndarray:
    """A hand-made uint8 depth buffer [120, 160]: the left, middle and right of the view at given depths."""
    depth = np.full((120, 160), FAR, np.uint8)
    depth[:, :53], depth[:, 53:107], depth[:, 107:] = left, centre, right
    return depth


def medkit(x, width=8, name="CustomMedikit", id=0):
    """A label as in ``state.labels``: a box of ``width`` pixels from column ``x``, below the horizon."""
    return SimpleNamespace(object_id=id, object_name=name, x=x, y=70, width=width, height=6)


def decide(depth, labels=(), policy=None) -> str:
    policy = policy or ExploringPolicy(HGS_ACTIONS, np.random.default_rng(0))
    return HGS_ACTIONS[policy(read_view(depth, list(labels)))]


def test_policy_turns_away_from_walls_towards_free_space_until_the_view_is_clear():
    assert TURN_AWAY_DEPTH > WALL_NEAR_DEPTH and VIEW_CLEAR_DEPTH > TURN_AWAY_DEPTH
    assert decide(depth_buffer(left=40, centre=5, right=10)) == "TURN_LEFT"
    assert decide(depth_buffer(left=10, centre=5, right=40)) == "TURN_RIGHT"
    assert decide(depth_buffer(left=10, centre=TURN_AWAY_DEPTH - 1, right=40)) == "TURN_RIGHT"  # turn before near
    policy = ExploringPolicy(HGS_ACTIONS, np.random.default_rng(0))
    assert decide(depth_buffer(left=40, centre=5, right=10), policy=policy) == "TURN_LEFT"
    # the turn is held while the middle is not clear, even where the right now looks more open
    assert decide(depth_buffer(left=10, centre=VIEW_CLEAR_DEPTH - 1, right=40), policy=policy) == "TURN_LEFT"
    # a wall ahead wins over a medkit
    assert decide(depth_buffer(centre=5, right=10), [medkit(x=140)]) == "TURN_LEFT"


def test_policy_turns_to_the_nearest_medkit_and_walks_to_it():
    assert decide(depth_buffer(), [medkit(x=10)]) == "TURN_LEFT"
    assert decide(depth_buffer(), [medkit(x=140)]) == "TURN_RIGHT"
    assert decide(depth_buffer(), [medkit(x=76)]) == "MOVE_FORWARD"  # centred on the middle of the view
    depth = depth_buffer()
    depth[70:76, 140:148] = 20  # the medkit on the right is nearer than the one on the left
    depth[70:76, 10:18] = 40
    policy = ExploringPolicy(HGS_ACTIONS, np.random.default_rng(0))
    assert decide(depth, [medkit(x=10, id=1), medkit(x=140, id=2)], policy) == "TURN_RIGHT"
    # it keeps going for that one while it is in view, even when the other one now looks nearer
    depth[70:76, 10:18] = 10
    assert decide(depth, [medkit(x=10, id=1), medkit(x=140, id=2)], policy) == "TURN_RIGHT"
    assert decide(depth, [medkit(x=10, id=1)], policy) == "TURN_LEFT"  # picked up: the next one


def test_policy_wanders_the_same_way_for_a_seed_and_ignores_poison():
    def wander(labels):
        policy = ExploringPolicy(HGS_ACTIONS, np.random.default_rng(3))
        return [decide(depth_buffer(), labels, policy) for _ in range(30)]

    assert wander([]) == wander([]) == wander([medkit(x=10, name="Poison")])
    assert {"TURN_LEFT", "TURN_RIGHT", "MOVE_FORWARD"} <= set(wander([]))


def test_policy_without_turn_buttons_only_wanders():
    policy = ExploringPolicy(["NOOP", "MOVE_LEFT", "MOVE_RIGHT", "ATTACK"], np.random.default_rng(0))
    actions = {policy(read_view(depth_buffer(centre=5), [medkit(x=10)])) for _ in range(60)}
    assert len(actions) > 1  # neither a wall nor a medkit makes it hold one action


def test_hgs_rollouts_avoid_walls_are_deterministic_and_replay(tmp_path):
    summaries = [collect_vizdoom("health_gathering_supreme", 3, 40, tmp_path / f"{name}.h5", seed=1, progress=False)
                 for name in ("a", "b")]
    summary = summaries[0]
    assert summary["frames"] == 120 and summary["mean_episode_length"] == 40
    assert summary["wall_facing_share"] <= 0.10  # the old random policy faced a near wall in about half the frames
    assert list(summary["action_shares"]) == HGS_ACTIONS and sum(summary["action_shares"].values()) == pytest.approx(1)
    assert all(summary["action_shares"][name] > 0.1 for name in ("TURN_LEFT", "TURN_RIGHT", "MOVE_FORWARD"))
    assert {key: value for key, value in summaries[1].items() if key not in ("path", "seconds", "frames_per_second")} \
        == {key: value for key, value in summary.items() if key not in ("path", "seconds", "frames_per_second")}
    attrs = read_attrs(tmp_path / "a.h5")
    assert attrs["policy"] == ExploringPolicy.name
    assert json.loads(attrs["policy_parameters"])["wall_near_depth"] == WALL_NEAR_DEPTH
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert np.array_equal(a["train/frames"][:], b["train/frames"][:])
        assert np.array_equal(a["train/actions"][:], b["train/actions"][:])
        frames, actions = a["train/frames"][:], a["train/actions"][:].argmax(1)
    # replaying the recorded actions in a fresh engine shows the recorded frames: frame t is what the agent saw
    # when it took action t, and the recorded actions are the ones the engine received
    game = make_game("health_gathering_supreme", seed=1)
    _start_in_temp_dir(game)
    try:
        game.new_episode()
        for frame, action in zip(frames, actions):
            assert np.array_equal(resize_frame(game.get_state().screen_buffer, 64), frame)
            game.make_action(np.eye(4, 3, k=-1)[action].tolist(), 4)
    finally:
        game.close()
