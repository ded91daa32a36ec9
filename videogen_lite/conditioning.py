"""Conditioning the prior (Section 3.2 of the paper): frames through a ResNet, actions through LayerNorm.

- **Concatenation** (frames). :class:`FrameEncoder`, a ResNet-18 or -34, turns the conditioning frame(s)
  into a feature map on the latent grid: ``[B, C, F, H, W] -> [B, h*w, resnet_units]``, one
  ``resnet_units``-dim vector per latent ``(h, w)`` position (the paper's "512-dim vector", kept per
  location). The prior concatenates it to the input of every feed-forward block, ``[x, frame]``, at each
  position ``(t, h, w)`` (the same vector for every ``t``).
- **Conditional norms** (actions). :class:`ConditionalLayerNorm` is a LayerNorm whose gain and bias are
  affine functions of the flattened actions, as conditional batch norm is in GANs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

RESNET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}  # BasicBlocks per stage (He et al., 2016)
STAGE_STRIDES = (1, 2, 2, 1)  # 64x64 frames -> a 16x16 map, the paper's latent grid


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups: statistics per example, never per batch."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


class BasicBlock(nn.Module):
    """ResNet basic block: ``relu(x + GN(conv3x3(relu(GN(conv3x3(x))))))``, ``[B, c_in, H, W] -> [B, c_out, H/s, W/s]``.

    When the shape changes, the shortcut is a strided 1x1 conv and GroupNorm.
    """

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = group_norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = group_norm(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), group_norm(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(self.shortcut(x) + h)


class FrameEncoder(nn.Module):
    """A ResNet-18/34 over the conditioning frames: ``[B, C, F, H, W] -> [B, h*w, units]``.

    The ``F`` frames (in [-0.5, 0.5]) are stacked into channels (``C*F`` input channels). A 3x3 stem and
    four stages of BasicBlocks (``[2, 2, 2, 2]`` for depth 18, ``[3, 4, 6, 3]`` for 34) of widths
    ``units/8, units/4, units/2, units`` (64, 128, 256, 512 for the paper's 512 units) with strides
    1, 2, 2, 1 reduce the frame 4x; the map is then average-pooled (or stretched) to the latent grid
    ``(h, w)`` and flattened in ``(h, w)`` order.

    Normalisation is GroupNorm, not BatchNorm: an example's features never depend on the other examples
    of its batch, so a data-parallel run computes the same thing whatever the per-process batch is, and
    sampling one video gives what it would in a batch.
    """

    def __init__(self, channels: int, n_frames: int, depth: int, units: int, grid: tuple[int, int]):
        super().__init__()
        if depth not in RESNET_BLOCKS:
            raise ValueError(f"ResNet depth {depth} is not supported: expected 18 or 34")
        self.grid = tuple(grid)
        widths = [max(8, units // 8), max(8, units // 4), max(8, units // 2), units]
        self.stem = nn.Sequential(nn.Conv2d(channels * n_frames, widths[0], 3, padding=1, bias=False),
                                  group_norm(widths[0]), nn.ReLU())
        layers, c_in = [], widths[0]
        for width, stride, n_blocks in zip(widths, STAGE_STRIDES, RESNET_BLOCKS[depth]):
            for i in range(n_blocks):
                layers.append(BasicBlock(c_in, width, stride if i == 0 else 1))
                c_in = width
        self.stages = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = rearrange(frames, "b c f h w -> b (c f) h w")  # frames stacked into channels
        x = self.stages(self.stem(x))  # [B, units, H/4, W/4]
        x = F.adaptive_avg_pool2d(x, self.grid)  # [B, units, h, w]
        return rearrange(x, "b u h w -> b (h w) u")


class ConditionalLayerNorm(nn.Module):
    """LayerNorm whose gain and bias are predicted from a condition vector.

    ``x [B, ..., dim]``, ``cond [B, cond_dim]`` (the flattened actions) ->
    ``LN(x) * (1 + gain(cond)) + bias(cond)``, where ``LN`` has no affine parameters of its own and
    ``gain``, ``bias`` are linear maps initialised to zero: at initialisation this is a plain LayerNorm.
    """

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.dim = dim
        self.gain = nn.Linear(cond_dim, dim)
        self.bias = nn.Linear(cond_dim, dim)
        for linear in (self.gain, self.bias):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shape = (cond.shape[0],) + (1,) * (x.dim() - 2) + (self.dim,)  # [B, 1, ..., dim], broadcast over positions
        gain = 1 + self.gain(cond).view(shape)
        bias = self.bias(cond).view(shape)
        return F.layer_norm(x, (self.dim,)) * gain + bias
