"""Speed of the GPT prior on CPU: a training step, and sampling with and without the key/value cache.

    python benchmarks/prior.py [--threads 2] [--steps 3] [--full-uncached] [--frame-cond]
    python benchmarks/prior.py --device cuda --dtype bf16 [--batch 32]     # on a GPU: tokens/s and MFU

The shape of the paper's Moving MNIST prior (Table 6): latents 4x16x16 (L = 1,024 tokens), 512 codes,
hidden 384, 8 layers, 4 heads, dropout 0.1; batch 4. The VQ-VAE is untrained and narrow (n_hiddens 32):
it is not what is measured, but sampling includes its decode.

FLOPs of one training step, counting matrix multiplications only (forward + backward = 3x forward):

    6 * N * B * L                     N = matmul parameters of the blocks and the head (embeddings excluded)
  + 12 * layers * B * L^2 * hidden    attention scores q k^T and the weighted sum of v, full L x L
                                      (the causal mask's skipped half is counted too, as is customary)

Achieved GFLOP/s is that count over the measured time, against the machine's matmul peak measured
here with a 2048 x 2048 ``torch.mm`` (CPU: same threads; GPU: 8192 x 8192, in the dtype of the run). On a GPU
the benchmark also prints tokens/s and the model FLOPs utilisation (MFU: achieved over that measured peak).
Figures on a machine shared with other jobs are pessimistic.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import videogen_lite as vg
from videogen_lite.cli import DTYPES, matmul_peak_gflops
from videogen_lite.train import make_optimizer


def _timed(fn, device: str = "cpu") -> float:
    if device != "cpu":
        torch.cuda.synchronize()
    began = time.perf_counter()
    fn()
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - began


def build_prior(frame_cond: bool) -> vg.VideoGPT:
    cfg = vg.load_config("moving_mnist", [
        "vqvae.n_hiddens=32", "vqvae.res_hiddens=16", f"prior.frame_cond={str(frame_cond).lower()}",
    ])
    vqvae = vg.VQVAE(cfg.vqvae)
    return vg.VideoGPT(cfg.prior, vqvae=vqvae)


def step_flops(prior: vg.VideoGPT, batch: int) -> float:
    cfg = prior.cfg
    matmul_params = sum(p.numel() for name, p in prior.named_parameters()
                        if p.requires_grad and p.dim() == 2 and name.startswith(("blocks.", "head.")))
    tokens = batch * prior.length
    return 6 * matmul_params * tokens + 12 * cfg.layers * batch * prior.length**2 * cfg.hidden


@torch.no_grad()
def uncached_estimate(prior: vg.VideoGPT, n: int, points: int = 9) -> float:
    """Seconds for the recompute path's L steps, from timing the step at ``points`` prefix lengths
    (a forward pass over the prefix) and summing the interpolated cost over all L steps."""
    device = str(next(prior.parameters()).device)
    codes = torch.randint(0, prior.n_codes, (n, prior.length), device=device)
    lengths = [round(i * (prior.length - 1) / (points - 1)) for i in range(points)]
    cond = prior.condition(n, None, None)
    times = [_timed(lambda i=i: prior.decoder(prior.inputs(codes[:, :i], with_start=True), cond)[:, -1], device)
             for i in lengths]
    total = 0.0
    for (i0, t0), (i1, t1) in zip(zip(lengths, times), zip(lengths[1:], times[1:])):
        total += (t0 + t1) / 2 * (i1 - i0)  # trapezoid over the steps between two timed prefix lengths
    return total + (times[0] + times[-1]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                        help="fp32, or bf16 autocast (for GPUs with bf16 tensor cores)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (after one warm-up step)")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--full-uncached", action="store_true",
                        help="also time the whole recompute sampling path (about half an hour on 2 CPU cores)")
    parser.add_argument("--frame-cond", action="store_true", help="a frame-conditioned prior (ResNet-18)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA device is visible to torch {torch.__version__}")
    device, dtype = args.device, DTYPES[args.dtype]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    peak = matmul_peak_gflops(device, dtype)
    prior = build_prior(args.frame_cond).to(device)
    where = torch.cuda.get_device_name(device) if device != "cpu" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, {args.dtype}; prior: {prior.num_parameters():,} "
          f"trainable parameters, latents {prior.latent_shape} = {prior.length} tokens, hidden {prior.cfg.hidden}, "
          f"{prior.cfg.layers} layers, {prior.cfg.heads} heads, frame_cond={prior.cfg.frame_cond}")
    print(f"{args.dtype} matmul peak ({'2048' if device == 'cpu' else '8192'}^3 torch.mm): {peak:.1f} GFLOP/s")

    # training: forward + backward + optimizer step, on codes (the frozen VQ-VAE's encode is not timed)
    prior.train()
    optimizer, _ = make_optimizer(prior, prior.cfg.train)
    codes = torch.randint(0, prior.n_codes, (args.batch, *prior.latent_shape), device=device)
    frames = torch.rand(args.batch, 1, 1, 64, 64, device=device) - 0.5 if args.frame_cond else None
    autocast = torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype != torch.float32)

    def train_step() -> None:
        with autocast:
            loss = prior(codes, frames=frames)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    train_step()  # warm-up
    times = [_timed(train_step, device) for _ in range(args.steps)]
    per_step = statistics.median(times)
    flops = step_flops(prior, args.batch)
    target = "  [target <= 3.5 s]" if device == "cpu" and args.batch == 4 else ""
    print(f"training step (batch {args.batch}): {per_step:.3f} s median of {args.steps} "
          f"({', '.join(f'{t:.3f}' for t in times)}); {flops / 1e9:.0f} GFLOP -> {flops / per_step / 1e9:.1f} GFLOP/s "
          f"= {100 * flops / per_step / 1e9 / peak:.0f}% of peak{target}")
    if device != "cpu":
        print(f"throughput: {args.batch * prior.length / per_step:,.0f} tokens/s; MFU {100 * flops / per_step / 1e9 / peak:.1f}% "
              f"of the measured {args.dtype} matmul peak; peak memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")

    # sampling, decode included
    prior.eval()
    sample_frames = torch.rand(args.samples, 1, 1, 64, 64, device=device) - 0.5 if args.frame_cond else None
    with autocast:
        warm = _timed(lambda: prior.sample(1, frames=None if sample_frames is None else sample_frames[:1],
                                           generator=torch.Generator(device).manual_seed(0)), device)
        print(f"warm-up: sample 1 video with the KV cache: {warm:.2f} s", flush=True)
        cached = _timed(lambda: prior.sample(args.samples, frames=sample_frames,
                                             generator=torch.Generator(device).manual_seed(0)), device)
        target = "  [target <= 3 s]" if device == "cpu" and args.samples == 4 else ""
        print(f"sample {args.samples} videos with the KV cache: {cached:.2f} s{target}")
        estimate = uncached_estimate(prior, args.samples)
        print(f"sample {args.samples} videos without the cache, estimated from 9 prefix lengths: {estimate:.1f} s -> "
              f"cache speed-up about {estimate / cached:.1f}x")
        if args.full_uncached:
            uncached = _timed(lambda: prior.sample(args.samples, frames=sample_frames, use_cache=False,
                                                   generator=torch.Generator(device).manual_seed(0)), device)
            print(f"sample {args.samples} videos without the cache (whole prefix every step): {uncached:.1f} s -> "
                  f"cache speed-up {uncached / cached:.1f}x  [target >= 5x]")


if __name__ == "__main__":
    main()
