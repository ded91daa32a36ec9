"""The Moving MNIST judge (shapes, save/load, training through the CLI, its ground truth), the metrics built
on it (digit persistence, Fréchet judge distance, accuracy) on real clips, and ViZDoom action following."""
import json

import numpy as np
import pytest
import torch

import videogen_lite as vg
from videogen_lite.cli import main
from videogen_lite.judge import (
    Judge,
    JudgeClips,
    digit_persistence,
    digits_found,
    frechet_judge_distance,
    judge_accuracy,
    judge_features,
    real_clips,
)
from videogen_lite.metrics import action_following, horizontal_pan
from videogen_lite.train import fit

TINY = ["data.sequence_length=4", "data.resolution=32", "judge.width=4", "judge.feature_dim=16"]


@pytest.fixture(scope="module")
def tiny_judge():
    torch.manual_seed(0)
    return Judge(vg.load_config("moving_mnist_lite", TINY).judge).eval()


@pytest.fixture(scope="module")
def trained_judge(tmp_path_factory):
    """A judge trained for ~30 s at one thread on real Moving MNIST clips of one digit at 32x32 (two digits
    need minutes, see the shipped judge below): good enough to tell real clips from clips whose digit was
    erased. Returns the judge and its run folder."""
    cfg = vg.load_config("moving_mnist_lite", [
        "data.resolution=32", "data.num_digits=1", "judge.width=8", "judge.feature_dim=32",
        "judge.train.batch_size=32", "judge.train.steps=150", "judge.train.warmup_steps=10",
        "judge.train.log_every=10",
    ])
    run_dir = tmp_path_factory.mktemp("judge")
    torch.manual_seed(0)
    judge = Judge(cfg.judge)
    train_set = JudgeClips(vg.data.MovingMNIST("train", sequence_length=4, resolution=32, num_digits=1,
                                               length=4800))
    fit(judge, train_set, cfg.judge.train, run_dir, progress=False)
    return judge.eval(), run_dir


def one_digit_clips(split: str, n: int):
    return real_clips(vg.data.MovingMNIST(split, sequence_length=8, resolution=32, num_digits=1), n)


def test_judge_shapes_and_save_load_round_trip(tiny_judge, tmp_path):
    video = torch.rand(3, 1, 4, 32, 32) - 0.5
    out = tiny_judge(video)
    assert out["frame_logits"].shape == (3, 4, 10)
    assert out["clip_logits"].shape == (3, 10)
    assert out["clip_features"].shape == (3, 16)
    assert out["velocity"].shape == (3, 10, 2)
    assert tiny_judge(torch.rand(2, 1, 7, 32, 32))["frame_logits"].shape == (2, 7, 10)  # any length
    path = vg.save(tiny_judge, tmp_path / "judge.safetensors")
    again = vg.load(path)
    assert type(again).__name__ == "Judge" and again.cfg == tiny_judge.cfg
    for key, value in again(video).items():
        torch.testing.assert_close(value, out[key])


def test_judge_rejects_clips_of_another_shape(tiny_judge):
    with pytest.raises(ValueError, match=r"float \[B, 1, T, 32, 32\].*got \[2, 1, 4, 64, 64\]"):
        tiny_judge(torch.zeros(2, 1, 4, 64, 64))
    with pytest.raises(ValueError, match=r"got \[2, 3, 4, 32, 32\]"):
        tiny_judge(torch.zeros(2, 3, 4, 32, 32))


class FixedClips:
    """A stand-in for MovingMNIST with known trajectories: digits 3, 3 and 7 over 5 frames."""

    epoch = 0

    def __len__(self):
        return 1

    def trajectories(self, index, epoch=None):
        corners = np.zeros((3, 5, 2), np.int64)
        corners[0, :, 1] = np.arange(5) * 2  # a 3 moving right by 2 px per frame
        corners[1, :, 0] = np.arange(5) * 4  # another 3 moving down by 4
        corners[2, :, 0] = 8 - np.arange(5)  # a 7 moving up by 1
        return np.zeros((5, 32, 32), np.uint8), np.array([3, 3, 7]), corners


def test_judge_clips_carry_the_generators_digits_and_velocities():
    item = JudgeClips(FixedClips()).item(0, 0)
    assert item["video"].shape == (1, 5, 32, 32)
    assert item["digits"].tolist() == [0, 0, 0, 1, 0, 0, 0, 1, 0, 0]
    assert item["present"].tolist() == [False] * 3 + [True] + [False] * 3 + [True] + [False] * 2
    assert item["velocity"][3].tolist() == [2.0, 1.0]  # the two 3s averaged: (4 + 0) / 2 down, (0 + 2) / 2 right
    assert item["velocity"][7].tolist() == [-1.0, 0.0]
    assert item["velocity"][0].tolist() == [0.0, 0.0]
    # motion statistics over the three digits' steps (0, 2), (4, 0), (-1, 0): mean |dy|, |dx|, length
    torch.testing.assert_close(item["motion"], torch.tensor([5 / 3, 2 / 3, 7 / 3]))
    real = JudgeClips(vg.data.MovingMNIST("train", sequence_length=6, length=4))
    frames, labels, corners = real.clips.trajectories(2, 3)
    item = real.item(2, 3)
    torch.testing.assert_close(item["video"][0], torch.from_numpy(frames).float() / 255 - 0.5)
    assert set(np.flatnonzero(item["digits"].numpy())) == set(labels.tolist())
    assert not torch.equal(real.item(2, 4)["video"], item["video"])  # fresh clips each epoch
    with pytest.raises(ValueError, match="needs a generated MovingMNIST"):
        JudgeClips([1, 2, 3])


def test_digit_set_rule_on_hand_made_logits():
    logits = torch.tensor([[[5.0, 4, 0, 0, 0, 0, 0, 0, 0, 0],     # top-2: {0, 1}
                            [5.0, 0, 4, 0, 0, 0, 0, 0, 0, 0],     # top-2: {0, 2}
                            [0.0, 0, 0, 0, 0, 0, 0, 0, 0, 9]]])   # top-1: 9
    two = torch.zeros(1, 10)
    two[0, [0, 1]] = 1
    assert digits_found(logits, two).tolist() == [[True, False, False]]
    one = torch.zeros(1, 10)
    one[0, 9] = 1  # one digit, or the same digit twice
    assert digits_found(logits, one).tolist() == [[False, False, True]]


def test_train_judge_through_the_cli_writes_a_loadable_run(tmp_path):
    run_dir = tmp_path / "judge"
    args = ["train", "judge", "--config", "moving_mnist_lite", "--out", str(run_dir), "--quiet", "--threads", "1",
            *TINY, "judge.train.steps=2", "judge.train.batch_size=4", "judge.train.eval_batches=1",
            "judge.train.log_every=1"]
    assert main(args) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 2 and 0 <= metrics["held_out"]["accuracy"] <= 1
    assert 0 <= metrics["test_accuracy"] <= 1
    assert json.loads((run_dir / "config.json").read_text())["stage"] == "judge"
    assert type(vg.load(run_dir)).__name__ == "Judge"
    assert main([*args, "judge.train.steps=3", "--resume"]) == 0  # continues the same loop (later overrides win)
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert {"digit_loss", "motion_loss", "accuracy"} <= set(lines[-1])


def test_trained_judge_finds_real_digits_and_misses_erased_ones(trained_judge):
    judge, _ = trained_judge
    videos, labels = one_digit_clips("val", 64)
    assert labels.shape == (64, 1)
    real = digit_persistence(judge, videos, labels)
    assert real.shape == (8,) and real.min() > 0.85, real
    erased = videos.clone()
    erased[:, :, 4:] = 0  # the digit vanishes after frame 3
    persistence = digit_persistence(judge, erased, labels)
    np.testing.assert_allclose(persistence[:3], real[:3])  # frame t is judged from frames t-1, t, t+1 only
    assert persistence[4:].max() < 0.3 and persistence[5:].max() < 0.2, persistence
    swapped = digit_persistence(judge, videos, labels.roll(1, 0))  # each video judged against another's digit
    assert swapped.mean() < 0.3
    accuracy = judge_accuracy(judge, vg.data.MovingMNIST("val", 8, 32, num_digits=1), 64)
    assert accuracy == pytest.approx(float(real.mean()))


def test_trained_judge_learns_motion_statistics(trained_judge):
    _, run_dir = trained_judge
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["motion_loss"] < 0.5 * lines[0]["motion_loss"]  # it falls
    assert {"velocity_loss", "stats_loss", "motion_baseline"} <= set(lines[-1])


def test_frechet_judge_distance_separates_real_from_broken(trained_judge):
    judge, _ = trained_judge
    videos, _ = one_digit_clips("val", 64)
    other, _ = one_digit_clips("test", 64)
    assert judge_features(judge, videos).shape == (64, 32)
    assert frechet_judge_distance(judge, videos, videos) == pytest.approx(0.0, abs=1e-6)
    erased = videos.clone()
    erased[:, :, 4:] = 0
    real_vs_real = frechet_judge_distance(judge, videos, other)
    assert frechet_judge_distance(judge, videos, erased) > 3 * real_vs_real


def shipped_judge():
    try:
        return vg.pretrained("mnist_judge_lite")
    except (ValueError, FileNotFoundError):
        pytest.skip("no mnist_judge_lite in checkpoints/ (train it with videogen-lite train judge)")


def test_shipped_judge_on_real_two_digit_clips():
    judge = shipped_judge()
    videos, labels = real_clips(vg.data.MovingMNIST("test"), 32)
    real = digit_persistence(judge, videos, labels)
    assert real.mean() > 0.8, real
    erased = videos.clone()
    erased[:, :, 8:] = 0
    persistence = digit_persistence(judge, erased, labels)
    np.testing.assert_allclose(persistence[:7], real[:7])
    assert persistence[9:].max() < 0.2, persistence
    assert digit_persistence(judge, videos, labels.roll(1, 0)).mean() < 0.2


def test_judge_metrics_reject_bad_inputs(tiny_judge):
    videos = torch.rand(4, 1, 4, 32, 32)
    labels = torch.tensor([[1, 2], [3, 3], [0, 9], [5, 6]])
    with pytest.raises(ValueError, match=r"videos must be in \[0, 1\].*add 0.5.*got values in \[-0.5"):
        digit_persistence(tiny_judge, videos - 0.5, labels)
    with pytest.raises(ValueError, match=r"float \[N, 1, T, H, W\], got shape \[4, 4, 32, 32\]"):
        digit_persistence(tiny_judge, videos[:, 0], labels)
    with pytest.raises(ValueError, match=r"labels must be .*\[N, num_digits\].*N = 4.*got shape \[3, 2\]"):
        digit_persistence(tiny_judge, videos, labels[:3])
    with pytest.raises(ValueError, match=r"digit classes 0-9, got values in \[0, 10\]"):
        digit_persistence(tiny_judge, videos, labels.clamp(max=10) + (labels == 9).long())
    with pytest.raises(ValueError, match="at least 2 videos in each set.*got 4 and 1"):
        frechet_judge_distance(tiny_judge, videos, videos[:1])
    with pytest.raises(ValueError, match=r"share \[1, T, H, W\]"):
        frechet_judge_distance(tiny_judge, videos, videos[:, :, :3])
    with pytest.raises(ValueError, match="n_clips must be between 1 and"):
        judge_accuracy(tiny_judge, vg.data.MovingMNIST("test", 4, 32, length=8), 9)


def rolling_texture(pans: list[float], channels: int = 3, size: int = 48, seed: int = 0) -> torch.Tensor:
    """A random texture rolled sideways by ``pans[t]`` pixels between frames t and t+1: [C, T, H, W] in [0, 1]."""
    texture = np.random.default_rng(seed).random((channels, size, size))
    offsets = np.concatenate([[0], np.cumsum(pans)]).astype(int)
    return torch.from_numpy(np.stack([np.roll(texture, k, axis=-1) for k in offsets], 1)).float()


def test_horizontal_pan_measures_known_shifts():
    np.testing.assert_allclose(horizontal_pan(rolling_texture([2, 2, -3, 0, 5])), [2, 2, -3, 0, 5], atol=0.05)
    assert horizontal_pan(torch.full((1, 3, 16, 16), 0.5)).tolist() == [0.0, 0.0]  # no texture, no pan


def test_horizontal_pan_searches_only_plausible_shifts():
    # a jump of 20 px in a 48 px frame is past the default window (a quarter of the width, 12 px): it is not
    # reported as a 20 px pan (on real ViZDoom frames such far peaks were false ones, e.g. -22 px for a left turn)
    jump = rolling_texture([20])
    assert abs(horizontal_pan(jump)[0]) <= 13
    assert horizontal_pan(jump, max_shift=22)[0] == pytest.approx(20, abs=0.05)  # a wider window finds it
    with pytest.raises(ValueError, match="max_shift must be between 1 and 23 pixels for frames 48 wide"):
        horizontal_pan(jump, max_shift=24)


def test_action_following_recovers_the_pan_of_each_action():
    rng = np.random.default_rng(1)
    videos, actions = [], []
    for n in range(3):
        taken = rng.integers(0, 3, size=8)  # 0: NOOP, 1: pans right by 2, 2: pans left by 2
        videos.append(rolling_texture([{0: 0, 1: 2, 2: -2}[a] for a in taken[:-1]], seed=n))
        actions.append(np.eye(3, dtype=np.float32)[taken])
    videos, actions = torch.stack(videos), torch.from_numpy(np.stack(actions))
    out = action_following(videos, actions)
    assert out["mean_pan"][1] == pytest.approx(2, abs=0.1) and out["mean_pan"][2] == pytest.approx(-2, abs=0.1)
    assert out["mean_pan"][0] == pytest.approx(0, abs=0.1)
    assert sum(out["count"].values()) == 3 * 7
    named = action_following(videos, actions, ["NOOP", "TURN_LEFT", "TURN_RIGHT"])
    assert named["mean_pan"]["TURN_LEFT"] == out["mean_pan"][1] and named["count"]["NOOP"] == out["count"][0]
    only_left = actions.clone()
    only_left[:] = torch.tensor([0.0, 1.0, 0.0])
    assert action_following(videos, only_left)["mean_pan"][0] is None  # an action never taken


def test_action_following_rejects_bad_inputs():
    videos = torch.rand(2, 3, 5, 16, 16)
    actions = torch.eye(4)[torch.zeros(2, 5, dtype=torch.long)]
    with pytest.raises(ValueError, match=r"actions must be \[N, T, A\] = \[2, 5, A\].*got shape \[2, 4, 4\]"):
        action_following(videos, actions[:, :4])
    with pytest.raises(ValueError, match=r"videos must be float \[N, C, T, H, W\] with T >= 2"):
        action_following(videos[0], actions)
    with pytest.raises(ValueError, match="one-hot"):
        action_following(videos, actions * 0.5)
    with pytest.raises(ValueError, match="must name the 4 actions, got 2"):
        action_following(videos, actions, ["NOOP", "TURN_LEFT"])
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        action_following(videos * 2, actions)
    with pytest.raises(ValueError, match=r"\[C, T, H, W\] with T >= 2"):
        horizontal_pan(videos[0, :, :1])


def test_judge_config_is_validated_like_the_other_sections():
    with pytest.raises(ValueError, match=r"judge\.widht'.*did you mean 'judge\.width'"):
        vg.load_config("moving_mnist_lite", ["judge.widht=8"])
    with pytest.raises(ValueError, match=r"judge\.clip_length.*2 or more"):
        vg.load_config("moving_mnist_lite", ["judge.clip_length=1"])
    with pytest.raises(ValueError, match=r"judge\.resolution = 32 disagrees with data\.resolution = 64"):
        vg.load_config("moving_mnist_lite", ["judge.resolution=32"])
    cfg = vg.load_config("moving_mnist_lite", ["judge.train.steps=5"])
    assert cfg.judge.train.steps == 5 and cfg.judge.train.lr == 4e-3  # the judge's own defaults stay
    assert cfg.judge.resolution == 64
