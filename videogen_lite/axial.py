"""The Axial Transformer prior (Ho et al., 2019; the paper's Table 2, "Axial (C)"), on the latent grid.

The ``t x h x w`` codes, read in raster order, are an image of ``R = t*h`` rows (every row of every
latent frame, frame after frame) and ``w`` columns; the Axial Transformer models such an image with
attention along one axis at a time. :class:`VideoGPT` hands it the same inputs as its GPT blocks: position
``p`` holds the start token (``p = 0``) or the embedding of code ``p - 1``, plus the position embedding,
so the inputs of row ``r`` carry the codes up to position ``r*w + w - 2``.

- **Outer decoder** (the context of earlier rows and frames): blocks of *unmasked* row attention (all
  ``w`` columns of a row) and *masked* column attention (rows ``r' <= r`` of one column), so its output at
  row ``r`` depends on the inputs of rows ``<= r``. Shifted down by one row, row ``r`` receives a summary
  of rows ``< r`` only, i.e. of the codes before position ``r*w - 1``.
- **Inner decoder** (within a row): the context plus the row's own inputs, through blocks of *masked* row
  attention, so position ``(r, c)`` also sees the inputs ``(r, 0..c)``: the codes from ``r*w - 1`` to
  ``r*w + c - 1``.

Together position ``p`` sees exactly the codes before it, as the GPT does, but each attention spans one
axis (``w`` or ``t*h`` positions) instead of all ``L``. Every block is pre-norm with an MLP that takes the
frame term (frame conditioning) and norms that take the actions, as the GPT's blocks.

Sampling needs no key/value cache: the outer decoder runs once per row (its context for the next row is
then fixed), the inner decoder once per code over one row of ``w`` positions.
"""
from __future__ import annotations

import torch
import torch.utils.checkpoint
from einops import rearrange
from torch import nn

from .attention import MultiHeadAttention
from .config import PriorConfig


class AxialBlock(nn.Module):
    """Pre-norm block on a grid ``[B, R, W, D]``: ``x + drop(attn_axis(norm(x)))``, ``x + drop(mlp([norm(x), frame]))``.

    ``axis`` is ``"row"`` (attention along W within each row) or ``"column"`` (along R within each
    column); ``causal`` masks later positions along that axis.
    """

    def __init__(self, cfg: PriorConfig, axis: str, causal: bool):
        super().__init__()
        from .gpt import MLP, make_norm

        self.axis, self.causal = axis, causal
        frame_dim = cfg.resnet_units if cfg.frame_cond else 0
        self.norm1 = make_norm(cfg.hidden, cfg.action_dim)
        self.attn = MultiHeadAttention(cfg.hidden, cfg.heads, cfg.attention_dropout)
        self.norm2 = make_norm(cfg.hidden, cfg.action_dim)
        self.mlp = MLP(cfg.hidden, frame_dim, cfg.layers)
        self.dropout = nn.Dropout(cfg.dropout)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        b, r, w, _ = x.shape
        if self.axis == "row":
            out = self.attn(rearrange(x, "b r w d -> (b r) w d"), causal=self.causal)
            return rearrange(out, "(b r) w d -> b r w d", b=b)
        out = self.attn(rearrange(x, "b r w d -> (b w) r d"), causal=self.causal)
        return rearrange(out, "(b w) r d -> b r w d", b=b)

    def forward(self, x: torch.Tensor, frame_term: torch.Tensor | None, actions: torch.Tensor | None) -> torch.Tensor:
        from .gpt import apply_norm

        x = x + self.dropout(self.attend(apply_norm(self.norm1, x, actions)))
        return x + self.dropout(self.mlp(apply_norm(self.norm2, x, actions), frame_term))


class AxialDecoder(nn.Module):
    """The outer and inner decoders over the latent grid ``(t*h) x w``: ``[B, L, D] -> [B, L, D]``.

    ``prior.layers`` counts attention layers, as for the GPT: ``layers // 2`` outer blocks pair an
    unmasked row attention with a masked column attention, and ``layers - layers // 2`` inner blocks hold
    one masked row attention each (8 layers: 4 + 4 outer, 4 inner).
    """

    def __init__(self, cfg: PriorConfig, latent_shape: tuple[int, int, int]):
        super().__init__()
        t, h, w = latent_shape
        self.rows, self.width = t * h, w
        outer = []
        for _ in range(max(1, cfg.layers // 2)):
            outer += [AxialBlock(cfg, "row", causal=False), AxialBlock(cfg, "column", causal=True)]
        self.outer = nn.ModuleList(outer)
        self.inner = nn.ModuleList(AxialBlock(cfg, "row", causal=True) for _ in range(max(1, cfg.layers - cfg.layers // 2)))

    def mlp_blocks(self) -> list[AxialBlock]:
        """Every block, outer then inner: the order of :class:`videogen_lite.gpt.Condition`'s frame terms."""
        return [*self.outer, *self.inner]

    def _run(self, blocks, first_layer: int, x: torch.Tensor, cond, offset: int, grid: int,
             checkpointing: bool) -> torch.Tensor:
        b, r, w, _ = x.shape
        for layer, block in enumerate(blocks, start=first_layer):
            frame_term = cond.frame_rows(layer, offset, r * w, grid)
            if frame_term is not None:
                frame_term = frame_term.view(b, r, w, -1)
            if checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, frame_term, cond.actions, use_reentrant=False)
            else:
                x = block(x, frame_term, cond.actions)
        return x

    def context(self, h: torch.Tensor, cond, grid: int, checkpointing: bool = False) -> torch.Tensor:
        """The outer decoder on all ``L`` inputs ``[B, L, D]``, shifted down one row -> ``[B, R, W, D]``:
        row ``r`` depends only on the inputs of rows ``< r``."""
        x = rearrange(h, "b (r w) d -> b r w d", w=self.width)
        c = self._run(self.outer, 0, x, cond, 0, grid, checkpointing)
        return torch.cat([torch.zeros_like(c[:, :1]), c[:, :-1]], dim=1)

    def inner_rows(self, h: torch.Tensor, context: torch.Tensor, cond, first_row: int, grid: int,
                   checkpointing: bool = False) -> torch.Tensor:
        """The inner decoder on rows ``first_row ..`` : their inputs ``[B, m*W, D]`` and context ``[B, m, W, D]``
        -> ``[B, m*W, D]``."""
        x = rearrange(h, "b (r w) d -> b r w d", w=self.width) + context
        y = self._run(self.inner, len(self.outer), x, cond, first_row * self.width, grid, checkpointing)
        return rearrange(y, "b r w d -> b (r w) d")

    def forward(self, h: torch.Tensor, cond, offset: int, cache, grid: int, checkpointing: bool) -> torch.Tensor:
        if offset != 0 or cache is not None or h.shape[1] != self.rows * self.width:
            raise ValueError("the axial prior runs on whole windows of codes (no key/value cache): "
                             f"expected inputs [B, {self.rows * self.width}, D] at offset 0")
        return self.inner_rows(h, self.context(h, cond, grid, checkpointing), cond, 0, grid, checkpointing)
