"""Attention over videos: multi-head attention, axial attention, and position embeddings.

Feature maps here are channels-last, ``[B, T, H, W, D]``. Axial attention (Ho et al., 2019) attends along
one axis at a time: for the W axis every row ``(b, t, h)`` is its own sequence of length W. Three such
layers, one per axis, are summed, so each position sees its whole row, column and time line at a cost of
``T + H + W`` instead of ``T * H * W`` per query.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class MultiHeadAttention(nn.Module):
    """Self-attention over the second-to-last axis: ``[N, L, D] -> [N, L, D]``, on ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "n l (three h d) -> three n h l d", three=3, h=self.heads)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)  # [N, heads, L, d]
        return self.proj(rearrange(out, "n h l d -> n l (h d)"))


AXIS_PATTERNS = {
    "t": ("b t h w d -> (b h w) t d", "(b h w) t d -> b t h w d"),
    "h": ("b t h w d -> (b t w) h d", "(b t w) h d -> b t h w d"),
    "w": ("b t h w d -> (b t h) w d", "(b t h) w d -> b t h w d"),
}


class AxialAttention(nn.Module):
    """The sum of multi-head attention along T, along H and along W: ``[B, T, H, W, D] -> [B, T, H, W, D]``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.ModuleDict({axis: MultiHeadAttention(dim, heads) for axis in AXIS_PATTERNS})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h, w, _ = x.shape
        out = 0
        for axis, (flatten, unflatten) in AXIS_PATTERNS.items():
            rows = rearrange(x, flatten)  # e.g. axis w: [B*T*H, W, D]
            out = out + rearrange(self.attn[axis](rows), unflatten, b=b, t=t, h=h, w=w)
        return out


class SpatioTemporalEmbedding(nn.Module):
    """Learned position embeddings, one table per axis, broadcast and summed: ``-> [T, H, W, D]``.

    ``axes`` picks which tables exist: ``"thw"`` (spatio-temporal, the paper's), ``"hw"`` (spatial only),
    ``"t"`` (temporal only). Parameters: ``(T + H + W) * D`` instead of ``T * H * W * D``.
    """

    def __init__(self, shape: tuple[int, int, int], dim: int, axes: str = "thw"):
        super().__init__()
        self.shape, self.dim, self.axes = tuple(shape), dim, axes
        self.tables = nn.ParameterDict(
            {a: nn.Parameter(torch.randn(n, dim) * 0.02) for a, n in zip("thw", self.shape) if a in axes}
        )

    def forward(self) -> torch.Tensor:
        t, h, w = self.shape
        table = next(iter(self.tables.values()))
        out = torch.zeros(t, h, w, self.dim, device=table.device, dtype=table.dtype)
        if "t" in self.tables:
            out = out + self.tables["t"][:, None, None, :]
        if "h" in self.tables:
            out = out + self.tables["h"][None, :, None, :]
        if "w" in self.tables:
            out = out + self.tables["w"][None, None, :, :]
        return out  # [T, H, W, D]


def sincos_embedding(shape: tuple[int, int, int], dim: int) -> torch.Tensor:
    """Fixed sine-cosine position codes for the flattened ``t*h*w`` order (Vaswani et al.): ``-> [T, H, W, D]``."""
    positions = torch.arange(math.prod(shape), dtype=torch.float32)[:, None]
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    table = torch.zeros(math.prod(shape), dim)
    table[:, 0::2] = torch.sin(positions * freqs)
    table[:, 1::2] = torch.cos(positions * freqs[: dim // 2])
    return table.reshape(*shape, dim)


class PositionEmbedding(nn.Module):
    """The position encodings of the paper's Table 4, by name: ``-> [T, H, W, D]`` (zeros for ``none``).

    ``spatiotemporal`` (learned T, H and W tables, summed), ``spatial`` (H and W), ``temporal`` (T),
    ``sincos`` (fixed sine-cosine over the flattened positions), ``none``.
    """

    KINDS = {"spatiotemporal": "thw", "spatial": "hw", "temporal": "t"}

    def __init__(self, kind: str, shape: tuple[int, int, int], dim: int):
        super().__init__()
        self.kind, self.shape, self.dim = kind, tuple(shape), dim
        if kind in self.KINDS:
            self.learned = SpatioTemporalEmbedding(shape, dim, self.KINDS[kind])
        elif kind == "sincos":
            self.register_buffer("fixed", sincos_embedding(shape, dim), persistent=False)
        elif kind == "none":
            self.register_buffer("fixed", torch.zeros(*shape, dim), persistent=False)
        else:
            raise ValueError(
                f"position embedding {kind!r} is not known: expected one of "
                "spatiotemporal, spatial, temporal, sincos, none"
            )

    def forward(self) -> torch.Tensor:
        return self.learned() if self.kind in self.KINDS else self.fixed
