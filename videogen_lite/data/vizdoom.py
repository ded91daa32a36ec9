"""ViZDoom rollouts collected live from the ``vizdoom`` wheel's engine, written as an HDF5 video file.

The engine and its scenarios ship inside the wheel (``vizdoom.scenarios_path``): ``basic``,
``defend_the_center``, ``health_gathering_supreme`` (the paper's HGS), ``my_way_home``, ... A scenario
is one of those names or the path to a user's own ``.cfg`` (or a bare ``.wad``, played with
:data:`WAD_BUTTONS`). The paper's Battle2 does not ship in the wheel: pass its ``.cfg`` path.

The engine runs headless (no window) at its smallest resolution, 160x120 RGB, and every recorded
frame is resized to ``resolution`` x ``resolution`` (the whole field of view, squeezed to a square).
A scripted exploring policy (:class:`ExploringPolicy`) plays the way a player explores HGS: it reads the
engine's depth buffer and the labels of the objects in view, turns away from walls towards the more open
side, walks to the nearest medkit in view, and otherwise wanders with moves and turns held for a few steps.

The depth buffer is uint8 ``[120, 160]``, one value per screen pixel, small = near. Measured with vizdoom
1.3.2 on HGS: walking straight at a wall, the depth in the middle of the view falls by about 4.6 per
forward step (about 33 map units), so one depth unit is about 7 map units; it reads 1 or 2 when the
player touches the wall, and the room's far walls read up to about 63.

Actions are one-hot vectors over ``["NOOP", *buttons]`` (the scenario's buttons), so
``action_size = len(buttons) + 1``: 4 for HGS (turn left, turn right, move forward). The frame at
step t is what the agent saw when it took action t. Episodes end when the game does (death, timeout)
or after ``length`` steps; they are split 8:1:1 into train/val/test in the order they were played.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from .hdf5 import HDF5Writer

WAD_BUTTONS = ("TURN_LEFT", "TURN_RIGHT", "MOVE_FORWARD", "MOVE_BACKWARD", "MOVE_LEFT", "MOVE_RIGHT", "ATTACK")
# how often the wandering policy picks an action (relative weights); other buttons weigh 1
POLICY_WEIGHTS = {"NOOP": 0.5, "MOVE_FORWARD": 4.0, "TURN_LEFT": 2.0, "TURN_RIGHT": 2.0, "ATTACK": 1.0}
# a wall is near when the middle of the view is closer than this, in depth units: about 85 map units, two
# or three forward steps; the collection's wall-facing share counts the frames that face a near wall
WALL_NEAR_DEPTH = 12.0
# the policy starts turning away from a wall this far (about 170 map units): the player keeps sliding about
# 70 map units (10 depth units) after it stops pressing forward, and should stop before the wall is near
TURN_AWAY_DEPTH = 24.0
# a turn away from a wall is held until the middle of the view is at least this far (about 250 map units)
VIEW_CLEAR_DEPTH = 36.0
# the middle of the view: the rows around the horizon and the columns within about 14 degrees of the aim
# (the horizontal field of view is 90 degrees), as fractions of the screen's height and width
HORIZON_ROWS = (5 / 12, 7 / 12)
CENTRE_COLUMNS = (3 / 8, 5 / 8)
MEDKIT_NAMES = ("Medikit", "CustomMedikit")
# a medkit whose centre is within this fraction of the screen width of the middle is straight ahead
# (about 10 pixels of 160, or 7 degrees): walk to it; further out, turn towards it
MEDKIT_AIM = 1 / 16
HOLD_STEPS = (2, 8)  # a wandering action is held for 2 to 8 steps


def scenario_names() -> list[str]:
    """Names of the scenarios that ship inside the vizdoom wheel."""
    import vizdoom

    return sorted(p.stem for p in Path(vizdoom.scenarios_path).glob("*.cfg"))


def make_game(scenario: str, seed: int = 0):
    """A headless ``vizdoom.DoomGame`` for a shipped scenario name or a ``.cfg``/``.wad`` path (not started)."""
    import vizdoom

    game = vizdoom.DoomGame()
    path = Path(scenario)
    if path.suffix in (".cfg", ".wad"):
        path = path.resolve()
        if not path.is_file():
            raise ValueError(f"scenario file {scenario!r} does not exist; expected a ViZDoom .cfg or .wad file")
        if path.suffix == ".cfg":
            game.load_config(str(path))
        else:
            game.set_doom_scenario_path(str(path))
            game.set_available_buttons([getattr(vizdoom.Button, name) for name in WAD_BUTTONS])
    elif scenario in scenario_names():
        game.load_config(str(Path(vizdoom.scenarios_path) / f"{scenario}.cfg"))
    else:
        raise ValueError(
            f"unknown ViZDoom scenario {scenario!r}: expected a path to a .cfg/.wad file or one of the "
            f"scenarios in the vizdoom wheel: {', '.join(scenario_names())} (the paper's Battle2 does not ship "
            "in the wheel: pass the path to its .cfg)"
        )
    game.set_window_visible(False)
    game.set_screen_format(vizdoom.ScreenFormat.RGB24)
    game.set_screen_resolution(vizdoom.ScreenResolution.RES_160X120)
    game.set_mode(vizdoom.Mode.PLAYER)
    game.set_sound_enabled(False)
    game.set_doom_config_path(str(Path(tempfile.gettempdir()) / "videogen_lite_vizdoom.ini"))  # not in cwd
    game.set_seed(seed)
    if not game.get_available_buttons():
        raise ValueError(f"scenario {scenario!r} declares no available_buttons; the agent could not act")
    return game


def _start_in_temp_dir(game) -> None:
    """Start the engine from the temp folder: it creates a ``_vizdoom/`` folder in its working folder."""
    here = os.getcwd()
    os.chdir(tempfile.gettempdir())
    try:
        game.init()
    finally:
        os.chdir(here)


def _band(depth: np.ndarray, columns: tuple[float, float]) -> np.ndarray:
    """The horizon rows of ``depth`` ``[H, W]`` between the fractions ``columns`` of its width."""
    height, width = depth.shape
    return depth[round(HORIZON_ROWS[0] * height):round(HORIZON_ROWS[1] * height),
                 round(columns[0] * width):round(columns[1] * width)]


def centre_depth(depth: np.ndarray) -> float:
    """Median depth of the middle of the view (depth units, small = near) of a depth buffer ``[H, W]``.

    Below :data:`WALL_NEAR_DEPTH`, the player faces a wall (or another obstacle) it would reach in two or
    three forward steps.
    """
    return float(np.median(_band(depth, CENTRE_COLUMNS)))


class Medkit(NamedTuple):
    """A medkit in view: the engine's ``object_id`` (the same while it stays in view), its horizontal
    position from -0.5 (left edge of the screen) to 0.5 (right edge), and its depth (depth units)."""

    id: int
    offset: float
    depth: float


@dataclass(frozen=True)
class View:
    """What :class:`ExploringPolicy` reads from one engine state.

    ``centre``, ``left`` and ``right`` are median depths (depth units, small = near) of the middle of the
    view and of the left and right thirds of the horizon rows; ``medkits`` are the medkits in view,
    nearest first.
    """

    centre: float
    left: float
    right: float
    medkits: tuple[Medkit, ...] = ()


def read_view(depth: np.ndarray, labels) -> View:
    """A :class:`View` of a depth buffer uint8 ``[H, W]`` and the state's labels (``state.labels``).

    Each label has ``object_id``, ``object_name`` and a box ``x, y, width, height`` in screen pixels. A
    medkit's depth is the smallest depth inside its box (its sprite is nearer than what lies behind it).
    """
    medkits = [Medkit(label.object_id, (label.x + label.width / 2) / depth.shape[1] - 0.5,
                      float(depth[label.y:label.y + label.height, label.x:label.x + label.width].min()))
               for label in labels if label.object_name in MEDKIT_NAMES and label.width > 0 and label.height > 0]
    return View(centre=centre_depth(depth), left=float(np.median(_band(depth, (0, 1 / 3)))),
                right=float(np.median(_band(depth, (2 / 3, 1)))),
                medkits=tuple(sorted(medkits, key=lambda medkit: medkit.depth)))


class ExploringPolicy:
    """Explores like a player: avoid walls, pick up medkits, otherwise wander. Deterministic given ``rng``.

    Each call takes the :class:`View` of the current state and returns an index into ``action_names``:

    1. turning away from a wall: keep turning until the middle of the view is clear
       (:data:`VIEW_CLEAR_DEPTH`);
    2. a wall ahead in the middle of the view (nearer than :data:`TURN_AWAY_DEPTH`, so that the player
       stops before it is near, :data:`WALL_NEAR_DEPTH`): start turning towards the side with more free
       space (the larger of ``left`` and ``right``; a tie is broken at random);
    3. a medkit in view: turn towards it, or walk forward once it is within :data:`MEDKIT_AIM` of the middle.
       The medkit is the one it went for at the last step while that one stays in view, else the nearest
       (far medkits read almost the same depth: switching between them would turn left and right in turn);
    4. otherwise wander: pick an action (:data:`POLICY_WEIGHTS`) and hold it for :data:`HOLD_STEPS` steps.

    Rules 1 to 3 need TURN_LEFT, TURN_RIGHT and MOVE_FORWARD; a scenario without them (``basic``) only
    wanders.
    """

    name = "avoid_walls_seek_medkits"
    parameters = {"wall_near_depth": WALL_NEAR_DEPTH, "turn_away_depth": TURN_AWAY_DEPTH,
                  "view_clear_depth": VIEW_CLEAR_DEPTH, "horizon_rows": HORIZON_ROWS,
                  "centre_columns": CENTRE_COLUMNS, "medkit_names": MEDKIT_NAMES, "medkit_aim": MEDKIT_AIM,
                  "hold_steps": HOLD_STEPS, "weights": POLICY_WEIGHTS}

    def __init__(self, action_names: list[str], rng: np.random.Generator):
        weights = np.array([POLICY_WEIGHTS.get(name, 1.0) for name in action_names])
        self.probabilities = weights / weights.sum()
        self.rng = rng
        self.steers = {"TURN_LEFT", "TURN_RIGHT", "MOVE_FORWARD"} <= set(action_names)
        self.left, self.right, self.forward = (action_names.index(name) if self.steers else None
                                               for name in ("TURN_LEFT", "TURN_RIGHT", "MOVE_FORWARD"))
        self.turning_away: int | None = None  # the turn held away from a wall
        self.target: int | None = None  # the object_id of the medkit it goes for
        self.action, self.steps_left = 0, 0  # the wandering action and how long it is still held

    def __call__(self, view: View) -> int:
        if self.steers:
            if self.turning_away is not None and view.centre < VIEW_CLEAR_DEPTH:
                return self.turning_away
            self.turning_away = None
            if view.centre < TURN_AWAY_DEPTH:
                more_room_left = view.left > view.right if view.left != view.right else self.rng.random() < 0.5
                self.turning_away = self.left if more_room_left else self.right
                self.steps_left = 0
                return self.turning_away
            if view.medkits:
                medkit = next((medkit for medkit in view.medkits if medkit.id == self.target), view.medkits[0])
                self.target, self.steps_left = medkit.id, 0
                if abs(medkit.offset) <= MEDKIT_AIM:
                    return self.forward
                return self.left if medkit.offset < 0 else self.right
            self.target = None
        if self.steps_left == 0:
            self.action = int(self.rng.choice(len(self.probabilities), p=self.probabilities))
            self.steps_left = int(self.rng.integers(HOLD_STEPS[0], HOLD_STEPS[1] + 1))
        self.steps_left -= 1
        return self.action


def resize_frame(frame: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> uint8 ``[resolution, resolution, 3]`` (antialiased bilinear)."""
    image = rearrange(torch.from_numpy(frame).float(), "h w c -> 1 c h w")
    image = F.interpolate(image, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return rearrange(image.round().clamp(0, 255).to(torch.uint8), "1 c h w -> h w c").numpy()


def split_episodes(n: int) -> list[str]:
    """The split of each of ``n`` episodes, 8:1:1 in order (val and test get at least one each)."""
    if n < 3:
        raise ValueError(f"need at least 3 episodes for a train/val/test split, got {n}")
    n_held = max(1, round(n / 10))
    return ["train"] * (n - 2 * n_held) + ["val"] * n_held + ["test"] * n_held


def collect_vizdoom(scenario: str, episodes: int, length: int, out: str | Path, resolution: int = 64,
                    seed: int = 0, frame_skip: int = 4, progress: bool = True) -> dict:
    """Play ``episodes`` episodes of at most ``length`` steps and write them to the HDF5 file ``out``.

    Each step repeats the chosen action for ``frame_skip`` engine tics. The rollouts are a pure function
    of ``seed``. Returns a summary: ``dict(path, frames, episodes={split: count}, seconds,
    frames_per_second, action_names, wall_facing_share, mean_episode_length, action_shares={name: share})``;
    ``wall_facing_share`` is the share of recorded frames whose middle of the view is nearer than
    :data:`WALL_NEAR_DEPTH` (:func:`centre_depth` of the frame's depth buffer).
    """
    if length < 1 or resolution < 1 or frame_skip < 1:
        raise ValueError(f"length, resolution and frame_skip must be positive, got {length}, {resolution}, {frame_skip}")
    splits = split_episodes(episodes)
    game = make_game(scenario, seed)
    game.set_depth_buffer_enabled(True)
    game.set_labels_buffer_enabled(True)
    buttons = [button.name for button in game.get_available_buttons()]
    action_names = ["NOOP", *buttons]
    button_vectors = np.eye(len(action_names), len(buttons), k=-1).tolist()  # row 0 = no button pressed
    policy = ExploringPolicy(action_names, np.random.default_rng(seed))
    attrs = {"scenario": str(scenario), "action_names": action_names, "action_size": len(action_names),
                 "buttons": buttons, "frame_skip": frame_skip, "resolution": resolution, "seed": seed,
                 "policy": policy.name, "policy_parameters": json.dumps(policy.parameters)}
    _start_in_temp_dir(game)
    action_counts = np.zeros(len(action_names), np.int64)
    wall_facing, episode_lengths, started = 0, [], time.perf_counter()
    try:
        with HDF5Writer(out, source="vizdoom", attrs=attrs) as writer:
            for episode, split in enumerate(splits):
                game.new_episode()
                frames, actions = [], []
                while not game.is_episode_finished() and len(frames) < length:
                    state = game.get_state()
                    frames.append(resize_frame(state.screen_buffer, resolution))
                    view = read_view(state.depth_buffer, state.labels)
                    wall_facing += view.centre < WALL_NEAR_DEPTH
                    action = policy(view)
                    actions.append(action)
                    game.make_action(button_vectors[action], frame_skip)
                one_hot = np.eye(len(action_names), dtype=np.float32)[actions]  # [L, A]
                writer.add_episode(split, np.stack(frames), one_hot)
                action_counts += np.bincount(actions, minlength=len(action_names))
                episode_lengths.append(len(frames))
                if progress:
                    rate = sum(episode_lengths) / (time.perf_counter() - started)
                    print(f"episode {episode + 1}/{episodes} ({split}): {len(frames)} frames, "
                          f"{rate:.0f} frames/s", file=sys.stderr)
    finally:
        game.close()
    seconds, total = time.perf_counter() - started, sum(episode_lengths)
    return {"path": str(out), "frames": total, "episodes": {s: splits.count(s) for s in ("train", "val", "test")},
                "seconds": seconds, "frames_per_second": total / seconds, "action_names": action_names,
                "wall_facing_share": wall_facing / total, "mean_episode_length": total / episodes,
                "action_shares": dict(zip(action_names, (action_counts / total).tolist()))}
