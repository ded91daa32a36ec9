"""Vector quantization with an exponential-moving-average (EMA) codebook.

The encoder's latents ``z`` (``[B, D, t, h, w]``) are snapped to their nearest of ``K`` code vectors.
Instead of a codebook loss, the codes follow the latents assigned to them by an EMA of counts ``N_k`` and
sums ``m_k`` (van den Oord et al., 2017, Appendix A.1):

    N_k <- decay * N_k + (1 - decay) * n_k            n_k = latents assigned to code k in this batch
    m_k <- decay * m_k + (1 - decay) * sum of them
    e_k  = m_k / N~_k                                  N~_k: N_k Laplace-smoothed so that no count is 0

Two tricks from Jukebox (Dhariwal et al., 2020) keep every code alive: the codebook starts as a copy of
encoder latents from the first batch, and a code whose EMA count falls below ``restart_threshold`` is
restarted at a random current latent. Gradients flow to the encoder straight through the quantizer, and
the commitment loss ``beta * ||z - sg[e]||^2`` keeps the encoder close to its codes.

Under ``torch.distributed`` the counts and sums are all-reduced and the latents used for initialisation
and restarts are gathered from every rank, so all ranks hold the same codebook. Nothing changes in
eval mode or when ``frozen`` is set (as inside a prior).
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(x)
    return x


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``[N, D]`` rows from every rank in rank order (all ranks must pass the same N)."""
    if not _distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def random_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` rows of ``x`` drawn at random (without replacement while there are enough), identical on all ranks."""
    if x.shape[0] >= n:
        index = torch.randperm(x.shape[0], device=x.device)[:n]
    else:
        index = torch.randint(0, x.shape[0], (n,), device=x.device)
    rows = x[index]
    if _distributed():
        dist.broadcast(rows, src=0)
    return rows


def perplexity(codes: torch.Tensor, n_codes: int) -> torch.Tensor:
    """``exp(entropy)`` of the code histogram: 1 if one code is used, ``n_codes`` if all are used equally."""
    return histogram_perplexity(torch.bincount(codes.flatten(), minlength=n_codes).float())


def histogram_perplexity(counts: torch.Tensor) -> torch.Tensor:
    """``exp(entropy)`` of code counts ``[K]``."""
    probs = counts / counts.sum()
    return torch.exp(-(probs * torch.log(probs + 1e-10)).sum())


class Codebook(nn.Module):
    """EMA vector quantizer: ``z [B, D, t, h, w] -> dict(embeddings [B, D, t, h, w], codes [B, t, h, w], ...)``."""

    def __init__(self, n_codes: int, embedding_dim: int, decay: float = 0.99, beta: float = 0.25,
                 restart_threshold: float = 1.0, eps: float = 1e-5):
        super().__init__()
        self.n_codes, self.embedding_dim = n_codes, embedding_dim
        self.decay, self.beta, self.restart_threshold, self.eps = decay, beta, restart_threshold, eps
        self.frozen = False
        self.alive_fraction = 1.0  # codes at or above the restart threshold at the last update, before restarts
        self.register_buffer("embeddings", torch.randn(n_codes, embedding_dim))  # e_k
        self.register_buffer("cluster_size", torch.zeros(n_codes))  # N_k
        self.register_buffer("embedding_sum", self.embeddings.clone())  # m_k
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def updating(self) -> bool:
        """Whether a forward pass changes the codebook: in training mode, unless frozen."""
        return self.training and not self.frozen

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of ``flat [N, D]`` -> ``[N]``."""
        distances = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.embeddings.t()
            + self.embeddings.pow(2).sum(1)[None, :]
        )  # [N, K]
        return distances.argmin(1)

    @torch.no_grad()
    def initialize(self, flat: torch.Tensor) -> None:
        """Copy ``K`` latents (gathered from all ranks) into the codebook."""
        rows = random_rows(gather_rows(flat), self.n_codes)
        self.embeddings.copy_(rows)
        self.embedding_sum.copy_(rows)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """One EMA step from latents ``flat [N, D]`` and their codes ``[N]``; returns the code counts ``[K]``
        of the whole global batch (all-reduced over processes)."""
        onehot = F.one_hot(codes, self.n_codes).type(flat.dtype)  # [N, K]
        counts = all_reduce_sum(onehot.sum(0))  # n_k
        sums = all_reduce_sum(onehot.t() @ flat)  # [K, D]
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embedding_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.n_codes * self.eps) * total
        self.embeddings.copy_(self.embedding_sum / smoothed[:, None])
        return counts

    @torch.no_grad()
    def restart_dead_codes(self, flat: torch.Tensor) -> int:
        """Move every code whose EMA count is below the threshold onto a random current latent."""
        dead = self.cluster_size < self.restart_threshold
        n_dead = int(dead.sum())
        self.alive_fraction = 1.0 - n_dead / self.n_codes
        if n_dead:
            rows = random_rows(gather_rows(flat), n_dead)
            self.embeddings[dead] = rows
            self.embedding_sum[dead] = rows
            self.cluster_size[dead] = 1.0
        return n_dead

    def codebook_usage(self) -> float:
        """Fraction of codes whose EMA count was at least the restart threshold at the last update
        (measured before dead codes were restarted): the share of the codebook the data really uses."""
        return self.alive_fraction

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, t, h, w]`` -> their vectors ``[B, D, t, h, w]``."""
        return rearrange(F.embedding(codes, self.embeddings), "b t h w d -> b d t h w")

    def forward(self, z: torch.Tensor) -> dict:
        # the codebook works in fp32 whatever autocast does around it: distances, EMA statistics and restarts
        # are kept exact, and the codebook's buffers never mix dtypes
        with torch.autocast(z.device.type, enabled=False):
            return self._quantize(z.float())

    def _quantize(self, z: torch.Tensor) -> dict:
        b, d, t, h, w = z.shape
        flat = rearrange(z, "b d t h w -> (b t h w) d")
        if self.updating and not bool(self.initialized):
            self.initialize(flat.detach())
        codes = self.nearest(flat.detach())
        restarted = 0
        if self.updating:  # the histogram of the global batch (all processes), as the EMA sees it
            counts = self.ema_update(flat.detach(), codes)
            restarted = self.restart_dead_codes(flat.detach())
        else:
            counts = torch.bincount(codes, minlength=self.n_codes).float()
        quantized = rearrange(F.embedding(codes, self.embeddings), "(b t h w) d -> b d t h w", b=b, t=t, h=h, w=w)
        commitment_loss = self.beta * F.mse_loss(z, quantized.detach())
        quantized = z + (quantized - z).detach()  # straight-through: forward e, backward identity
        codes = codes.view(b, t, h, w)
        return dict(
            embeddings=quantized,
            codes=codes,
            commitment_loss=commitment_loss,
            perplexity=histogram_perplexity(counts),
            usage=(counts > 0).float().mean(),
            restarted=restarted,
        )


class FiniteScalarQuantizer(nn.Module):
    """Finite scalar quantization (FSQ, Mentzer et al., 2023): no codebook to learn, none to collapse.

    Each of the ``d = len(levels)`` latent channels is squashed into a bounded range and rounded to one of
    ``levels[i]`` evenly spaced values; a code is the tuple of the ``d`` integers, numbered in mixed radix, so
    there are ``prod(levels)`` codes (``[8, 5, 5, 5]``: 1,000). Gradients pass the rounding straight through;
    there is no commitment loss, no EMA and nothing to restart. ``z [B, d, t, h, w] -> dict`` like
    :class:`Codebook`'s, so the VQ-VAE and the prior use either.
    """

    def __init__(self, levels: tuple[int, ...]):
        super().__init__()
        if len(levels) < 1 or any(level < 2 for level in levels):
            raise ValueError(f"FSQ levels must be integers >= 2 per channel, got {list(levels)}")
        self.levels = tuple(int(level) for level in levels)
        self.n_codes, self.embedding_dim = math.prod(self.levels), len(self.levels)
        self.frozen = False  # nothing to freeze; kept for the prior, which sets it
        self.register_buffer("_levels", torch.tensor(self.levels, dtype=torch.float32), persistent=False)
        radix = torch.cumprod(torch.tensor((1, *self.levels[:-1])), 0)
        self.register_buffer("_radix", radix, persistent=False)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """``[..., d]`` -> values in ``(-(L-1)/2, (L-1)/2)`` per channel, shifted by half a step for even ``L``
        so that rounding gives exactly ``L`` integers."""
        half = (self._levels - 1) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def quantize(self, flat: torch.Tensor) -> torch.Tensor:
        """``[N, d]`` -> the nearest grid values, rescaled to [-1, 1] (straight-through in the backward pass)."""
        bounded = self.bound(flat)
        rounded = bounded + (bounded.round() - bounded).detach()
        return rounded / (self._levels // 2)

    def codes_of(self, values: torch.Tensor) -> torch.Tensor:
        """Grid values in [-1, 1] ``[N, d]`` -> code numbers ``[N]``."""
        digits = (values * (self._levels // 2) + self._levels // 2).round().long()
        return (digits * self._radix).sum(-1)

    def values_of(self, codes: torch.Tensor) -> torch.Tensor:
        """Code numbers ``[...]`` -> grid values in [-1, 1] ``[..., d]``."""
        digits = (codes[..., None] // self._radix) % self._levels.long()
        return (digits - self._levels.long() // 2).float() / (self._levels // 2)

    @property
    def embeddings(self) -> torch.Tensor:
        """Every code's vector, ``[n_codes, d]`` (an implicit, fixed codebook)."""
        return self.values_of(torch.arange(self.n_codes, device=self._levels.device))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        return self.codes_of(self.quantize(flat.float()))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return rearrange(self.values_of(codes), "b t h w d -> b d t h w")

    def codebook_usage(self) -> float:
        """FSQ has no dead codes to restart: every code is reachable by construction."""
        return 1.0

    def forward(self, z: torch.Tensor) -> dict:
        with torch.autocast(z.device.type, enabled=False):
            b, d, t, h, w = z.shape
            flat = rearrange(z.float(), "b d t h w -> (b t h w) d")
            values = self.quantize(flat)
            codes = self.codes_of(values.detach())
            counts = torch.bincount(codes, minlength=self.n_codes).float()
            return dict(
                embeddings=rearrange(values, "(b t h w) d -> b d t h w", b=b, t=t, h=h, w=w),
                codes=codes.view(b, t, h, w),
                commitment_loss=torch.zeros((), device=z.device),
                perplexity=histogram_perplexity(counts),
                usage=(counts > 0).float().mean(),
                restarted=0,
            )
