"""What a config costs before you run it: parameters, FLOPs and memory of one training step, computed on
PyTorch's ``meta`` device (shapes only, no memory, no arithmetic), so the paper's full models can be sized
on a laptop.

- FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` over a real forward and backward pass.
- Activation memory is the total size of the tensors autograd saves for the backward pass, counted with
  ``saved_tensors_hooks``. It is an estimate of what a GPU would hold at the peak of a step: it leaves out
  temporary buffers and allocator fragmentation, and counts a tensor saved twice twice. On the meta device
  ``scaled_dot_product_attention`` takes PyTorch's math path, which keeps the ``[B, heads, L, L]``
  attention matrices for the backward pass; the fused kernels a GPU runs (flash, memory-efficient) keep
  none, so by default (``fused_attention=True``) those matrices are left out of the prior's count.
- Training-state memory is parameters + gradients + AdamW's two moments, 16 bytes per trained parameter
  in fp32.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .config import Config
from .gpt import VideoGPT
from .vqvae import VQVAE


@contextmanager
def saved_bytes(skip=None):
    """Count the bytes of every tensor autograd saves for backward inside the block: ``with saved_bytes() as n``.
    ``skip(tensor) -> bool`` leaves tensors out of the count."""
    total = [0]

    def pack(t: torch.Tensor):
        if skip is None or not skip(t):
            total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


def _vqvae_step(vq: VQVAE, batch: int, dtype: torch.dtype) -> torch.Tensor:
    c = vq.cfg
    x = torch.zeros(batch, c.channels, *c.input_shape, device="meta", dtype=dtype)
    z = vq.encode_latents(x)
    recon = vq.decode_embeddings(z)  # the codebook's nearest-code lookup is a few matmuls; left out
    return F.mse_loss(recon.float(), x.float())


def _prior_step(prior: VideoGPT, batch: int, dtype: torch.dtype) -> torch.Tensor:
    cfg, vq = prior.cfg, prior.vqvae.cfg
    codes = torch.zeros(batch, prior.length, dtype=torch.long, device="meta")
    frames = (torch.zeros(batch, vq.channels, cfg.n_cond_frames, vq.resolution, vq.resolution, device="meta",
                          dtype=dtype) if cfg.frame_cond else None)
    actions = torch.zeros(batch, 1, cfg.action_dim, device="meta", dtype=dtype) if cfg.action_dim else None
    cond = prior.condition(batch, frames, actions)
    if cond.actions is not None:
        cond.actions = cond.actions.to(dtype)
    logits = prior.decoder(prior.inputs(codes[:, :-1], with_start=True), cond)
    return F.cross_entropy(logits.float().flatten(0, 1), codes.flatten())


def step_cost(cfg: Config, stage: str, batch: int = 1, dtype: torch.dtype = torch.float32,
              activation_checkpointing: bool = False, fused_attention: bool = True) -> dict:
    """Parameters, training FLOPs and memory of one step of ``stage`` ('vqvae' or 'prior') on ``batch`` clips.

    ``dtype=torch.bfloat16`` sizes the step with weights and activations in bf16 (what bf16 autocast keeps
    for most matmul and conv outputs; autocast itself does not act on the meta device).

    For the prior, the frozen VQ-VAE's encoding of the clips (forward only) is counted in ``flops`` too.
    ``fused_attention=False`` counts the ``[B, heads, L, L]`` attention matrices of PyTorch's math attention,
    which a GPU's fused attention kernels never store.
    Returns ``dict(parameters, flops, activation_bytes, state_bytes)``.
    """
    if stage not in ("vqvae", "prior"):
        raise ValueError(f"stage must be 'vqvae' or 'prior', got {stage!r}")
    with torch.device("meta"):
        vq = VQVAE(cfg.vqvae)
    vq.to(dtype).train()
    if stage == "vqvae":
        model, run = vq, _vqvae_step
        encode_flops = 0
    else:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            vq.encode_latents(torch.zeros(batch, cfg.vqvae.channels, *cfg.vqvae.input_shape, device="meta",
                                          dtype=dtype))
        encode_flops = counter.get_total_flops()
        with torch.device("meta"):
            model = VideoGPT(cfg.prior, vqvae=vq)
        model.to(dtype).train()
        model.activation_checkpointing = activation_checkpointing
        run = _prior_step
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    skip = None
    if stage == "prior" and fused_attention:
        length = model.length
        skip = lambda t: t.dim() >= 2 and tuple(t.shape[-2:]) == (length, length)  # noqa: E731
    with FlopCounterMode(display=False) as counter, saved_bytes(skip) as saved:
        loss = run(model, batch, dtype)
        loss.backward()
    return dict(parameters=trained, flops=counter.get_total_flops() + encode_flops,
                activation_bytes=saved[0], state_bytes=16 * trained)
