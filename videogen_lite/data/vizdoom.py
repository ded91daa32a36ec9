"""ViZDoom rollouts collected live from the ``vizdoom`` wheel's engine, written as an HDF5 video file.

The engine and its scenarios ship inside the wheel (``vizdoom.scenarios_path``): ``basic``,
``defend_the_center``, ``health_gathering_supreme`` (the paper's HGS), ``my_way_home``, ... A scenario
is one of those names or the path to a user's own ``.cfg`` (or a bare ``.wad``, played with
:data:`WAD_BUTTONS`). The paper's Battle2 does not ship in the wheel: pass its ``.cfg`` path.

The engine runs headless (no window) at its smallest resolution, 160x120 RGB, and every recorded
frame is resized to ``resolution`` x ``resolution`` (the whole field of view, squeezed to a square).
A scripted exploring policy plays: it picks one action, weighted towards moving and turning, and holds
it for 2 to 8 steps, so that clips show the view moving, turning and shooting.

Actions are one-hot vectors over ``["NOOP", *buttons]`` (the scenario's buttons), so
``action_size = len(buttons) + 1``: 4 for HGS (turn left, turn right, move forward). The frame at
step t is what the agent saw when it took action t. Episodes end when the game does (death, timeout)
or after ``length`` steps; they are split 8:1:1 into train/val/test in the order they were played.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from .hdf5 import HDF5Writer

WAD_BUTTONS = ("TURN_LEFT", "TURN_RIGHT", "MOVE_FORWARD", "MOVE_BACKWARD", "MOVE_LEFT", "MOVE_RIGHT", "ATTACK")
# how often the exploring policy picks an action (relative weights); other buttons weigh 1
POLICY_WEIGHTS = {"NOOP": 0.5, "MOVE_FORWARD": 4.0, "TURN_LEFT": 2.0, "TURN_RIGHT": 2.0, "ATTACK": 1.0}


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


class ExploringPolicy:
    """Picks an action index from ``action_names`` and holds it for 2 to 8 steps."""

    def __init__(self, action_names: list[str], rng: np.random.Generator):
        weights = np.array([POLICY_WEIGHTS.get(name, 1.0) for name in action_names])
        self.probabilities = weights / weights.sum()
        self.rng = rng
        self.action, self.steps_left = 0, 0

    def __call__(self) -> int:
        if self.steps_left == 0:
            self.action = int(self.rng.choice(len(self.probabilities), p=self.probabilities))
            self.steps_left = int(self.rng.integers(2, 9))
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

    Each step repeats the chosen action for ``frame_skip`` engine tics. Returns a summary:
    ``dict(path, frames, episodes={split: count}, seconds, frames_per_second, action_names)``.
    """
    if length < 1 or resolution < 1 or frame_skip < 1:
        raise ValueError(f"length, resolution and frame_skip must be positive, got {length}, {resolution}, {frame_skip}")
    splits = split_episodes(episodes)
    game = make_game(scenario, seed)
    buttons = [button.name for button in game.get_available_buttons()]
    action_names = ["NOOP", *buttons]
    button_vectors = np.eye(len(action_names), len(buttons), k=-1).tolist()  # row 0 = no button pressed
    policy = ExploringPolicy(action_names, np.random.default_rng(seed))
    attrs = {"scenario": str(scenario), "action_names": action_names, "action_size": len(action_names),
                 "buttons": buttons, "frame_skip": frame_skip, "resolution": resolution, "seed": seed,
                 "policy": "exploring: one action held for 2-8 steps"}
    _start_in_temp_dir(game)
    total, started = 0, time.perf_counter()
    try:
        with HDF5Writer(out, source="vizdoom", attrs=attrs) as writer:
            for episode, split in enumerate(splits):
                game.new_episode()
                frames, actions = [], []
                while not game.is_episode_finished() and len(frames) < length:
                    frames.append(resize_frame(game.get_state().screen_buffer, resolution))
                    action = policy()
                    actions.append(action)
                    game.make_action(button_vectors[action], frame_skip)
                one_hot = np.eye(len(action_names), dtype=np.float32)[actions]  # [L, A]
                writer.add_episode(split, np.stack(frames), one_hot)
                total += len(frames)
                if progress:
                    rate = total / (time.perf_counter() - started)
                    print(f"episode {episode + 1}/{episodes} ({split}): {len(frames)} frames, "
                          f"{rate:.0f} frames/s", file=sys.stderr)
    finally:
        game.close()
    seconds = time.perf_counter() - started
    return {"path": str(out), "frames": total, "episodes": {s: splits.count(s) for s in ("train", "val", "test")},
                "seconds": seconds, "frames_per_second": total / seconds, "action_names": action_names}
