"""The VideoGen prior: a GPT over the VQ-VAE's codes, with frame and action conditioning and KV-cached sampling.

A video's codes ``[B, t, h, w]`` are flattened in ``(t, h, w)`` order to ``L = t*h*w`` tokens. The model
predicts each code from the codes before it::

    input   [start, x_0, ..., x_{L-2}]            (shifted right by a learned start token)
    target  [x_0,   x_1, ..., x_{L-1}]
    embed + position -> blocks (pre-norm: causal self-attention, MLP) -> norm -> head over the codebook

Each block: ``x + attn(norm(x))`` then ``x + mlp([norm(x), frame])``; the ``frame`` features (a ResNet over
the conditioning frame, :mod:`videogen_lite.conditioning`) are concatenated at every position, and with
actions every norm is a :class:`ConditionalLayerNorm` of the flattened actions. The VQ-VAE inside is frozen.

There is one forward pass, :meth:`VideoGPT.decoder`: inputs at positions ``offset .. offset+n-1`` with an
optional :class:`KVCache`. Training runs it once over all ``L`` positions without a cache; sampling runs
it once over the known prefix (the prefill: the start token and any primed codes) and then once per new
position (``n = 1``) against the cache. With ``prior.attention = axial`` the same :class:`VideoGPT` holds
an Axial Transformer instead of the GPT blocks (:mod:`videogen_lite.axial`).
"""
from __future__ import annotations

import copy
import functools
import math
import platform
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from .attention import PositionEmbedding
from .conditioning import ConditionalLayerNorm, FrameEncoder
from .config import PriorConfig, from_dict, to_dict, validate_prior
from .metrics import bits_per_dim
from .vqvae import VQVAE

SAMPLING_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
# the precisions a prior can sample in (``sample(..., weights=...)``, :meth:`VideoGPT.with_weights`)
SAMPLING_WEIGHTS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def make_norm(dim: int, action_dim: int) -> nn.Module:
    return ConditionalLayerNorm(dim, action_dim) if action_dim > 0 else nn.LayerNorm(dim)


def apply_norm(norm: nn.Module, x: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
    return norm(x, actions) if isinstance(norm, ConditionalLayerNorm) else norm(x)


def action_window(actions: torch.Tensor | None, action_dim: int, first: int = 0) -> torch.Tensor | None:
    """The steps of per-step actions ``[B, T, A]`` a prior is conditioned on: ``action_dim / A`` of them from
    step ``first`` on -> ``[B, action_dim / A, A]`` (None for a prior without actions)."""
    if action_dim == 0:
        return None
    size = 0 if actions is None or actions.dim() != 3 else actions.shape[-1]
    if size == 0 or action_dim % size or actions.shape[1] < first + action_dim // size:
        raise ValueError(
            f"prior.action_dim = {action_dim} needs per-step actions [B, T, A] with A dividing it and "
            f"T >= {first} + action_dim / A, but got actions of shape "
            f"{None if actions is None else list(actions.shape)}; check data.action_size and prior.action_dim"
        )
    return actions[:, first : first + action_dim // size]


class Linear(nn.Linear):
    """``nn.Linear`` (the same parameters and state-dict keys) that can multiply by a prepacked copy of its
    weight while a CPU prior samples (:func:`packed_linears`).

    A token step multiplies a few rows by every weight matrix of the model, so its time is the time to stream
    the weights; ``F.linear`` packs the weight again on every call, a prepacked layout streams it faster
    (``benchmarks/prior.py --kernels``). The products agree up to float rounding; training never packs.
    """

    packed: tuple[int, str, torch.Tensor] | None = None  # (the rows it was packed for, the library, the packed weight)

    def forward(self, x: torch.Tensor, activation: str | None = None) -> torch.Tensor:
        """``F.linear``, then ``activation`` (None or ``"gelu"``, the exact erf form) when given."""
        if activation not in (None, "gelu"):
            raise ValueError(f"activation must be None or 'gelu', got {activation!r}")
        packed = self.packed
        if packed is not None and x.numel() == packed[0] * x.shape[-1]:
            rows, library, weight = packed
            if library == "mkl":
                out = torch.ops.mkl._mkl_linear(x.reshape(rows, -1), weight, self.weight, self.bias, rows)
                out = F.gelu(out) if activation == "gelu" else out
            else:  # oneDNN applies the activation to the product as it writes it (a post-op), not in a second pass
                post = ("gelu", [], "none") if activation == "gelu" else ("none", [], "")
                out = torch.ops.mkldnn._linear_pointwise(x.reshape(rows, -1), weight, self.bias, *post)
            return out.view(*x.shape[:-1], out.shape[-1])
        out = F.linear(x, self.weight, self.bias)
        return F.gelu(out) if activation == "gelu" else out


PACK_SAMPLING_WEIGHTS = True  # set False to sample with plain F.linear (the benchmarks compare both)
# A prepacked product costs about 50 us more per call than F.linear (measured on two cores) and streams the
# weight about twice as fast: it pays from about 128 Ki weights (512 KiB) up, e.g. hidden 384's matrices
# (147 Ki to 590 Ki weights), not hidden 128's (16 Ki to 64 Ki), whose token steps are bound by per-call costs.
PACK_MIN_WEIGHTS = 128 * 1024
# Which library packs the fp32 weights for sampling: None picks by the CPU (:func:`packing_library`),
# "onednn" or "mkl" forces one (``benchmarks/prior.py --kernels`` times both).
PACKING_LIBRARY: str | None = None


def packing_library(dtype: torch.dtype = torch.float32) -> str:
    """The library that prepacks sampling weights of ``dtype`` on this CPU: :data:`PACKING_LIBRARY` when set,
    else the faster where measured (``benchmarks/prior.py --kernels``; the 33 products of one token step of
    hidden 384 x 8 layers):

    - ``"onednn"`` (``torch.ops.mkldnn._linear_pointwise``): on a 2-core AMD Zen 4, 0.72 ms a layer at 4 rows
      against 1.58 ms for MKL's packed sgemm; the default on AMD CPUs, for bfloat16 weights (MKL packs only
      fp32), and in builds without MKL.
    - ``"mkl"`` (``torch.ops.mkl._mkl_linear``, MKL's packed sgemm, what ``torch.compile`` picks for fp32 on
      x86): on a 2-core Intel Xeon 1.4x as fast as oneDNN at 4 rows (1.54 ms against 2.17 ms for the step's
      products) and 1.35x at 32 rows (4.7 ms against 6.3 ms); the default on every other CPU with MKL.
    """
    library = PACKING_LIBRARY
    if library is not None and library not in ("onednn", "mkl"):
        raise ValueError(f"gpt.PACKING_LIBRARY must be None (pick by CPU), 'onednn' or 'mkl', got {library!r}")
    mkl = dtype == torch.float32 and torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")
    if library is None:
        library = "onednn" if cpu_vendor() == "amd" else "mkl"
    return library if mkl else "onednn"


def can_pack(weight: torch.Tensor) -> bool:
    """Whether ``weight`` is prepacked for sampling: a float32 CPU matrix of at least ``PACK_MIN_WEIGHTS``
    entries, in a PyTorch build with oneDNN (or a bfloat16 one, where oneDNN has bfloat16 kernels)."""
    bf16 = weight.dtype == torch.bfloat16 and getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
    return (PACK_SAMPLING_WEIGHTS and weight.device.type == "cpu" and (weight.dtype == torch.float32 or bf16)
            and weight.numel() >= PACK_MIN_WEIGHTS and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


@contextmanager
def packed_linears(model: nn.Module, rows: int):
    """Inside the block, every :class:`Linear` of ``model`` multiplies inputs of ``rows`` rows (one token step
    of ``rows`` samples) by a prepacked copy of its weight (oneDNN's or MKL's, :func:`packing_library`); other
    inputs, and builds without oneDNN, take ``F.linear``. The copies are dropped on exit."""
    linears = [m for m in model.modules() if isinstance(m, Linear) and can_pack(m.weight)]

    def unpack() -> None:
        for m in linears:
            m.__dict__.pop("packed", None)

    try:
        for m in linears:
            library = packing_library(m.weight.dtype)
            reorder = torch.ops.mkl._mkl_reorder_linear_weight if library == "mkl" else \
                torch.ops.mkldnn._reorder_linear_weight
            m.packed = (rows, library, reorder(m.weight.detach(), rows))
    except RuntimeError:  # a library that cannot pack these shapes: the whole model samples with F.linear
        unpack()
    try:
        yield
    finally:
        unpack()


@dataclass
class Condition:
    """What a sample is conditioned on, computed once: each block's projected frame features
    ``[B, h*w, 4 hidden]`` (the frame's share of the MLP's first layer), the flattened actions ``[B, A]``,
    and the position table ``[L, D]`` (learned tables are summed once, not at every token step)."""

    frame_terms: list[torch.Tensor] | None
    actions: torch.Tensor | None
    positions: torch.Tensor

    def frame_rows(self, layer: int, offset: int, n: int, grid: int) -> torch.Tensor | None:
        """Block ``layer``'s frame term at positions ``offset .. offset+n-1``: position ``p`` reads the feature
        of its latent cell, row ``p mod (h*w)`` -> ``[B, n, 4 hidden]``."""
        if self.frame_terms is None:
            return None
        rows = torch.arange(offset, offset + n, device=self.frame_terms[layer].device) % grid
        return self.frame_terms[layer][:, rows]


class KVCache:
    """Static keys and values of every layer, ``[layers, B, heads, L, head_dim]``, allocated once per sample.

    Block ``layer`` writes the keys and values of positions ``offset .. offset+n-1`` and attends over
    ``0 .. offset+n-1``. Nothing is reallocated or concatenated while sampling.
    """

    def __init__(self, layers: int, batch: int, heads: int, length: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device):
        shape = (layers, batch, heads, length, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.length = length
        self._bags: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def bags(self, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``F.embedding_bag``'s indices and offsets over one layer's values viewed as rows
        ``[B * heads * L, head_dim]``: a bag per (sample, head) holding its positions ``0 .. end-1``. Every layer
        of a token step shares them, so they are built once per ``end``."""
        if self._bags is None or self._bags[0] != end:
            _, batch, heads, length, _ = self.values.shape
            index = torch.int32 if batch * heads * length < 2**31 else torch.int64  # half the bytes of int64
            bag = torch.arange(batch * heads, dtype=index, device=self.values.device)
            indices = (bag[:, None] * length + torch.arange(end, dtype=index, device=bag.device)).view(-1)
            self._bags = (end, indices, bag * end)  # each bag's rows: its positions 0 .. end-1
        return self._bags[1], self._bags[2]


# How one new fp32 position reads the cache on a CPU (:func:`attend_to_cache`): None picks by the CPU
# (:func:`cache_kernels`), "gather" or "fused" forces one (``benchmarks/prior.py --kernels`` times both).
CACHE_KERNELS: str | None = None


@functools.cache
def cpu_vendor() -> str:
    """``"amd"`` on an AMD CPU, ``"other"`` elsewhere (read once from ``/proc/cpuinfo``, or the platform string)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = platform.processor()
    return "amd" if "AuthenticAMD" in text else "other"


def cache_kernels() -> str:
    """The kernels :func:`attend_to_cache` uses on this CPU: :data:`CACHE_KERNELS` when set, else the ones
    that read the cache fastest on the machines they were measured on (``benchmarks/prior.py --kernels``):

    - ``"gather"``: the scores as ``keys @ q`` (a dot product per cached key) and the weighted sum of the
      values as ``F.embedding_bag`` (a sum of rows with per-row weights). On a 2-core AMD Zen 4 these read
      the cache about twice as fast as the two matrix products ``q @ keys^T``, ``probs @ values``; the
      default on AMD CPUs.
    - ``"fused"``: ``F.scaled_dot_product_attention`` over the cached positions, one call. On a 2-core Intel
      Xeon (AVX-512, AMX) it read the cache 1.5x as fast as ``"gather"`` (32 samples over 512 cached positions
      of hidden 384: 3.0 ms a layer against 4.5 ms; there ``keys @ q`` streams the keys at a third of the rate
      of ``q @ keys^T``), and its one call costs less per token step than the five of ``"gather"``; the default
      on every other CPU.

    Both compute the same sums; they round apart, so the same seed can draw other codes on another CPU (as
    any two CPUs' kernels can)."""
    if CACHE_KERNELS is None:
        return "gather" if cpu_vendor() == "amd" else "fused"
    if CACHE_KERNELS not in ("gather", "fused"):
        raise ValueError(f"gpt.CACHE_KERNELS must be None (pick by CPU), 'gather' or 'fused', got {CACHE_KERNELS!r}")
    return CACHE_KERNELS


def attend_to_cache(q: torch.Tensor, cache: KVCache, layer: int, end: int) -> torch.Tensor:
    """One fp32 query per sample and head ``q [B, heads, 1, d]`` attending over layer ``layer``'s cached
    positions ``0 .. end-1`` -> ``[B, heads, 1, d]``: the same sums as the fused attention kernel, rounded apart.

    The step is bound by reading the cache, so on a CPU it uses the kernels that streamed it fastest there
    (:func:`cache_kernels`); on a GPU, two matrix products.
    """
    b, heads, _, d = q.shape
    keys = cache.keys[layer, :, :, :end]  # [B, heads, end, d]
    if q.device.type == "cpu" and cache_kernels() == "fused":
        return F.scaled_dot_product_attention(q, keys, cache.values[layer, :, :, :end])
    probs = torch.matmul(keys, (q * d**-0.5).transpose(-1, -2)).view(b, heads, end).softmax(dim=-1)
    if q.device.type != "cpu":
        return torch.matmul(probs.unsqueeze(2), cache.values[layer, :, :, :end])
    indices, bags = cache.bags(end)
    out = F.embedding_bag(indices, cache.values[layer].view(-1, d), bags, mode="sum", per_sample_weights=probs.view(-1))
    return out.view(b, heads, 1, d)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position ``i`` sees positions ``<= i``: ``[B, n, D] -> [B, n, D]``.

    Without a cache the ``n`` positions attend among themselves; with one they are positions
    ``offset .. offset+n-1`` and also see the cached positions before them.
    """

    def __init__(self, dim: int, heads: int, attention_dropout: float, layers: int):
        super().__init__()
        self.heads, self.head_dim, self.attention_dropout = heads, dim // heads, attention_dropout
        self.qkv = Linear(dim, 3 * dim)  # one fused projection for queries, keys and values
        self.proj = Linear(dim, dim)
        nn.init.normal_(self.qkv.weight, std=0.02)
        nn.init.normal_(self.proj.weight, std=0.02 / math.sqrt(2 * layers))  # residual branches start small
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, offset: int = 0) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [B, heads, n, d] each
        p = self.attention_dropout if self.training else 0.0
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # [B, heads, n, d]
        else:
            end = offset + n
            cache.keys[layer, :, :, offset:end] = k
            cache.values[layer, :, :, offset:end] = v
            if n == 1 and q.dtype == torch.float32:  # one new position sees every cached one
                return self.proj(attend_to_cache(q, cache, layer, end).reshape(b, 1, -1))  # [B, heads, 1, d] -> [B, 1, D]
            keys, values = cache.keys[layer, :, :, :end], cache.values[layer, :, :, :end]  # [B, heads, end, d]
            if n == 1:  # a bfloat16 cache: the fused kernel streams it fastest (matmul copies it first)
                out = F.scaled_dot_product_attention(q, keys, values)
            elif offset == 0:  # a prefill: causal among the new positions
                out = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
            else:  # new position offset+i sees positions <= offset+i
                mask = torch.ones(n, end, dtype=torch.bool, device=x.device).tril(offset)
                out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class MLP(nn.Module):
    """``[x, frame] -> Linear(4 dim) -> GELU -> Linear(dim)``: ``[B, n, dim] -> [B, n, dim]``.

    The first layer on the concatenation ``[x, frame]`` is written as ``fc(x) + fc_frame(frame)``, the same
    linear map split in two, so the frame features (one per latent ``(h, w)``) are projected once per sample
    (:class:`Condition`) instead of being copied to every position.
    """

    def __init__(self, dim: int, frame_dim: int, layers: int):
        super().__init__()
        self.fc = Linear(dim, 4 * dim)
        self.fc_frame = nn.Linear(frame_dim, 4 * dim, bias=False) if frame_dim else None
        self.proj = Linear(4 * dim, dim)
        for linear in (self.fc, self.fc_frame):
            if linear is not None:
                nn.init.normal_(linear.weight, std=0.02)
        nn.init.normal_(self.proj.weight, std=0.02 / math.sqrt(2 * layers))
        nn.init.zeros_(self.fc.bias)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, frame_term: torch.Tensor | None = None) -> torch.Tensor:
        if frame_term is None:
            return self.proj(self.fc(x, activation="gelu"))  # [B, n, 4 dim] in between
        return self.proj(F.gelu(self.fc(x) + frame_term))


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class Block(nn.Module):
    """Pre-norm transformer block: ``x + drop(attn(norm1(x)))``, then ``x + drop(mlp([norm2(x), frame]))``."""

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        frame_dim = cfg.resnet_units if cfg.frame_cond else 0
        self.norm1 = make_norm(cfg.hidden, cfg.action_dim)
        self.attn = CausalSelfAttention(cfg.hidden, cfg.heads, cfg.attention_dropout, cfg.layers)
        self.norm2 = make_norm(cfg.hidden, cfg.action_dim)
        self.mlp = MLP(cfg.hidden, frame_dim, cfg.layers)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, frame_term: torch.Tensor | None, actions: torch.Tensor | None,
                cache: KVCache | None = None, layer: int = 0, offset: int = 0) -> torch.Tensor:
        drop = self.dropout if self.training else _identity  # skip a module call per branch at every token step
        x = x + drop(self.attn(apply_norm(self.norm1, x, actions), cache, layer, offset))
        return x + drop(self.mlp(apply_norm(self.norm2, x, actions), frame_term))


class VideoGPT(nn.Module):
    """The prior over a frozen VQ-VAE's codes (Table 6 of the paper), built from ``cfg.prior``.

    ``forward(x, frames=None, actions=None)``:

    - ``x``: a video float ``[B, C, T, H, W]`` in [-0.5, 0.5] (encoded by the VQ-VAE) or its codes
      LongTensor ``[B, t, h, w]``;
    - ``frames`` (with ``prior.frame_cond``): float ``[B, C, n_cond_frames, H, W]`` in [-0.5, 0.5];
    - ``actions`` (with ``prior.action_dim > 0``): float ``[B, T', A]`` with ``T' * A = action_dim``;

    returns ``dict(loss, bits_per_dim, logits [B, t, h, w, n_codes])``: ``loss`` is the mean cross-entropy
    per code in nats, ``bits_per_dim = loss / ln 2``.

    The VQ-VAE's weights are part of the prior's state dict (a saved prior is self-contained) but never
    train: no gradients, always in eval mode, its codebook frozen (no EMA updates, no restarts).
    """

    def __init__(self, cfg: PriorConfig, vqvae: VQVAE):
        super().__init__()
        if not isinstance(vqvae, VQVAE):
            raise TypeError(f"vqvae must be a videogen_lite.VQVAE (e.g. videogen_lite.load(RUN_DIR)), "
                            f"got {type(vqvae).__name__}")
        validate_prior(cfg, n_frames=vqvae.cfg.sequence_length)
        self.cfg = cfg
        self.vqvae = vqvae
        self.vqvae.requires_grad_(False)
        self.vqvae.codebook.frozen = True
        self.latent_shape = tuple(vqvae.cfg.latent_shape)  # (t, h, w)
        self.length = math.prod(self.latent_shape)  # L tokens per video
        self.grid = self.latent_shape[1] * self.latent_shape[2]  # h*w tokens per latent time step
        self.n_codes = vqvae.cfg.n_codes

        self.token_embedding = nn.Embedding(self.n_codes, cfg.hidden)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.start = nn.Parameter(torch.randn(cfg.hidden) * 0.02)
        self.position = PositionEmbedding(cfg.pos_embedding, self.latent_shape, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.frame_encoder = None
        if cfg.frame_cond:
            self.frame_encoder = FrameEncoder(vqvae.cfg.channels, cfg.n_cond_frames, cfg.resnet_depth,
                                              cfg.resnet_units, self.latent_shape[1:])
        self.axial = None
        if cfg.attention == "axial":
            from .axial import AxialDecoder

            self.axial = AxialDecoder(cfg, self.latent_shape)
        else:
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = make_norm(cfg.hidden, cfg.action_dim)
        self.head = Linear(cfg.hidden, self.n_codes, bias=False)
        nn.init.normal_(self.head.weight, std=0.02)
        self.activation_checkpointing = False  # set by the training loop (train.activation_checkpointing)
        self.vqvae.eval()

    # -----------------------------------------------------------------------------------------------
    # bookkeeping

    def train(self, mode: bool = True) -> VideoGPT:
        """Set training mode for the prior; the VQ-VAE inside stays in eval mode whatever ``mode`` is."""
        super().train(mode)
        self.vqvae.eval()
        return self

    def compile_modules(self) -> None:
        """``torch.compile`` the transformer blocks, the frame encoder and the frozen VQ-VAE's encoder and
        decoder in place (``train.compile``). Every block has the same code, so they share one compiled graph."""
        for block in self.mlp_blocks():
            block.compile()
        if self.frame_encoder is not None:
            self.frame_encoder.compile()
        self.vqvae.compile_modules()

    def mlp_blocks(self) -> list[nn.Module]:
        """The transformer's blocks in order (each MLP takes its own projection of the frame features)."""
        return self.axial.mlp_blocks() if self.axial is not None else list(self.blocks)

    def config_dict(self) -> dict:
        return {"prior": to_dict(self.cfg), "vqvae": to_dict(self.vqvae.cfg)}

    @classmethod
    def from_config_dict(cls, values: dict) -> VideoGPT:
        vqvae = VQVAE.from_config_dict({"vqvae": values["vqvae"]})
        return cls(from_dict(values["prior"], PriorConfig), vqvae=vqvae)

    def num_parameters(self) -> int:
        """Trainable parameters (the frozen VQ-VAE excluded)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # -----------------------------------------------------------------------------------------------
    # inputs and their checks

    def to_codes(self, x: torch.Tensor) -> torch.Tensor:
        """A video ``[B, C, T, H, W]`` (encoded by the frozen VQ-VAE) or codes ``[B, t, h, w]`` -> codes."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a video [B, C, T, H, W] or codes [B, t, h, w] tensor, got {type(x).__name__}")
        if x.is_floating_point():
            expected = (self.vqvae.cfg.channels, *self.vqvae.cfg.input_shape)
            if x.dim() != 5 or tuple(x.shape[1:]) != expected:
                raise ValueError(f"expected a video [B, C, T, H, W] = [B, {', '.join(map(str, expected))}] "
                                 f"(the VQ-VAE's input), got shape {list(x.shape)}")
            with torch.no_grad():
                return self.vqvae.encode(x)  # fp32 codes, whatever autocast is on
        if x.dim() != 4 or tuple(x.shape[1:]) != self.latent_shape:
            raise ValueError(f"expected codes [B, t, h, w] = [B, {', '.join(map(str, self.latent_shape))}] "
                             f"(the VQ-VAE's latent grid), got shape {list(x.shape)}")
        self.check_codes(x)
        return x.long()

    def check_codes(self, codes: torch.Tensor) -> None:
        if codes.is_floating_point():
            raise ValueError(f"expected integer codes, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.n_codes):
            raise ValueError(f"codes must lie in [0, {self.n_codes}), got range [{int(codes.min())}, {int(codes.max())}]")

    def condition(self, batch: int, frames: torch.Tensor | None, actions: torch.Tensor | None) -> Condition:
        """Check the conditioning against the config and compute it once: the frame features projected for
        every block, the flattened actions ``[B, action_dim]`` and the position table ``[L, D]``."""
        cfg, vq = self.cfg, self.vqvae.cfg
        frame_shape = [batch, vq.channels, cfg.n_cond_frames, vq.resolution, vq.resolution]
        if cfg.frame_cond and frames is None:
            raise ValueError(f"this prior is frame-conditioned (prior.frame_cond = true) but no frames were given: "
                             f"pass frames, a float tensor [B, C, F, H, W] = {frame_shape} in [-0.5, 0.5]")
        if not cfg.frame_cond and frames is not None:
            raise ValueError("frames were given but this prior is not frame-conditioned (prior.frame_cond = false): "
                             "leave frames out, or train a prior with prior.frame_cond=true")
        if frames is not None and (not frames.is_floating_point() or list(frames.shape) != frame_shape):
            raise ValueError(f"expected frames [B, C, F, H, W] = {frame_shape} (float, in [-0.5, 0.5]), "
                             f"got {frames.dtype} of shape {list(frames.shape)}")
        if cfg.action_dim > 0 and actions is None:
            raise ValueError(f"this prior is action-conditioned (prior.action_dim = {cfg.action_dim}) but no actions "
                             f"were given: pass actions, a float tensor [B, T', A] with T' x A = {cfg.action_dim}")
        if cfg.action_dim == 0 and actions is not None:
            raise ValueError("actions were given but this prior is not action-conditioned (prior.action_dim = 0): "
                             "leave actions out, or train a prior with prior.action_dim set")
        if actions is not None:
            if actions.dim() != 3 or actions.shape[0] != batch or actions.shape[1] * actions.shape[2] != cfg.action_dim:
                raise ValueError(f"expected actions [B, T', A] with B = {batch} and T' x A = prior.action_dim = "
                                 f"{cfg.action_dim}, got shape {list(actions.shape)}")
            actions = actions.flatten(1).to(self.start.dtype)  # [B, action_dim], in the prior's precision
        terms = None
        if frames is not None:
            features = self.frame_encoder(frames.to(self.start.dtype))  # [B, h*w, resnet_units]
            terms = [block.mlp.fc_frame(features) for block in self.mlp_blocks()]  # [B, h*w, 4 hidden] each
        return Condition(terms, actions, rearrange(self.position(), "t h w d -> (t h w) d"))

    # -----------------------------------------------------------------------------------------------
    # the one forward pass

    def inputs(self, codes: torch.Tensor, with_start: bool) -> torch.Tensor:
        """The transformer's input vectors for ``codes [B, m]``: their embeddings, after the start token when
        the positions begin at 0 -> ``[B, m (+1), D]``."""
        x = self.token_embedding(codes)
        if with_start:
            x = torch.cat([self.start.expand(codes.shape[0], 1, -1).to(x.dtype), x], dim=1)
        return x

    def decoder(self, x: torch.Tensor, cond: Condition, offset: int = 0, cache: KVCache | None = None) -> torch.Tensor:
        """Input vectors ``x [B, n, D]`` at positions ``offset .. offset+n-1`` -> logits ``[B, n, n_codes]``.

        The input at position ``p`` is the start token for ``p = 0`` and the embedding of code ``p - 1``
        otherwise (:meth:`inputs`); the logits at ``p`` are the prediction of code ``p``. Without a cache the
        positions attend among themselves (training, uncached sampling); with one they also see the cached
        positions before ``offset`` and leave their own keys and values in it.
        """
        n = x.shape[1]
        if offset + n > self.length:
            raise ValueError(f"positions {offset}..{offset + n - 1} run past the prior's {self.length} positions")
        h = self.embedded(x, offset, cond)
        if self.axial is not None:
            h = self.axial(h, cond, offset, cache, self.grid, self.activation_checkpointing and self.training)
        else:
            for layer, block in enumerate(self.blocks):
                frame_term = cond.frame_rows(layer, offset, n, self.grid)
                if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                    # keep only each block's input; recompute its activations in the backward pass
                    h = torch.utils.checkpoint.checkpoint(block, h, frame_term, cond.actions, use_reentrant=False)
                else:
                    h = block(h, frame_term, cond.actions, cache, layer, offset)
        return self.head(apply_norm(self.norm, h, cond.actions))  # [B, n, n_codes]

    def embedded(self, x: torch.Tensor, offset: int, cond: Condition) -> torch.Tensor:
        """Input vectors ``[B, n, D]`` at positions ``offset ..``, plus their position embeddings (and dropout)."""
        return self.dropout(x + cond.positions[offset : offset + x.shape[1]])

    def forward(self, x: torch.Tensor, frames: torch.Tensor | None = None,
                actions: torch.Tensor | None = None) -> dict:
        codes = self.to_codes(x)  # [B, t, h, w]
        cond = self.condition(codes.shape[0], frames, actions)
        targets = codes.flatten(1)  # [B, L]
        logits = self.decoder(self.inputs(targets[:, :-1], with_start=True), cond)  # [B, L, n_codes]
        loss = F.cross_entropy(rearrange(logits.float(), "b l k -> (b l) k"), targets.flatten())
        return {"loss": loss, "bits_per_dim": bits_per_dim(loss), "logits": logits.view(*codes.shape, self.n_codes)}

    def forward_batch(self, batch: dict) -> dict:
        """The training loop's entry point: ``dict(video, actions, ...)`` -> :meth:`forward`'s dict.

        Frame conditioning takes the first ``n_cond_frames`` frames of the video; action conditioning takes
        the first ``action_dim / A`` steps of ``batch["actions"] [B, T, A]``. ``batch["codes"]``, when a
        dataset of pre-encoded codes provides it, replaces encoding the video.
        """
        video = batch["video"]
        frames = video[:, :, : self.cfg.n_cond_frames] if self.cfg.frame_cond else None
        actions = action_window(batch.get("actions"), self.cfg.action_dim)
        return self(batch["codes"] if "codes" in batch else video, frames, actions)

    # -----------------------------------------------------------------------------------------------
    # sampling

    def prime_codes(self, prime: torch.Tensor, prime_steps: int, n: int) -> torch.Tensor:
        """The first ``prime_steps`` latent steps of ``prime`` -> codes ``[n, prime_steps * h * w]``.

        ``prime``: codes ``[n, t', h, w]`` (``t' >= prime_steps``) or a video float ``[n, C, T', H, W]`` in
        [-0.5, 0.5] with at least ``prime_steps * dt`` frames. A video is encoded from those frames only:
        they are followed by copies of the last of them up to the clip length, so no later frame leaks
        into the primed codes through the encoder's receptive field.
        """
        t, h, w = self.latent_shape
        dt = self.vqvae.cfg.downsample[0]
        if not isinstance(prime, torch.Tensor) or prime.shape[:1] != (n,):
            raise ValueError(f"prime must hold one video [n, C, T, H, W] or code grid [n, t, h, w] per sample "
                             f"(n = {n}), got {type(prime).__name__} of shape {list(getattr(prime, 'shape', []))}")
        device = self.start.device
        if prime.is_floating_point():
            vq = self.vqvae.cfg
            frames = prime_steps * dt
            if prime.dim() != 5 or tuple(prime.shape[1:2] + prime.shape[3:]) != (vq.channels, vq.resolution,
                                                                                   vq.resolution):
                raise ValueError(f"a prime video must be [n, C, T, H, W] = [{n}, {vq.channels}, T, {vq.resolution}, "
                                 f"{vq.resolution}] in [-0.5, 0.5], got shape {list(prime.shape)}")
            if prime.shape[2] < frames:
                raise ValueError(f"prime_steps = {prime_steps} latent steps need {frames} frames (the VQ-VAE "
                                 f"downsamples time by {dt}), but the prime video has {prime.shape[2]}")
            clip = prime[:, :, :frames].to(device)
            pad = clip[:, :, -1:].expand(-1, -1, vq.sequence_length - frames, -1, -1)
            codes = self.vqvae.encode(torch.cat([clip, pad], dim=2))[:, :prime_steps]
        else:
            if prime.dim() != 4 or tuple(prime.shape[2:]) != (h, w) or prime.shape[1] < prime_steps:
                raise ValueError(f"prime codes must be [n, t', h, w] = [{n}, >= {prime_steps}, {h}, {w}], "
                                 f"got shape {list(prime.shape)}")
            self.check_codes(prime)
            codes = prime[:, :prime_steps].to(device).long()
        return codes.flatten(1)

    @torch.no_grad()
    def sample_codes(self, n: int, frames: torch.Tensor | None = None, actions: torch.Tensor | None = None,
                     temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None,
                     use_cache: bool = True, progress: bool = False, prime: torch.Tensor | None = None,
                     prime_steps: int | None = None, length: int | None = None,
                     weights: str | None = None) -> torch.Tensor:
        """Draw ``n`` code grids ``LongTensor [n, length, h, w]``, one code at a time in ``(t, h, w)`` order.

        - ``prime`` (codes ``[n, t', h, w]`` or a video ``[n, C, T', H, W]``) and ``prime_steps = k``: the first
          ``k`` latent time steps are the codes of real frames (``k = 1`` is the first 4 frames when time is
          downsampled 4x); the rest is sampled.
        - ``length``: latent time steps to produce (default: the trained ``t``). Beyond ``t`` the prior rolls
          out with a sliding window over latent time: when the window is full, its oldest latent step is
          dropped and the model sees the remaining ``t - 1`` steps at the trained positions ``0 .. t-2``,
          conditioned on the window's own first frame (decoded from its codes) and on the window's actions
          (``actions`` must then hold ``(length - t) * dt`` more steps). This is an extension the paper does
          not have: the model never saw a clip that starts mid-motion with decoded frames, and anything
          older than ``t - 1`` latent steps is forgotten.

        With ``use_cache`` the known prefix runs through the model once (the prefill) and every new position
        alone against the :class:`KVCache`; without, every step re-runs the whole window. Both draw with
        ``torch.multinomial(..., generator=generator)`` in the same order and give the same codes.

        ``weights``: ``None`` samples in the prior's own precision (fp32 as trained and loaded: exact);
        ``"bf16"`` samples with a bfloat16 copy of the GPT (:meth:`with_weights`): half the weight and KV-cache
        traffic, and oneDNN's bfloat16 matrix kernels where the CPU has them (AMX, AVX-512 BF16). Its
        probabilities are rounded, so it draws other codes than fp32 from the same seed (and its cached and
        uncached paths, whose kernels round differently, other codes from each other); on a CPU without
        bfloat16 instructions it is slower, not faster (``benchmarks/prior.py --weights`` measures both).
        """
        if weights is not None and SAMPLING_WEIGHTS.get(weights) != self.start.dtype:
            return self.with_weights(weights).sample_codes(n, frames, actions, temperature, top_k, generator,
                                                           use_cache, progress, prime, prime_steps, length)
        t, h, w = self.latent_shape
        length = t if length is None else length
        self._check_sampling(n, frames, actions, temperature, top_k, prime, prime_steps, length)
        # each step attends over a new prefix length; cuDNN's attention builds an execution plan for every new
        # shape (about 50 ms each, measured on an H200: most of the sampling time), the other backends do not
        with sdpa_kernel(SAMPLING_BACKENDS):
            was_training = self.training
            self.eval()
            try:
                device = self.start.device
                frames = None if frames is None else frames.to(device)
                actions = None if actions is None else actions.to(device)
                codes = torch.zeros(n, length * self.grid, dtype=torch.long, device=device)
                known = 0
                if prime is not None:
                    known = prime_steps * self.grid
                    codes[:, :known] = self.prime_codes(prime, prime_steps, n)
                bar = tqdm(total=codes.shape[1] - known, desc="sampling codes", disable=not progress, leave=False)
                sampler = self._sample_axial if self.axial is not None else self._sample_gpt
                threads = torch.get_num_threads()
                torch.set_num_threads(self.sampling_threads(n, threads))
                try:
                    with packed_linears(self, n) if use_cache else nullcontext():
                        sampler(codes, known, frames, actions, temperature, top_k, generator, use_cache, bar)
                finally:
                    torch.set_num_threads(threads)
                    bar.close()
            finally:
                self.train(was_training)
            return codes.view(n, length, h, w)

    def with_weights(self, weights: str) -> VideoGPT:
        """This prior in the precision ``weights`` (``"fp32"`` or ``"bf16"``, :data:`SAMPLING_WEIGHTS`): itself
        when it is already in it, else an eval-mode copy of the GPT in that precision (its activations and KV
        cache too) that shares this prior's frozen VQ-VAE, which stays as it is. ``prior.with_weights("bf16")(x)``
        gives the bits/dim of the rounded model (the loss is summed in fp32)."""
        if weights not in SAMPLING_WEIGHTS:
            raise ValueError(f"weights must be one of {sorted(SAMPLING_WEIGHTS)} (the precision to sample in), "
                             f"got {weights!r}")
        dtype = SAMPLING_WEIGHTS[weights]
        if self.start.dtype == dtype:
            return self
        twin = copy.deepcopy(self, memo={id(self.vqvae): self.vqvae})  # the VQ-VAE is shared, not copied
        for child in twin.children():
            if child is not self.vqvae:
                child.to(dtype)
        for name, param in list(twin._parameters.items()):  # the start token
            twin._parameters[name] = nn.Parameter(param.detach().to(dtype), requires_grad=False)
        return twin.eval().requires_grad_(False)

    def sampling_threads(self, n: int, available: int) -> int:
        """CPU threads for sampling ``n`` videos, from the work of one token step: ``n`` rows through every
        weight matrix. A big step (at least 2^20 weights to stream, or 2^24 multiply-adds) is worth splitting;
        a small one is bound by per-call costs, which a second thread only adds to (more so on a busy
        machine). Measured on two cores: hidden 384 x 8 layers (14 M weights), 1 video 15.4 s on one thread and
        11.7 s on two; the lite prior (hidden 128 x 4 layers, 0.8 M weights) 16 videos 5.7 s and 6.0 s,
        32 videos 13.6 s and 10.7 s, 64 videos 23.8 s and 13.5 s."""
        if self.start.device.type != "cpu":
            return available
        weights = sum(m.weight.numel() for m in self.modules() if isinstance(m, Linear))
        return available if weights >= 2**20 or n * weights >= 2**24 else 1

    def _check_sampling(self, n, frames, actions, temperature, top_k, prime, prime_steps, length) -> None:
        t = self.latent_shape[0]
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n (the number of samples) must be a positive integer, got {n!r}")
        if frames is not None and frames.shape[0] != n:
            raise ValueError(f"frames hold {frames.shape[0]} conditioning clip(s) but n = {n} samples were asked "
                             f"for: pass frames [n, C, F, H, W] with one clip per sample")
        if actions is not None and actions.shape[0] != n:
            raise ValueError(f"actions hold {actions.shape[0]} sequence(s) but n = {n} samples were asked for: "
                             f"pass actions [n, T', A] with one sequence per sample")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if top_k is not None and not 1 <= top_k <= self.n_codes:
            raise ValueError(f"top_k must lie in [1, {self.n_codes}] (the codebook size), got {top_k}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length (latent time steps to sample) must be a positive integer, got {length!r}")
        if (prime is None) != (prime_steps is None):
            raise ValueError("pass prime (real frames or codes) and prime_steps (how many latent time steps of it "
                             "to keep) together")
        if prime is not None:
            if not isinstance(prime_steps, int) or not 1 <= prime_steps <= min(t, length - 1):
                raise ValueError(f"prime_steps = {prime_steps!r}: expected 1 to {min(t, length - 1)} latent time "
                                 f"steps (at most the window of t = {t} steps, and fewer than length = {length}, "
                                 "so that something is sampled)")
        if length > t and self.cfg.action_dim and actions is not None:
            dt = self.vqvae.cfg.downsample[0]
            action_window(actions, self.cfg.action_dim, first=(length - t) * dt)  # the last window's actions exist

    def _window_condition(self, codes, start_step, frames, actions) -> Condition:
        """The conditioning of the window that starts at latent step ``start_step``: the given frames and the
        first actions for the first window; later windows see their own first frame(s), decoded from their
        codes, and their own actions."""
        dt = self.vqvae.cfg.downsample[0]
        window_actions = action_window(actions, self.cfg.action_dim, first=start_step * dt) if actions is not None \
            else None
        if start_step > 0 and frames is not None:
            t = self.latent_shape[0]
            n = codes.shape[0]
            window = codes[:, start_step * self.grid : (start_step + t - 1) * self.grid].view(n, t - 1, *self.latent_shape[1:])
            window = torch.cat([window, window[:, -1:]], dim=1)  # t steps for the decoder; only the first frames are kept
            frames = self.vqvae.decode(window)[:, :, : self.cfg.n_cond_frames].clamp(-0.5, 0.5)
        return self.condition(codes.shape[0], frames, window_actions)

    def _sample_gpt(self, codes, known, frames, actions, temperature, top_k, generator, use_cache, bar) -> None:
        n, total = codes.shape
        cache = None
        if use_cache:
            head_dim = self.cfg.hidden // self.cfg.heads
            cache = KVCache(self.cfg.layers, n, self.cfg.heads, self.length, head_dim, self.start.dtype, codes.device)
        window_step, cond = -1, None  # the first latent step of the current window, its conditioning
        for i in range(known, total):
            first = max(0, i // self.grid - self.latent_shape[0] + 1)  # the window that holds position i
            begin = first * self.grid
            new_window = first != window_step
            if new_window:
                window_step, cond = first, self._window_condition(codes, first, frames, actions)
            if not use_cache:  # the whole window again
                logits = self.decoder(self.inputs(codes[:, begin:i], with_start=True), cond)[:, -1]
            elif new_window:  # the prefill: the start token and the window's known codes, in one pass
                logits = self.decoder(self.inputs(codes[:, begin:i], with_start=True), cond, 0, cache)[:, -1]
            else:  # one position against the cache; its input is the code drawn last
                logits = self.decoder(self.token_embedding(codes[:, i - 1 : i]), cond, i - begin, cache)[:, 0]
            codes[:, i] = draw(logits, temperature, top_k, generator)
            bar.update(1)

    def _sample_axial(self, codes, known, frames, actions, temperature, top_k, generator, use_cache, bar) -> None:
        n, total = codes.shape
        w = self.latent_shape[2]
        window_step, cond, context, context_row = -1, None, None, -1
        for i in range(known, total):
            first = max(0, i // self.grid - self.latent_shape[0] + 1)
            begin = first * self.grid
            if first != window_step:
                window_step, cond, context_row = first, self._window_condition(codes, first, frames, actions), -1
            p = i - begin  # the position within the window
            window = codes[:, begin:i]  # its known codes
            if use_cache:
                row, column = divmod(p, w)
                if row != context_row:  # the outer decoder, once per row: rows before it are all known now
                    whole = self.embedded(self.window_inputs(window, 0, self.length), 0, cond)
                    context, context_row = self.axial.context(whole, cond, self.grid), row
                row_inputs = self.embedded(self.window_inputs(window, row * w, w), row * w, cond)
                h = self.axial.inner_rows(row_inputs, context[:, row : row + 1], cond, row, self.grid)  # [n, w, D]
                logits = self.head(apply_norm(self.norm, h[:, column], cond.actions))
            else:  # the whole window again, unknown codes as zeros (the masks keep them out)
                logits = self.decoder(self.window_inputs(window, 0, self.length), cond)[:, p]
            codes[:, i] = draw(logits, temperature, top_k, generator)
            bar.update(1)

    def window_inputs(self, known: torch.Tensor, offset: int, n: int) -> torch.Tensor:
        """The inputs at positions ``offset .. offset+n-1`` of a window whose first codes ``known [B, m]`` are
        drawn -> ``[B, n, D]``; positions after the known codes get code 0, which causal masks never let reach
        a known position."""
        padded = torch.zeros(known.shape[0], self.length, dtype=torch.long, device=known.device)
        padded[:, : known.shape[1]] = known
        return self.inputs(padded[:, max(0, offset - 1) : offset + n - 1], with_start=offset == 0)

    @torch.no_grad()
    def sample(self, n: int, frames: torch.Tensor | None = None, actions: torch.Tensor | None = None,
               temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None,
               use_cache: bool = True, progress: bool = False, prime: torch.Tensor | None = None,
               prime_steps: int | None = None, length: int | None = None, weights: str | None = None) -> torch.Tensor:
        """Sample ``n`` videos: float ``[n, C, T, H, W]`` in [0, 1] (codes from :meth:`sample_codes`, decoded
        by the VQ-VAE and shifted from [-0.5, 0.5]).

        ``frames [n, C, F, H, W]`` and ``actions [n, T', A]`` as in :meth:`forward`; ``temperature`` divides
        the logits, ``top_k`` keeps only the k most likely codes at each step; a seeded ``generator`` makes
        the result reproducible; ``prime``, ``prime_steps``, ``length`` and ``weights`` as in :meth:`sample_codes`
        (the VQ-VAE decodes in fp32 whatever ``weights`` says).
        """
        codes = self.sample_codes(n, frames, actions, temperature, top_k, generator, use_cache, progress,
                                  prime, prime_steps, length, weights)
        if codes.shape[1] != self.latent_shape[0] and self.vqvae.cfg.attention:
            raise ValueError(f"this VQ-VAE has axial attention over a fixed {self.latent_shape} grid and decodes only "
                             f"{self.latent_shape[0]} latent steps; sample_codes(length={codes.shape[1]}) and decode "
                             "windows of that many steps")
        return (self.vqvae.decode(codes) + 0.5).clamp(0.0, 1.0)


def draw(logits: torch.Tensor, temperature: float, top_k: int | None,
         generator: torch.Generator | None) -> torch.Tensor:
    """One code per row of ``logits [n, n_codes]`` -> ``[n]``, by ``torch.multinomial`` on ``generator``."""
    logits = logits.float() if temperature == 1 else logits.float() / temperature  # x / 1 is x: one op less
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # [n, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator)[:, 0].to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
