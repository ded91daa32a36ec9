"""3D convolutions with 'SAME' padding, and the down- and up-sampling stacks of the VQ-VAE.

Tensors are videos laid out ``[B, C, T, H, W]``. A 'SAME' convolution with stride ``s`` maps an axis of
size ``n`` to ``ceil(n / s)`` whatever the kernel size, odd or even: it pads ``max((out - 1) * s + k - n, 0)``
in total, ``total // 2`` before and the rest after, so an odd extra pixel goes *after*. That is
TensorFlow's ``padding='SAME'`` and PyTorch's ``padding='same'`` (stride 1 only). The official VideoGPT
code (``SamePadConv3d`` in ``videogpt/vqvae.py``) pads ``k - s`` in total and puts the odd pixel *before*
(``(k - s) // 2 + (k - s) % 2`` before, ``(k - s) // 2`` after); the two agree when ``k - s`` is even
(kernel 4 at stride 2) and differ by one pixel of shift otherwise (kernel 3 at stride 2). This package
keeps the TensorFlow / PyTorch split on purpose: a layer means what a 'same' convolution means in either
framework, and the transpose below, which maps ``n`` to ``n * s``, is exactly the adjoint of this
convolution: a full transposed convolution whose surplus ``k - s`` border is cropped, ``(k - s) // 2``
before (chapter 2 of the book derives and checks both).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CPU_CHANNELS_LAST = True
"""On CPUs, :class:`Downsample` runs its convolutions channels-last (see :meth:`Downsample.forward`);
``False`` gives back the channels-first layout of earlier versions (same sums, other kernels' rounding)."""

CPU_PHASE_MAX_CHANNELS = 8
"""On CPUs, a :class:`SamePadConvTranspose3d` with kernel 4 and stride 2 on every axis and at most this many
output channels (a decoder's last layer: 1 or 3) runs as one stride-1 convolution over its eight output
phases (:meth:`SamePadConvTranspose3d.by_phases`); 0 keeps oneDNN's transposed convolution everywhere (same
sums, other kernels' rounding)."""


def _triple(value) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"expected an int or three ints (t, h, w), got {value}")
    return value


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding that makes a strided convolution output ``ceil(size / stride)``."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SamePadConv3d(nn.Module):
    """``Conv3d`` with 'SAME' padding: ``[B, Cin, T, H, W] -> [B, Cout, ceil(T/st), ceil(H/sh), ceil(W/sw)]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, bias: bool = True):
        super().__init__()
        self.kernel_size, self.stride = _triple(kernel_size), _triple(stride)
        # unstrided odd kernels pad (k - 1) / 2 on both sides: the convolution can do that itself, no copy
        self.symmetric = all(s == 1 and k % 2 == 1 for k, s in zip(self.kernel_size, self.stride))
        padding = tuple(k // 2 for k in self.kernel_size) if self.symmetric else 0
        self.conv = nn.Conv3d(in_channels, out_channels, self.kernel_size, self.stride, padding=padding, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.symmetric:
            return self.conv(x)
        pads = [same_padding(n, k, s) for n, k, s in zip(x.shape[2:], self.kernel_size, self.stride)]
        # F.pad takes the last axis first: (w_before, w_after, h_before, h_after, t_before, t_after)
        x = F.pad(x, [p for pair in reversed(pads) for p in pair])
        return self.conv(x)


class SamePadConvTranspose3d(nn.Module):
    """Transposed 'SAME' convolution: ``[B, Cin, T, H, W] -> [B, Cout, T*st, H*sh, W*sw]``.

    The adjoint of :class:`SamePadConv3d` with the same kernel and stride on inputs divisible by the stride.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=4, stride=2, bias: bool = True):
        super().__init__()
        self.kernel_size, self.stride = _triple(kernel_size), _triple(stride)
        for k, s in zip(self.kernel_size, self.stride):
            if k < s:
                raise ValueError(f"kernel size {k} smaller than stride {s} leaves holes in a transposed conv")
        # an even surplus k - s is cropped symmetrically, (k - s) / 2 each side: the transposed convolution's own
        # `padding` does exactly that without computing the border (about 10% faster at kernel 4, stride 2); an
        # odd surplus is cropped after the full convolution, (k - s) // 2 before and the rest after
        self.padding = tuple((k - s) // 2 if (k - s) % 2 == 0 else 0 for k, s in zip(self.kernel_size, self.stride))
        self.convt = nn.ConvTranspose3d(in_channels, out_channels, self.kernel_size, self.stride, padding=self.padding,
                                        bias=bias)

    def by_phases_pays(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward` takes :meth:`by_phases` for ``x``: a batched CPU tensor, kernel 4 and stride 2
        on every axis, at most :data:`CPU_PHASE_MAX_CHANNELS` output channels."""
        return (x.device.type == "cpu" and x.dim() == 5 and self.convt.out_channels <= CPU_PHASE_MAX_CHANNELS
                and self.kernel_size == (4, 4, 4) and self.stride == (2, 2, 2))

    def by_phases(self, x: torch.Tensor) -> torch.Tensor:
        """The same map as :meth:`forward` for kernel 4, stride 2 on every axis, as one stride-1 convolution.

        Output ``2m + a`` along an axis (``a`` = 0 or 1, the phase) sums input ``m - 1`` times tap 3 and
        input ``m`` times tap 1 (``a = 0``), or input ``m`` times tap 2 and input ``m + 1`` times tap 0
        (``a = 1``): two taps per axis, eight phases in 3D. One convolution with a 2x2x2 kernel over the input
        padded by one on every side computes all eight phases as ``8 * Cout`` channels, phase ``(a, b, c)`` at
        offset ``(a, b, c)``; they are then interleaved. oneDNN's transposed convolution runs at a quarter of
        the machine's matmul rate when it has few output channels (a decoder's last layer, 1 or 3), this
        convolution near it: measured on 2 cores of an AMD Zen 4, 240 -> 3 channels on 32 clips (inputs
        8x32x32) 752-819 -> 198-255 ms, 240 -> 1 on 4 clips 76 -> 12 ms, and with the backward pass (training)
        98 -> 46 ms; at 16 output channels and more it is slower than the transposed convolution.
        """
        w = self.convt.weight  # [Cin, Cout, 4, 4, 4]
        cout = w.shape[1]
        taps = ([3, 1], [2, 0])  # per phase: the taps that reach input offsets (-1, 0) and (0, +1)
        weight = torch.cat([w[:, :, taps[a]][:, :, :, taps[b]][:, :, :, :, taps[c]]
                            for a in (0, 1) for b in (0, 1) for c in (0, 1)], dim=1).transpose(0, 1)
        bias = None if self.convt.bias is None else self.convt.bias.repeat(8)
        if x.is_contiguous(memory_format=torch.channels_last_3d):
            weight = weight.contiguous(memory_format=torch.channels_last_3d)
        y = F.conv3d(x, weight, bias, padding=1).unflatten(1, (2, 2, 2, cout))  # [B, a, b, c, Cout, t+1, h+1, w+1]
        b, _, t, h, w_ = x.shape
        out = y.new_empty(b, cout, t, 2, h, 2, w_, 2)
        for a in (0, 1):
            for b_ in (0, 1):
                for c in (0, 1):
                    out[:, :, :, a, :, b_, :, c] = y[:, a, b_, c, :, a : a + t, b_ : b_ + h, c : c + w_]
        return out.view(b, cout, 2 * t, 2 * h, 2 * w_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.by_phases_pays(x):
            return self.by_phases(x)
        y = self.convt(x)  # [B, Cout, (T-1)*st + kt - 2 pt, ...]
        crops = [((k - s) // 2 - p, n * s) for n, k, s, p in zip(x.shape[2:], self.kernel_size, self.stride, self.padding)]
        if all(start == 0 and y.shape[2 + i] == size for i, (start, size) in enumerate(crops)):
            return y
        (t0, tn), (h0, hn), (w0, wn) = crops
        return y[:, :, t0 : t0 + tn, h0 : h0 + hn, w0 : w0 + wn]


def stride_schedule(downsample) -> list[tuple[int, int, int]]:
    """Per-layer strides that reduce each axis by its factor: (4, 4, 4) -> [(2,2,2), (2,2,2)];
    (2, 4, 4) -> [(2,2,2), (1,2,2)]. Every factor must be a power of two."""
    steps = []
    for factor in _triple(downsample):
        if factor < 1 or factor & (factor - 1):
            raise ValueError(f"downsampling factors must be powers of two, got {tuple(downsample)}")
        steps.append(int(math.log2(factor)))
    return [tuple(2 if i < n else 1 for n in steps) for i in range(max(steps))]


class _Stack(nn.Sequential):
    """``nn.Sequential`` whose slices work although the subclass's ``__init__`` takes other arguments:
    ``stack[1:]`` is a plain ``nn.Sequential`` of those layers (the same modules, not copies)."""

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return nn.Sequential(*list(self)[idx])
        return super().__getitem__(idx)


class Downsample(_Stack):
    """Strided 'SAME' convs, ReLU after each, then one unstrided conv:
    ``[B, Cin, T, H, W] -> [B, hidden, T/dt, H/dh, W/dw]``. The paper's encoder filter size is 3."""

    def __init__(self, in_channels: int, hidden: int, downsample, kernel_size: int = 3):
        layers = []
        for i, stride in enumerate(stride_schedule(downsample)):
            # in place: a convolution's output feeds only its ReLU, and the backward pass needs neither (the
            # ReLU's own backward reads its output); saves a tensor of the stack's largest size (exact)
            layers += [SamePadConv3d(in_channels if i == 0 else hidden, hidden, kernel_size, stride), nn.ReLU(inplace=True)]
        first = in_channels if not layers else hidden
        layers.append(SamePadConv3d(first, hidden, kernel_size))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or not CPU_CHANNELS_LAST:
            return super().forward(x)
        # oneDNN runs 3D convolutions channels-last natively and reorders channels-first tensors (inputs, and
        # in the backward pass their gradients) on every call. A one-channel video is laid out the same either
        # way, so its first convolution may answer channels-first: every convolution's input is put
        # channels-last (a no-op once it is). The residual stack after this runs channels-last already (its
        # LayerNorms hand their output back in that layout). Measured on 2 cores of an Intel Xeon (steps of
        # the two layouts interleaved): a training step of the 64-wide Moving MNIST lite VQ-VAE 1.09-1.12x as
        # fast, the 128-wide one 1.08x, the 240-wide ones 1.01-1.05x (`benchmarks/vqvae_step.py --layouts`).
        for layer in self:
            if isinstance(layer, SamePadConv3d):
                x = x.contiguous(memory_format=torch.channels_last_3d)
            x = layer(x)
        return x


class Upsample(_Stack):
    """Transposed 'SAME' convs with ReLU between them: ``[B, hidden, t, h, w] -> [B, out, t*dt, h*dh, w*dw]``.
    The paper's upsampling filter size is 4."""

    def __init__(self, hidden: int, out_channels: int, downsample, kernel_size: int = 4):
        strides = stride_schedule(downsample)
        layers = []
        for i, stride in enumerate(strides):
            last = i == len(strides) - 1
            layers.append(SamePadConvTranspose3d(hidden, out_channels if last else hidden, kernel_size, stride))
            if not last:
                layers.append(nn.ReLU(inplace=True))  # on the transposed conv's own output, as in Downsample
        if not strides:
            layers.append(SamePadConv3d(hidden, out_channels, 3))
        super().__init__(*layers)
        self.transposed = bool(strides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or torch.is_grad_enabled() or not self.transposed:
            return super().forward(x)
        # decoding without gradients on a CPU: oneDNN's transposed convolutions run channels-last natively and
        # otherwise reorder every input and output (same sums, about 20% faster for a batch of clips at 240
        # channels, measured); the result is handed back in the usual layout
        return super().forward(x.contiguous(memory_format=torch.channels_last_3d)).contiguous()
