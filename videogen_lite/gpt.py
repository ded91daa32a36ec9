"""The VideoGen prior: a GPT over the VQ-VAE's codes, with frame and action conditioning and KV-cached sampling.

A video's codes ``[B, t, h, w]`` are flattened in ``(t, h, w)`` order to ``L = t*h*w`` tokens. The model
predicts each code from the codes before it::

    input   [start, x_0, ..., x_{L-2}]            (shifted right by a learned start token)
    target  [x_0,   x_1, ..., x_{L-1}]
    embed + position -> blocks (pre-norm: causal self-attention, MLP) -> norm -> head over the codebook

Each block: ``x + attn(norm(x))`` then ``x + mlp([norm(x), frame])``; the ``frame`` features (a ResNet over
the conditioning frame, :mod:`videogen_lite.conditioning`) are concatenated at every position, and with
actions every norm is a :class:`ConditionalLayerNorm` of the flattened actions. The VQ-VAE inside is frozen.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from .attention import PositionEmbedding
from .conditioning import ConditionalLayerNorm, FrameEncoder
from .config import POS_EMBEDDINGS, PriorConfig, from_dict, to_dict
from .vqvae import VQVAE

SAMPLING_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def make_norm(dim: int, action_dim: int) -> nn.Module:
    return ConditionalLayerNorm(dim, action_dim) if action_dim > 0 else nn.LayerNorm(dim)


def apply_norm(norm: nn.Module, x: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
    return norm(x, actions) if isinstance(norm, ConditionalLayerNorm) else norm(x)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position ``i`` sees positions ``<= i``: ``[B, L, D] -> [B, L, D]``.

    :meth:`step` runs one new position against a key/value cache instead of the whole sequence.
    """

    def __init__(self, dim: int, heads: int, attention_dropout: float, layers: int):
        super().__init__()
        self.heads, self.head_dim, self.attention_dropout = heads, dim // heads, attention_dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.normal_(self.qkv.weight, std=0.02)
        nn.init.normal_(self.proj.weight, std=0.02 / math.sqrt(2 * layers))  # residual branches start small
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        p = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # [B, heads, L, d]
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))

    def step(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, i: int) -> torch.Tensor:
        """Position ``i`` only: ``x [B, 1, D]``; writes its key and value into ``keys``/``values``
        ``[B, heads, L, d]`` at ``i`` and attends to positions ``0..i`` -> ``[B, 1, D]``."""
        b = x.shape[0]
        qkv = self.qkv(x).view(b, 3, self.heads, 1, self.head_dim)  # the (three h d) layout of forward
        keys[:, :, i : i + 1] = qkv[:, 1]
        values[:, :, i : i + 1] = qkv[:, 2]
        out = F.scaled_dot_product_attention(qkv[:, 0], keys[:, :, : i + 1], values[:, :, : i + 1])  # [B, h, 1, d]
        return self.proj(out.reshape(b, 1, -1))


class MLP(nn.Module):
    """``[x, frame] -> Linear(4 dim) -> GELU -> Linear(dim)``: ``[B, L, dim] -> [B, L, dim]``.

    The first layer on the concatenation ``[x, frame]`` is written as ``fc(x) + fc_frame(frame)``, the same
    linear map split in two, so the frame features (one per latent ``(h, w)``) are projected once and
    broadcast over time instead of being copied to every position.
    """

    def __init__(self, dim: int, frame_dim: int, layers: int):
        super().__init__()
        self.fc = nn.Linear(dim, 4 * dim)
        self.fc_frame = nn.Linear(frame_dim, 4 * dim, bias=False) if frame_dim else None
        self.proj = nn.Linear(4 * dim, dim)
        for linear in (self.fc, self.fc_frame):
            if linear is not None:
                nn.init.normal_(linear.weight, std=0.02)
        nn.init.normal_(self.proj.weight, std=0.02 / math.sqrt(2 * layers))
        nn.init.zeros_(self.fc.bias)
        nn.init.zeros_(self.proj.bias)

    def frame_term(self, frame: torch.Tensor, length: int) -> torch.Tensor:
        """``fc_frame`` of frame features ``[B, h*w, U]`` at the first ``length`` positions -> ``[B, length, 4 dim]``."""
        term = self.fc_frame(frame)  # [B, h*w, 4 dim], the same for every time step
        return term.repeat(1, math.ceil(length / term.shape[1]), 1)[:, :length]

    def forward(self, x: torch.Tensor, frame_term: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(x) if frame_term is None else self.fc(x) + frame_term  # [B, L, 4 dim]
        return self.proj(F.gelu(h))


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

    def forward(self, x: torch.Tensor, frame: torch.Tensor | None = None,
                actions: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attn(apply_norm(self.norm1, x, actions)))
        frame_term = None if frame is None else self.mlp.frame_term(frame, x.shape[1])
        return x + self.dropout(self.mlp(apply_norm(self.norm2, x, actions), frame_term))

    def step(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, i: int,
             frame_term: torch.Tensor | None, actions: torch.Tensor | None) -> torch.Tensor:
        """Position ``i`` only (eval mode): ``x [B, 1, D]``, ``frame_term [B, 1, 4D]`` -> ``[B, 1, D]``."""
        x = x + self.attn.step(apply_norm(self.norm1, x, actions), keys, values, i)
        return x + self.mlp(apply_norm(self.norm2, x, actions), frame_term)


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
        check_prior_config(cfg, vqvae)
        self.cfg = cfg
        self.vqvae = vqvae
        self.vqvae.requires_grad_(False)
        self.vqvae.codebook.frozen = True
        self.latent_shape = tuple(vqvae.cfg.latent_shape)  # (t, h, w)
        self.length = math.prod(self.latent_shape)  # L tokens per video
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
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = make_norm(cfg.hidden, cfg.action_dim)
        self.head = nn.Linear(cfg.hidden, self.n_codes, bias=False)
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
        for block in self.blocks:
            block.compile()
        if self.frame_encoder is not None:
            self.frame_encoder.compile()
        self.vqvae.compile_modules()

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
                return self.vqvae.encode(x)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.latent_shape:
            raise ValueError(f"expected codes [B, t, h, w] = [B, {', '.join(map(str, self.latent_shape))}] "
                             f"(the VQ-VAE's latent grid), got shape {list(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.n_codes):
            raise ValueError(f"codes must lie in [0, {self.n_codes}), got range [{int(x.min())}, {int(x.max())}]")
        return x.long()

    def conditioning(self, batch: int, frames: torch.Tensor | None,
                     actions: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Check the conditioning against the config; -> (frame features ``[B, h*w, U]`` or None,
        flattened actions ``[B, action_dim]`` or None)."""
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
            actions = actions.flatten(1).float()  # [B, action_dim]
        features = self.frame_encoder(frames) if frames is not None else None
        return features, actions

    # -----------------------------------------------------------------------------------------------
    # training

    def logits(self, previous: torch.Tensor, frame: torch.Tensor | None = None,
               actions: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for positions ``0..m`` given the codes before them: ``previous [B, m] -> [B, m+1, n_codes]``.

        ``m = L - 1`` in training (all but the last code); any shorter prefix in uncached sampling.
        """
        b, m = previous.shape
        start = self.start.expand(b, 1, -1)  # [B, 1, D]
        x = torch.cat([start, self.token_embedding(previous)], dim=1)  # [B, m+1, D]
        position = rearrange(self.position(), "t h w d -> (t h w) d")[: m + 1]  # [m+1, D]
        x = self.dropout(x + position)
        for block in self.blocks:
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                # keep only each block's input; recompute its activations in the backward pass
                x = torch.utils.checkpoint.checkpoint(block, x, frame, actions, use_reentrant=False)
            else:
                x = block(x, frame, actions)
        return self.head(apply_norm(self.norm, x, actions))  # [B, m+1, n_codes]

    def forward(self, x: torch.Tensor, frames: torch.Tensor | None = None,
                actions: torch.Tensor | None = None) -> dict:
        codes = self.to_codes(x)  # [B, t, h, w]
        frame, actions = self.conditioning(codes.shape[0], frames, actions)
        targets = codes.flatten(1)  # [B, L]
        logits = self.logits(targets[:, :-1], frame, actions)  # [B, L, n_codes]
        loss = F.cross_entropy(rearrange(logits, "b l k -> (b l) k"), targets.flatten())
        return {"loss": loss, "bits_per_dim": loss / math.log(2), "logits": logits.view(*codes.shape, self.n_codes)}

    def forward_batch(self, batch: dict) -> dict:
        """The training loop's entry point: ``dict(video, actions, ...)`` -> :meth:`forward`'s dict.

        Frame conditioning takes the first ``n_cond_frames`` frames of the video; action conditioning takes
        the first ``action_dim / A`` steps of ``batch["actions"] [B, T, A]``.
        """
        video = batch["video"]
        frames = video[:, :, : self.cfg.n_cond_frames] if self.cfg.frame_cond else None
        actions = None
        if self.cfg.action_dim > 0:
            actions = batch.get("actions")
            size = 0 if actions is None or actions.dim() != 3 else actions.shape[-1]
            if size == 0 or self.cfg.action_dim % size or actions.shape[1] < self.cfg.action_dim // size:
                raise ValueError(
                    f"prior.action_dim = {self.cfg.action_dim} needs per-step actions [B, T, A] with A dividing it "
                    f"and T >= action_dim / A, but the batch holds actions of shape "
                    f"{None if actions is None else list(actions.shape)}; check data.action_size and prior.action_dim"
                )
            actions = actions[:, : self.cfg.action_dim // size]
        return self(video, frames, actions)

    # -----------------------------------------------------------------------------------------------
    # sampling

    @torch.no_grad()
    def sample_codes(self, n: int, frames: torch.Tensor | None = None, actions: torch.Tensor | None = None,
                     temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None,
                     use_cache: bool = True, progress: bool = False) -> torch.Tensor:
        """Draw ``n`` code grids ``LongTensor [n, t, h, w]``, one code at a time in ``(t, h, w)`` order.

        With ``use_cache`` every step runs only the new position through the blocks, against a cache of
        the keys and values of the positions before it; without, every step re-runs the whole prefix.
        Both draw with ``torch.multinomial(..., generator=generator)`` and give the same codes.
        """
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
        # each step attends over a new prefix length; cuDNN's attention builds an execution plan for every new
        # shape (about 50 ms each, measured on an H200: most of the sampling time), the other backends do not
        with sdpa_kernel(SAMPLING_BACKENDS):
            was_training = self.training
            self.eval()
            try:
                device = self.start.device
                frames = None if frames is None else frames.to(device)
                actions = None if actions is None else actions.to(device)
                frame, actions = self.conditioning(n, frames, actions)
                codes = torch.zeros(n, self.length, dtype=torch.long, device=device)
                steps = tqdm(range(self.length), desc="sampling codes", disable=not progress, leave=False)
                if use_cache:
                    # one new token per step: matmuls far too small to split across CPU threads, and on a busy
                    # machine waiting for a second thread costs more than the work (20x measured on 2 cores)
                    threads = torch.get_num_threads()
                    torch.set_num_threads(1)
                    try:
                        self._sample_cached(codes, frame, actions, temperature, top_k, generator, steps)
                    finally:
                        torch.set_num_threads(threads)
                else:
                    for i in steps:
                        logits = self.logits(codes[:, :i], frame, actions)[:, -1]  # [n, n_codes], the whole prefix again
                        codes[:, i] = draw(logits, temperature, top_k, generator)
            finally:
                self.train(was_training)
            return codes.view(n, *self.latent_shape)

    def _sample_cached(self, codes, frame, actions, temperature, top_k, generator, steps) -> None:
        n, d = codes.shape[0], self.cfg.hidden
        shape = (n, self.cfg.heads, self.length, d // self.cfg.heads)
        dtype = self.start.dtype
        keys = [torch.empty(shape, dtype=dtype, device=codes.device) for _ in self.blocks]  # [n, heads, L, d] per layer
        values = [torch.empty(shape, dtype=dtype, device=codes.device) for _ in self.blocks]
        position = rearrange(self.position(), "t h w d -> (t h w) d")  # [L, D]
        # frame features projected once per block: [n, h*w, 4D], position i reads row i mod (h*w)
        frame_terms = [None if frame is None else block.mlp.fc_frame(frame) for block in self.blocks]
        grid = self.latent_shape[1] * self.latent_shape[2]
        x = self.start.expand(n, 1, d)  # [n, 1, D]: the input at position 0
        for i in steps:
            h = x + position[i]
            for layer, block in enumerate(self.blocks):
                term = None if frame is None else frame_terms[layer][:, i % grid, None]  # [n, 1, 4D]
                h = block.step(h, keys[layer], values[layer], i, term, actions)
            logits = self.head(apply_norm(self.norm, h, actions))[:, 0]  # [n, n_codes]
            codes[:, i] = draw(logits, temperature, top_k, generator)
            x = self.token_embedding(codes[:, i : i + 1])  # [n, 1, D]: the input at position i+1

    @torch.no_grad()
    def sample(self, n: int, frames: torch.Tensor | None = None, actions: torch.Tensor | None = None,
               temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None,
               use_cache: bool = True, progress: bool = False) -> torch.Tensor:
        """Sample ``n`` videos: float ``[n, C, T, H, W]`` in [0, 1] (codes from :meth:`sample_codes`, decoded
        by the VQ-VAE and shifted from [-0.5, 0.5]).

        ``frames [n, C, F, H, W]`` and ``actions [n, T', A]`` as in :meth:`forward`; ``temperature`` divides
        the logits, ``top_k`` keeps only the k most likely codes at each step; a seeded ``generator`` makes
        the result reproducible.
        """
        codes = self.sample_codes(n, frames, actions, temperature, top_k, generator, use_cache, progress)
        return (self.vqvae.decode(codes) + 0.5).clamp(0.0, 1.0)


def draw(logits: torch.Tensor, temperature: float, top_k: int | None,
         generator: torch.Generator | None) -> torch.Tensor:
    """One code per row of ``logits [n, n_codes]`` -> ``[n]``, by ``torch.multinomial`` on ``generator``."""
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # [n, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator)[:, 0].to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def check_prior_config(cfg: PriorConfig, vqvae: VQVAE) -> None:
    """Errors that name the config key, for a PriorConfig built outside :func:`videogen_lite.load_config`."""
    if not isinstance(vqvae, VQVAE):
        raise TypeError(f"vqvae must be a videogen_lite.VQVAE (e.g. videogen_lite.load(RUN_DIR)), "
                        f"got {type(vqvae).__name__}")
    if cfg.pos_embedding not in POS_EMBEDDINGS:
        raise ValueError(f"prior.pos_embedding = {cfg.pos_embedding!r}: expected one of {', '.join(POS_EMBEDDINGS)}")
    if cfg.hidden < 1 or cfg.layers < 1 or cfg.heads < 1 or cfg.hidden % cfg.heads:
        raise ValueError(f"prior.hidden = {cfg.hidden}, heads = {cfg.heads}, layers = {cfg.layers}: expected positive "
                         "integers with heads dividing hidden")
    if cfg.frame_cond:
        if cfg.resnet_depth not in (18, 34):
            raise ValueError(f"prior.resnet_depth = {cfg.resnet_depth}: expected 18 or 34")
        if cfg.resnet_units < 1:
            raise ValueError(f"prior.resnet_units = {cfg.resnet_units}: expected a positive integer")
        if not 1 <= cfg.n_cond_frames <= vqvae.cfg.sequence_length:
            raise ValueError(f"prior.n_cond_frames = {cfg.n_cond_frames}: expected 1 to the clip length "
                             f"{vqvae.cfg.sequence_length}")
    if cfg.action_dim < 0:
        raise ValueError(f"prior.action_dim = {cfg.action_dim}: expected 0 (no actions) or the flattened action size")
