"""The VQ-VAE of VideoGen: 3D-conv encoder, attention residual blocks, EMA codebook, 3D-transposed-conv decoder.

    x [B, C, T, H, W] in [-0.5, 0.5]
      -> Downsample (strided 'SAME' 3D convs)          [B, n_hiddens, t, h, w]
      -> attention residual blocks, LayerNorm, ReLU
      -> 1x1x1 conv                                     [B, embedding_dim, t, h, w]  (z)
      -> Codebook (nearest code, EMA update)            codes [B, t, h, w]
      -> 1x1x1 conv, attention residual blocks, LayerNorm, ReLU
      -> Upsample (transposed 3D convs)                 x_hat [B, C, T, H, W]

The loss is the normalized MSE (MSE divided by the data variance, a constant of the dataset) plus the
commitment loss; the codebook itself learns by EMA, not by gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .attention import AxialAttention, SpatioTemporalEmbedding
from .config import VQVAEConfig, from_dict, to_dict, validate_vqvae
from .conv import Downsample, SamePadConv3d, Upsample
from .metrics import normalized_mse
from .vq import Codebook, FiniteScalarQuantizer


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of ``[B, C, T, H, W]`` (each space-time position on its own)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(super().forward(rearrange(x, "b c t h w -> b t h w c")), "b t h w c -> b c t h w")


class AttentionResidualBlock(nn.Module):
    """Figure 3 of the paper: ``x + f(x)`` with ``f`` = LN, ReLU, 3x3x3 conv (n_hiddens -> res_hiddens),
    LN, ReLU, 1x1x1 conv (res_hiddens -> n_hiddens), then, with attention, LN, ReLU and axial attention
    (plus the shared position embedding). ``[B, n_hiddens, t, h, w] -> same``."""

    def __init__(self, n_hiddens: int, res_hiddens: int, attention: bool, heads: int):
        super().__init__()
        self.conv = nn.Sequential(
            ChannelLayerNorm(n_hiddens), nn.ReLU(), SamePadConv3d(n_hiddens, res_hiddens, 3, bias=False),
            ChannelLayerNorm(res_hiddens), nn.ReLU(), SamePadConv3d(res_hiddens, n_hiddens, 1, bias=False),
        )
        self.attention = None
        if attention:
            self.norm = nn.LayerNorm(n_hiddens)
            self.attention = AxialAttention(n_hiddens, heads)

    def forward(self, x: torch.Tensor, position: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv(x)
        if self.attention is not None:
            h = rearrange(h, "b c t h w -> b t h w c")
            h = F.relu(self.norm(h))
            if position is not None:
                h = h + position  # [t, h, w, c] broadcast over the batch
            h = rearrange(self.attention(h), "b t h w c -> b c t h w")
        return x + h


class ResidualStack(nn.Module):
    """``n_res_layers`` attention residual blocks, then LayerNorm and ReLU."""

    def __init__(self, n_hiddens: int, res_hiddens: int, n_res_layers: int, attention: bool, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            AttentionResidualBlock(n_hiddens, res_hiddens, attention, heads) for _ in range(n_res_layers)
        )
        self.norm = ChannelLayerNorm(n_hiddens)

    def forward(self, x: torch.Tensor, position: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, position)
        return F.relu(self.norm(x))


class Encoder(nn.Module):
    """``[B, C, T, H, W] -> [B, n_hiddens, T/dt, H/dh, W/dw]``."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.downsample = Downsample(cfg.channels, cfg.n_hiddens, cfg.downsample, kernel_size=3)
        self.res_stack = ResidualStack(cfg.n_hiddens, cfg.res_hiddens, cfg.n_res_layers, cfg.attention,
                                       cfg.attention_heads)

    def forward(self, x: torch.Tensor, position: torch.Tensor | None = None) -> torch.Tensor:
        return self.res_stack(self.downsample(x), position)


class Decoder(nn.Module):
    """``[B, n_hiddens, t, h, w] -> [B, C, t*dt, h*dh, w*dw]``."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.res_stack = ResidualStack(cfg.n_hiddens, cfg.res_hiddens, cfg.n_res_layers, cfg.attention,
                                       cfg.attention_heads)
        self.upsample = Upsample(cfg.n_hiddens, cfg.channels, cfg.downsample, kernel_size=4)

    def forward(self, x: torch.Tensor, position: torch.Tensor | None = None) -> torch.Tensor:
        return self.upsample(self.res_stack(x, position))


class VQVAE(nn.Module):
    """The VideoGen VQ-VAE, built from ``cfg.vqvae`` (see :class:`videogen_lite.config.VQVAEConfig`).

    ``forward(x)`` takes ``x`` float ``[B, C, T, H, W]`` in [-0.5, 0.5] and returns a dict:
    ``recon`` ``[B, C, T, H, W]``, ``loss`` (nmse + commitment_loss), ``nmse``, ``commitment_loss``,
    ``perplexity``, ``usage`` (fraction of codes used in the batch), ``codes`` ``[B, t, h, w]``.
    """

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        if cfg.channels is None or cfg.sequence_length is None or cfg.resolution is None:
            raise ValueError(
                "VQVAEConfig needs channels, sequence_length and resolution; load_config() fills them from "
                "cfg.data, or set them yourself"
            )
        validate_vqvae(cfg)
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        if cfg.quantizer == "fsq":  # one latent channel per FSQ level: embedding_dim is not used
            self.codebook = FiniteScalarQuantizer(cfg.fsq_levels)
        else:
            self.codebook = Codebook(cfg.n_codes, cfg.embedding_dim, decay=cfg.ema_decay, beta=cfg.beta)
        self.pre_vq = SamePadConv3d(cfg.n_hiddens, self.codebook.embedding_dim, 1)
        self.post_vq = SamePadConv3d(self.codebook.embedding_dim, cfg.n_hiddens, 1)
        self.decoder = Decoder(cfg)
        # shared by every axial attention layer of the encoder and the decoder
        self.position = SpatioTemporalEmbedding(cfg.latent_shape, cfg.n_hiddens) if cfg.attention else None
        variance = float("nan") if cfg.data_variance is None else cfg.data_variance
        self.register_buffer("data_variance", torch.tensor(variance))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.cfg.latent_shape

    def compile_modules(self) -> None:
        """``torch.compile`` the encoder and decoder in place (``train.compile``). The codebook stays eager:
        its initialisation and dead-code restarts depend on the data, which would recompile every step."""
        self.encoder.compile()
        self.decoder.compile()

    def config_dict(self) -> dict:
        return {"vqvae": to_dict(self.cfg)}

    @classmethod
    def from_config_dict(cls, values: dict) -> VQVAE:
        return cls(from_dict(values["vqvae"], VQVAEConfig))

    def forward_batch(self, batch: dict) -> dict:
        """The training loop's entry point: a dataset batch ``dict(video, ...)`` -> :meth:`forward`'s dict,
        plus the codebook's EMA usage (fraction of live codes)."""
        out = self(batch["video"])
        out["codebook_usage"] = torch.tensor(self.codebook.codebook_usage())
        return out

    def set_data_variance(self, variance: float) -> None:
        """Declare the dataset's pixel variance, the denominator of the normalized MSE."""
        if not variance > 0:
            raise ValueError(f"data variance must be positive, got {variance}")
        self.data_variance.fill_(float(variance))
        self.cfg.data_variance = float(variance)

    def check_input(self, x: torch.Tensor) -> None:
        c = self.cfg
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"expected a float tensor [B, C, T, H, W], got {type(x).__name__} "
                            f"{getattr(x, 'dtype', '')}")
        if x.dim() != 5:
            raise ValueError(f"expected a video batch [B, C, T, H, W] (5 dims), got shape {tuple(x.shape)}")
        if x.shape[1] != c.channels:
            raise ValueError(f"expected {c.channels} channel(s) in x [B, C, T, H, W], got shape {tuple(x.shape)}")
        size = tuple(x.shape[2:])
        if c.attention and size != c.input_shape:
            raise ValueError(f"this VQ-VAE (with attention) takes T x H x W = {c.input_shape}, got {size}")
        for axis, n, factor in zip("THW", size, c.downsample):
            if n % factor:
                raise ValueError(f"{axis} = {n} is not divisible by the downsampling factor {factor} "
                                 f"(downsample = {tuple(c.downsample)}); got x of shape {tuple(x.shape)}")

    def _position(self) -> torch.Tensor | None:
        return None if self.position is None else self.position()

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output ``z``: ``[B, C, T, H, W] -> [B, embedding_dim, t, h, w]``."""
        self.check_input(x)
        return self.pre_vq(self.encoder(x, self._position()))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes of a video: ``[B, C, T, H, W] -> LongTensor [B, t, h, w]`` (never changes the codebook).

        Always in fp32, with autocast off: the codes are the prior's targets, and a bf16 encoder moves many
        latents to another nearest code, so training under ``train.bf16`` would otherwise learn other codes
        than evaluation and sampling use."""
        with torch.autocast(x.device.type, enabled=False):
            latents = self.encode_latents(x.float())
            return self.codebook.nearest(rearrange(latents, "b d t h w -> (b t h w) d")).view(
                x.shape[0], *[n // f for n, f in zip(x.shape[2:], self.cfg.downsample)]
            )

    def decode_embeddings(self, e: torch.Tensor) -> torch.Tensor:
        """Quantized vectors ``[B, embedding_dim, t, h, w] -> video [B, C, T, H, W]``."""
        return self.decoder(self.post_vq(e), self._position())

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``LongTensor [B, t, h, w]`` -> video ``[B, C, T, H, W]`` (roughly in [-0.5, 0.5])."""
        if codes.dim() != 4 or codes.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"expected integer codes [B, t, h, w], got {codes.dtype} of shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.cfg.n_codes):
            raise ValueError(f"codes must lie in [0, {self.cfg.n_codes}), got range "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return self.decode_embeddings(self.codebook.lookup(codes.long()))

    def normalized_mse(self, recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if torch.isnan(self.data_variance):
            raise ValueError(
                "the data variance (denominator of the normalized MSE) is unknown: set cfg.vqvae.data_variance "
                "or data.variance in the config, or call vq.set_data_variance(videogen_lite.metrics.data_variance(ds))"
            )
        return normalized_mse(recon, x, self.data_variance)

    def forward(self, x: torch.Tensor) -> dict:
        z = self.encode_latents(x)
        vq = self.codebook(z)
        recon = self.decode_embeddings(vq["embeddings"])
        nmse = self.normalized_mse(recon, x)
        return dict(
            recon=recon,
            loss=nmse + vq["commitment_loss"],
            nmse=nmse,
            commitment_loss=vq["commitment_loss"],
            perplexity=vq["perplexity"],
            usage=vq["usage"],
            codes=vq["codes"],
        )
