"""A Moving MNIST judge: a small network that says which digits a frame shows and how a clip's digits move,
and the metrics built on it (digit persistence, a Fréchet distance on its clip features, its accuracy).

    video [B, 1, T, H, W] in [-0.5, 0.5]
      -> FrameEncoder, each frame alone (2D convs)           maps [B*T, 4w, H/8, W/8]
      -> DigitHead: max + mean over space, a temporal conv
         over the frame and its neighbours, linear           frame_logits  [B, T, 10]   (which digits)
      -> MotionEncoder: 3D convs over the maps (no pooling
         before them: positions kept), mean over space-time  clip_features [B, D]
           -> linear                                         clip_logits   [B, 10]
           -> MLP                                            velocity [B, 10, 2], motion [B, 3]

It trains with :func:`videogen_lite.train.fit` like the VQ-VAE and the prior (``videogen-lite train judge``)
on :class:`JudgeClips`, which adds the generator's ground truth to each Moving MNIST clip: the digits in it
(multi-hot; every digit is in every frame of its clip), each class's mean velocity and the clip's motion
statistics. Its frame logits look at one frame and its two neighbours (to see a digit hidden behind the
other), so :func:`digit_persistence` tells, frame by frame to within one frame, whether a generated video
still shows the digits it was conditioned on; the clip features mix appearance and motion, so
:func:`frechet_judge_distance` notices digits that change, vanish or stop.

The metrics take videos as float ``[N, 1, T, H, W]`` in [0, 1], the range ``VideoGPT.sample`` returns
(dataset clips are in [-0.5, 0.5]: add 0.5).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from .config import JudgeConfig, from_dict, to_dict, validate_judge
from .metrics import frechet_distance

DIGITS = 10  # classes 0-9
PRIOR_LOGIT = float(np.log(2 / 8))  # the digit heads start at Moving MNIST's prior: 2 of the 10 classes


def conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class FrameEncoder(nn.Module):
    """Each frame on its own: ``[N, 1, H, W] -> [N, 4*width, H/8, W/8]``. Three stride-2 convs and one more
    3x3 conv, each with BatchNorm and ReLU, so each output cell sees 31x31 pixels, a whole 28x28 digit."""

    def __init__(self, width: int):
        super().__init__()
        self.layers = nn.Sequential(*conv_bn_relu(1, width, 2), *conv_bn_relu(width, 2 * width, 2),
                                    *conv_bn_relu(2 * width, 4 * width, 2), *conv_bn_relu(4 * width, 4 * width, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.layers(frames.contiguous(memory_format=torch.channels_last))  # channels-last: faster on CPUs


class DigitHead(nn.Module):
    """Which digits each frame shows: maps ``[B, T, C, h, w] -> [B, T, 10]`` logits. The max and the mean of
    each channel over the frame, plus a temporal conv over the frame and its two neighbours (a residual that
    starts at zero: a digit hidden behind another in one frame is often clear in the next), then a linear
    layer."""

    def __init__(self, channels: int):
        super().__init__()
        self.temporal = nn.Conv1d(2 * channels, 2 * channels, 3, padding=1)
        nn.init.zeros_(self.temporal.weight)
        nn.init.zeros_(self.temporal.bias)
        self.out = nn.Linear(2 * channels, DIGITS)
        nn.init.constant_(self.out.bias, PRIOR_LOGIT)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([reduce(maps, "b t c h w -> b c t", "max"), reduce(maps, "b t c h w -> b c t", "mean")], 1)
        return self.out(rearrange(pooled + self.temporal(pooled), "b c t -> b t c"))


class MotionEncoder(nn.Module):
    """Frame feature maps over time -> one clip vector: ``[B, C, T, h, w] -> [B, feature_dim]``.

    A 1x1x1 conv narrows the channels, a strided 3x3x3 conv compares neighbouring frames at each place
    (this is where motion becomes visible; no pooling before it, so positions are still there), a temporal
    3x1x1 conv widens its view to five frames, and a mean over space-time gives the clip vector.
    """

    def __init__(self, in_channels: int, feature_dim: int):
        super().__init__()
        narrow = max(8, in_channels // 2)
        self.layers = nn.Sequential(
            nn.Conv3d(in_channels, narrow, 1), nn.BatchNorm3d(narrow), nn.ReLU(),
            nn.Conv3d(narrow, feature_dim // 2, 3, stride=(1, 2, 2), padding=1), nn.BatchNorm3d(feature_dim // 2),
            nn.ReLU(),
            nn.Conv3d(feature_dim // 2, feature_dim, (3, 1, 1), padding=(1, 0, 0)), nn.ReLU(),
        )

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return reduce(self.layers(maps), "b d t h w -> b d", "mean")


class Judge(nn.Module):
    """The Moving MNIST judge, built from ``cfg.judge`` (see :class:`videogen_lite.config.JudgeConfig`).

    ``forward(video)`` takes float ``[B, 1, T, H, W]`` in [-0.5, 0.5] (``H = W = cfg.resolution``, the digit
    scale it learned; any ``T``) and returns a dict:

    - ``frame_logits`` ``[B, T, 10]``: per frame, one logit per digit class (is it in this frame?), from
      the frame and its two neighbours
    - ``clip_logits`` ``[B, 10]``: the same for the whole clip, read from the clip features
    - ``clip_features`` ``[B, feature_dim]``: what :func:`judge_features` returns
    - ``velocity`` ``[B, 10, 2]``: per digit class, its mean velocity (dy, dx) in pixels per frame
    - ``motion`` ``[B, 3]``: the clip's digits' mean step sizes ``|dy|``, ``|dx|`` and length, in pixels
      per frame (whichever digit is which: learnt long before the velocity of each class)
    """

    def __init__(self, cfg: JudgeConfig):
        super().__init__()
        if cfg.resolution is None:
            raise ValueError("JudgeConfig needs the resolution; load_config() fills it from cfg.data, or set it "
                             "yourself")
        validate_judge(cfg)
        self.cfg = cfg
        self.frames = FrameEncoder(cfg.width)
        self.digit_head = DigitHead(4 * cfg.width)
        self.motion = MotionEncoder(4 * cfg.width, cfg.feature_dim)
        self.clip_digit_head = nn.Linear(cfg.feature_dim, DIGITS)
        nn.init.constant_(self.clip_digit_head.bias, PRIOR_LOGIT)
        self.motion_head = nn.Sequential(nn.Linear(cfg.feature_dim, cfg.feature_dim), nn.ReLU(),
                                         nn.Linear(cfg.feature_dim, DIGITS * 2 + 3))

    def config_dict(self) -> dict:
        return {"judge": to_dict(self.cfg)}

    @classmethod
    def from_config_dict(cls, values: dict) -> Judge:
        return cls(from_dict(values["judge"], JudgeConfig))

    def check_input(self, video: torch.Tensor) -> None:
        size = self.cfg.resolution
        if video.ndim != 5 or video.shape[1] != 1 or video.shape[-2:] != (size, size):
            raise ValueError(f"the judge takes Moving MNIST clips float [B, 1, T, {size}, {size}] (the resolution "
                             f"it was trained at), got {list(video.shape)}")

    def forward(self, video: torch.Tensor) -> dict:
        self.check_input(video)
        b = video.shape[0]
        maps = self.frames(rearrange(video, "b c t h w -> (b t) c h w"))  # [B*T, 4*width, H/8, W/8]
        frame_logits = self.digit_head(rearrange(maps, "(b t) c h w -> b t c h w", b=b))  # [B, T, 10]
        # the motion encoder reads the frame features but leaves their training to the digit losses: motion,
        # slow to learn, would only add noise to them early on
        features = self.motion(rearrange(maps.detach(), "(b t) c h w -> b c t h w", b=b))  # [B, D]
        motion = self.motion_head(features)  # [B, 10*2 + 3]
        velocity = rearrange(motion[:, : 2 * DIGITS], "b (k two) -> b k two", two=2)  # [B, 10, 2]
        return dict(frame_logits=frame_logits, clip_logits=self.clip_digit_head(features),
                    clip_features=features, velocity=velocity, motion=motion[:, 2 * DIGITS :])

    def forward_batch(self, batch: dict) -> dict:
        """The training loop's entry point: a :class:`JudgeClips` batch -> scalars: ``loss`` (digit_loss +
        clip_digit_loss + motion_weight * motion_loss), ``digit_loss`` (per-frame binary cross-entropy),
        ``clip_digit_loss``, ``velocity_loss`` (squared error of the present classes' velocities,
        px^2/frame^2), ``stats_loss`` (of the clip's motion statistics), ``motion_loss`` (their sum),
        ``motion_baseline`` (the same for a guess of no velocity and the batch's mean statistics: what knowing
        nothing of this clip's motion scores), ``accuracy`` (share of frames whose predicted digit set is
        right, see :func:`digits_found`)."""
        out = self(batch["video"])
        digits = batch["digits"].float()  # [B, 10]
        frame_targets = digits[:, None, :].expand_as(out["frame_logits"])
        digit_loss = F.binary_cross_entropy_with_logits(out["frame_logits"], frame_targets)
        clip_digit_loss = F.binary_cross_entropy_with_logits(out["clip_logits"], digits)
        present = batch["present"].float()[..., None]  # [B, 10, 1]
        count = 2 * present.sum().clamp(min=1)
        velocity_loss = (present * (out["velocity"] - batch["velocity"]) ** 2).sum() / count
        stats_loss = F.mse_loss(out["motion"], batch["motion"])
        motion_baseline = ((present * batch["velocity"] ** 2).sum() / count
                           + F.mse_loss(batch["motion"].mean(0, keepdim=True).expand_as(batch["motion"]),
                                        batch["motion"]))
        motion_loss = velocity_loss + stats_loss
        return dict(
            loss=digit_loss + clip_digit_loss + self.cfg.motion_weight * motion_loss,
            digit_loss=digit_loss, clip_digit_loss=clip_digit_loss, velocity_loss=velocity_loss,
            stats_loss=stats_loss, motion_loss=motion_loss, motion_baseline=motion_baseline,
            accuracy=digits_found(out["frame_logits"].detach(), digits).float().mean(),
        )


def digits_found(frame_logits: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
    """Whether each frame's predicted digit set is the true one: ``[B, T, 10]`` logits and multi-hot
    ``[B, 10]`` (``m`` classes set) -> bool ``[B, T]``, true where the ``m`` highest logits of the frame are
    exactly those classes. With two different digits, its top-2 classes are those two; with twice the
    same digit (or one digit), its top-1 class is that digit."""
    m = digits.sum(-1).long()  # [B]
    rank = frame_logits.argsort(-1, descending=True).argsort(-1)  # 0 = the highest logit of the frame
    predicted = rank < m[:, None, None]  # [B, T, 10]
    return (predicted == digits.bool()[:, None, :]).all(-1)


# ---------------------------------------------------------------------------------------------------
# training data


class JudgeClips(torch.utils.data.Dataset):
    """A generated :class:`videogen_lite.data.MovingMNIST` with the generator's ground truth. Item ``i`` of
    epoch ``e`` (``item(i, e)``; fresh training clips per epoch, as the training loop asks for them) is:

    - ``video``: float ``[1, T, H, W]`` in [-0.5, 0.5], the clip
    - ``digits``: float ``[10]``, multi-hot: the digit classes in the clip (in every frame of it)
    - ``velocity``: float ``[10, 2]``, per class present its mean velocity (dy, dx) over the clip in pixels
      per frame, ``(last corner - first corner) / (T - 1)``, averaged when the class is there twice; 0 else
    - ``motion``: float ``[3]``, the clip's motion statistics: the mean over its digits and frames of each
      step's ``|dy|``, ``|dx|`` and length (which a bounce does not cancel), in pixels per frame
    - ``present``: bool ``[10]``, the classes whose velocity is defined (the mask of the motion loss)
    """

    def __init__(self, moving_mnist):
        if not hasattr(moving_mnist, "trajectories"):
            raise ValueError(f"JudgeClips needs a generated MovingMNIST (it reads the generator's labels and "
                             f"trajectories), got {type(moving_mnist).__name__}; recorded clips such as "
                             "mnist_test_seq.npy carry no labels")
        self.clips = moving_mnist

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        return self.item(index, self.clips.epoch)

    def item(self, index: int, epoch: int) -> dict:
        frames, labels, corners = self.clips.trajectories(index, epoch)
        steps = np.diff(corners, axis=1).astype(np.float32)  # [num_digits, T-1, 2]
        if steps.shape[1] == 0:  # a single frame: no motion
            steps = np.zeros((len(labels), 1, 2), np.float32)
        velocity = np.zeros((DIGITS, 2), np.float32)
        count = np.zeros(DIGITS, np.float32)
        np.add.at(velocity, labels, steps.mean(1))
        np.add.at(count, labels, 1.0)
        present = count > 0
        velocity[present] /= count[present, None]
        motion = np.concatenate([np.abs(steps).mean((0, 1)), [np.linalg.norm(steps, axis=-1).mean()]])
        video = torch.from_numpy(frames).float().div_(255.0).sub_(0.5).unsqueeze(0)  # [1, T, H, W]
        return dict(video=video, digits=torch.from_numpy(present.astype(np.float32)),
                    velocity=torch.from_numpy(velocity), motion=torch.from_numpy(motion.astype(np.float32)),
                    present=torch.from_numpy(present))


# ---------------------------------------------------------------------------------------------------
# metrics


def check_videos(videos, name: str = "videos") -> torch.Tensor:
    """``videos`` as a float tensor ``[N, 1, T, H, W]`` in [0, 1], or a ValueError saying what is wrong."""
    videos = torch.as_tensor(videos)
    if videos.ndim != 5 or videos.shape[1] != 1:
        raise ValueError(f"{name} must be Moving MNIST videos float [N, 1, T, H, W], got shape {list(videos.shape)}")
    if not videos.is_floating_point():
        raise ValueError(f"{name} must be float in [0, 1], got {videos.dtype}")
    low, high = float(videos.min()), float(videos.max())
    if low < 0 or high > 1:
        raise ValueError(f"{name} must be in [0, 1] (what VideoGPT.sample returns; add 0.5 to dataset clips, which "
                         f"are in [-0.5, 0.5]), got values in [{low:.3f}, {high:.3f}]")
    return videos.float()


@torch.no_grad()
def judge_outputs(judge: Judge, videos, batch_size: int = 32) -> dict:
    """The judge's :meth:`Judge.forward` dict over ``videos`` float ``[N, 1, T, H, W]`` in [0, 1], in
    batches, in eval mode, on the judge's device; tensors on the CPU."""
    videos = check_videos(videos)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    device = next(judge.parameters()).device
    was_training = judge.training
    judge.eval()
    parts = [judge(chunk.to(device) - 0.5) for chunk in videos.split(batch_size)]
    judge.train(was_training)
    return {key: torch.cat([p[key].cpu() for p in parts]) for key in parts[0]}


def multi_hot(labels, n: int) -> torch.Tensor:
    """Digit labels ``[N]`` or ``[N, num_digits]`` (integers 0-9) -> float ``[N, 10]``, checked."""
    labels = torch.as_tensor(labels)
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or len(labels) != n or labels.shape[1] < 1:
        raise ValueError(f"labels must be the conditioning digits [N, num_digits] (or [N]) for the N = {n} videos, "
                         f"got shape {list(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        if not torch.equal(labels, labels.round()):
            raise ValueError("labels must be integer digit classes 0-9, got fractional values")
        labels = labels.long()
    if int(labels.min()) < 0 or int(labels.max()) >= DIGITS:
        raise ValueError(f"labels must be digit classes 0-9, got values in [{int(labels.min())}, {int(labels.max())}]")
    out = torch.zeros(n, DIGITS)
    out.scatter_(1, labels.long(), 1.0)
    return out


def digit_persistence(judge: Judge, videos, labels, batch_size: int = 32) -> np.ndarray:
    """Per frame index, the share of the videos in which the judge finds their digits: float ``[T]`` in [0, 1].

    ``videos``: float ``[N, 1, T, H, W]`` in [0, 1] (e.g. ``VideoGPT.sample``); ``labels``: the digits each
    video should show, integers ``[N, num_digits]`` (or ``[N]`` for one digit). A frame counts when the
    judge's top-``m`` classes are exactly its ``m`` distinct digits (two different digits: its top-2; the
    same digit twice or one digit: its top-1), see :func:`digits_found`. Real clips score about the judge's
    accuracy at every frame; a model that lets digits dissolve or turn into others falls off over time.
    """
    videos = check_videos(videos)
    digits = multi_hot(labels, len(videos))
    logits = judge_outputs(judge, videos, batch_size)["frame_logits"]  # [N, T, 10]
    return digits_found(logits, digits).float().mean(0).numpy()


def judge_features(judge: Judge, videos, batch_size: int = 32) -> np.ndarray:
    """The judge's clip features of ``videos`` float ``[N, 1, T, H, W]`` in [0, 1]: float64 ``[N, D]``."""
    return judge_outputs(judge, videos, batch_size)["clip_features"].double().numpy()


def frechet_judge_distance(judge: Judge, videos_a, videos_b, batch_size: int = 32) -> float:
    """Fréchet distance (:func:`videogen_lite.metrics.frechet_distance`) between the judge's clip features of
    two sets of videos, each float ``[N, 1, T, H, W]`` in [0, 1] of the same ``[1, T, H, W]``; 0 for one set
    against itself, larger as appearance or motion differ. Needs at least 2 videos per set; with fewer than
    the feature size (``judge.cfg.feature_dim``) the covariances are rank-deficient and the number is noisy:
    compare sets of equal size (256 is the usual) and report the real-vs-real value beside it."""
    a, b = check_videos(videos_a, "videos_a"), check_videos(videos_b, "videos_b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"videos_a and videos_b must share [1, T, H, W], got {list(a.shape[1:])} and "
                         f"{list(b.shape[1:])}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a Fréchet distance needs at least 2 videos in each set (256 is the usual), got "
                         f"{len(a)} and {len(b)}")
    return frechet_distance(judge_features(judge, a, batch_size), judge_features(judge, b, batch_size))


def real_clips(dataset, n_clips: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_clips`` clips of a MovingMNIST (or :class:`JudgeClips`) as float ``[n, 1, T, H, W]`` in
    [0, 1] and their digit labels ``[n, num_digits]``."""
    clips = getattr(dataset, "clips", dataset)
    if not hasattr(clips, "clip"):
        raise ValueError(f"expected a generated MovingMNIST (or JudgeClips) with digit labels, got "
                         f"{type(dataset).__name__}")
    if not 1 <= n_clips <= len(clips):
        raise ValueError(f"n_clips must be between 1 and the dataset's {len(clips)} clips, got {n_clips}")
    frames, labels = zip(*(clips.clip(i) for i in range(n_clips)))
    videos = torch.from_numpy(np.stack(frames)).float().div_(255.0).unsqueeze(1)  # [n, 1, T, H, W]
    return videos, torch.from_numpy(np.stack(labels))


def judge_accuracy(judge: Judge, dataset, n_clips: int = 256, batch_size: int = 32) -> float:
    """Held-out per-frame accuracy on real clips, in [0, 1]: over the first ``n_clips`` clips of ``dataset``
    (a MovingMNIST split the judge did not train on, e.g. ``MovingMNIST("test")``, whose digits it has never
    seen), the share of frames whose predicted digit set is the true one (the rule of
    :func:`digit_persistence`)."""
    videos, labels = real_clips(dataset, n_clips)
    return float(digit_persistence(judge, videos, labels, batch_size).mean())
