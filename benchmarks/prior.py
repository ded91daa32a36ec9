"""Speed of the GPT prior on CPU: a training step, and sampling with and without the key/value cache.

    python benchmarks/prior.py [--threads 2] [--steps 3] [--full-uncached] [--frame-cond]
    python benchmarks/prior.py --device cuda --dtype bf16 [--batch 32]     # on a GPU: tokens/s and MFU
    python benchmarks/prior.py --samples 4 32 --weights fp32 bf16          # the opt-in bf16 sampling path

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

Sampling ``n`` videos is ``L`` token steps. Step ``i`` (attending over ``p = i + 1`` positions) must read every
weight matrix once and each layer's cached keys and values of all ``n`` samples, and multiply:

    bytes_i = 4 * N  +  layers * 2 * n * p * hidden * 4       weights + the cache read (fp32)
    flops_i = 2 * n * N  +  layers * 4 * n * p * hidden        the matmuls + scores and weighted values

Its floor is ``max(bytes_i / bandwidth, flops_i / peak)`` with the bandwidth measured here (a matrix-vector
product over 256 MiB, ``videogen_lite.cli.memory_bandwidth_gbs``); the benchmark prints the sum over the ``L``
steps beside the measured time of ``sample_codes`` (the VQ-VAE's decode is timed apart) and the % reached.
``--weights fp32 bf16`` also samples with ``sample_codes(..., weights="bf16")`` (a bfloat16 copy of the GPT:
2 bytes per weight and cached value, floors counted so, its compute floor at the bf16 matmul peak) and prints
how much the rounding moves the held-out bits/dim of the shipped ``mnist_prior_lite`` (64 test clips).
``--kernels`` also prints the weight-streaming rate of one token step's matrix products with ``F.linear`` and
with the weights prepacked by oneDNN and by MKL (``gpt.packing_library`` says which one sampling uses here),
and the rate at which one query reads a layer's fp32 cache with each of ``gpt.attend_to_cache``'s CPU kernels
(``fused``: ``F.scaled_dot_product_attention``; ``gather``: keys @ q with an ``embedding_bag`` weighted sum of
the values; ``gpt.cache_kernels`` says which one this CPU samples with), with the two matrix products
q @ keys^T, probs @ values, and with a plain sum over the same bytes. Figures on a machine shared with other
jobs are pessimistic.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import videogen_lite as vg
from videogen_lite import gpt as gpt_module
from videogen_lite.cli import DTYPES, matmul_peak_gflops, memory_bandwidth_gbs
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


def sampling_floor(prior: vg.VideoGPT, n: int, peak_gflops: float, bandwidth_gbs: float, element_bytes: int = 4) -> dict:
    """The traffic, compute and roofline floors (seconds) of ``prior.sample_codes(n)``'s ``L`` token steps,
    with ``element_bytes`` per weight and cached value (4: fp32, 2: bf16)."""
    cfg = prior.cfg
    matmul_params = sum(m.weight.numel() for m in prior.modules() if isinstance(m, gpt_module.Linear))
    traffic = compute = roofline = 0.0
    for p in range(1, prior.length + 1):
        step_bytes = element_bytes * (matmul_params + cfg.layers * 2 * n * p * cfg.hidden)
        step_flops = 2 * n * matmul_params + cfg.layers * 4 * n * p * cfg.hidden
        t_bytes, t_flops = step_bytes / bandwidth_gbs / 1e9, step_flops / peak_gflops / 1e9
        traffic, compute, roofline = traffic + t_bytes, compute + t_flops, roofline + max(t_bytes, t_flops)
    return {"traffic": traffic, "compute": compute, "roofline": roofline}


def kernel_rates(prior: vg.VideoGPT, n: int) -> dict[str, float]:
    """GB/s of weights streamed by one token step's matrix products over ``n`` rows: ``F.linear``, and the
    weights prepacked by each library this build can pack with (``gpt.packing_library``)."""
    linears = [m for m in prior.modules() if isinstance(m, gpt_module.Linear)]
    weight_bytes = sum(m.weight.numel() * 4 for m in linears)
    inputs = [torch.randn(n, m.in_features) for m in linears]

    def rate(fn) -> float:
        fn()
        return weight_bytes / min(_timed(fn) for _ in range(5)) / 1e9

    rates = {"F.linear": rate(lambda: [torch.nn.functional.linear(x, m.weight, m.bias) for x, m in zip(inputs, linears)])}
    if not gpt_module.can_pack(linears[0].weight):
        return rates
    saved = gpt_module.PACKING_LIBRARY
    try:
        for library in ("onednn", "mkl"):
            gpt_module.PACKING_LIBRARY = library
            if gpt_module.packing_library() != library:
                continue  # no MKL in this build
            with gpt_module.packed_linears(prior, n):
                rates[f"prepacked ({library})"] = rate(lambda: [m(x) for x, m in zip(inputs, linears)])
    finally:
        gpt_module.PACKING_LIBRARY = saved
    return rates


@torch.no_grad()
def attention_rates(prior: vg.VideoGPT, n: int, positions: int | None = None) -> dict[str, float]:
    """GB/s of one layer's fp32 keys and values read by a single query of ``n`` samples over ``positions`` cached
    positions (the whole prior by default): ``gpt.attend_to_cache`` with each of its CPU kernels (``fused``:
    ``F.scaled_dot_product_attention``; ``gather``: keys @ q with an embedding_bag weighted sum of the values),
    the two matrix products q @ keys^T, probs @ values, and a plain sum over the same cache, the streaming rate
    to compare with. Medians over calls that cycle through the layers; with few samples a layer's cache is small
    enough that part of it may still be in the last-level cache."""
    cfg = prior.cfg
    d, end = cfg.hidden // cfg.heads, positions or prior.length
    cache = gpt_module.KVCache(cfg.layers, n, cfg.heads, prior.length, d, torch.float32, torch.device("cpu"))
    cache.keys.normal_()
    cache.values.normal_()
    q = torch.randn(n, cfg.heads, 1, d)

    def with_kernels(kernels: str):
        def attend(i: int) -> torch.Tensor:
            saved, gpt_module.CACHE_KERNELS = gpt_module.CACHE_KERNELS, kernels
            try:
                return gpt_module.attend_to_cache(q, cache, i, end)
            finally:
                gpt_module.CACHE_KERNELS = saved
        return attend

    def matmuls(i: int) -> torch.Tensor:
        scores = torch.matmul(q * d**-0.5, cache.keys[i, :, :, :end].transpose(-1, -2))  # [n, heads, 1, end]
        return torch.matmul(scores.softmax(-1), cache.values[i, :, :, :end])

    def plain_sum(i: int) -> torch.Tensor:
        return cache.keys[i, :, :, :end].sum() + cache.values[i, :, :, :end].sum()

    reference = matmuls(0)
    if not all(torch.allclose(with_kernels(k)(0), reference, atol=1e-5) for k in ("fused", "gather")):
        raise AssertionError("the ways of attending over the cache disagree")
    layer_bytes = 2 * n * cfg.heads * end * d * 4
    rates = {}
    for name, fn in (("fused (scaled_dot_product_attention)", with_kernels("fused")),
                     ("gather (keys @ q, embedding_bag)", with_kernels("gather")),
                     ("q @ keys^T, probs @ values", matmuls), ("plain sum", plain_sum)):
        fn(0)
        # each call reads the next layer's cache, as a token step does
        seconds = statistics.median(_timed(lambda i=i, fn=fn: fn(i % cfg.layers)) for i in range(3 * cfg.layers))
        rates[name] = layer_bytes / seconds / 1e9
    return rates


@torch.no_grad()
def held_out_bits_per_dim(weights: str, clips: int = 64) -> float:
    """Bits/dim of the shipped ``mnist_prior_lite`` on the first ``clips`` held-out Moving MNIST clips, with
    the prior in ``weights`` precision (``VideoGPT.with_weights``)."""
    prior = vg.pretrained("mnist_prior_lite").with_weights(weights)
    test = vg.data.MovingMNIST("test")  # 16 frames of 64 x 64, two digits: the data it was trained on
    total = 0.0
    for start in range(0, clips, 16):
        video = torch.stack([test[i]["video"] for i in range(start, min(clips, start + 16))])
        frames = video[:, :, : prior.cfg.n_cond_frames] if prior.cfg.frame_cond else None
        total += float(prior(video, frames=frames)["bits_per_dim"]) * video.shape[0]
    return total / clips


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
    parser.add_argument("--samples", type=int, nargs="+", default=[4], help="videos per sampling run, e.g. 4 32")
    parser.add_argument("--weights", nargs="+", choices=sorted(gpt_module.SAMPLING_WEIGHTS), default=["fp32"],
                        help="sampling precisions to time (sample_codes(..., weights=...)), e.g. fp32 bf16")
    parser.add_argument("--kernels", action="store_true",
                        help="also print the weight-streaming rates of F.linear against the prepacked weights, and of the "
                             "cached attention kernels")
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

    # sampling: the codes against their floors, then the decode
    prior.eval()
    bandwidth = memory_bandwidth_gbs(device)
    print(f"streaming read bandwidth (matrix-vector product over 256 MiB): {bandwidth:.1f} GB/s")
    with autocast:
        warm = _timed(lambda: prior.sample(1, frames=frames[:1] if frames is not None else None,
                                           generator=torch.Generator(device).manual_seed(0)), device)
        print(f"warm-up: sample 1 video with the KV cache: {warm:.2f} s", flush=True)
        peaks = {"fp32": peak, "bf16": peak if dtype == torch.bfloat16 else matmul_peak_gflops(device, torch.bfloat16)} \
            if "bf16" in args.weights else {"fp32": peak}
        for n in args.samples:
            sample_frames = torch.rand(n, 1, 1, 64, 64, device=device) - 0.5 if args.frame_cond else None
            drawn, timed = [], {}  # the codes, kept for the decode; seconds per precision
            for weights in args.weights:
                seconds = _timed(lambda n=n, f=sample_frames, out=drawn, w=weights: out.append(prior.sample_codes(
                    n, frames=f, generator=torch.Generator(device).manual_seed(0), weights=w)), device)
                timed[weights] = seconds
                decode = _timed(lambda codes=drawn[-1]: prior.vqvae.decode(codes), device)  # the codes just drawn
                element_bytes = 2 if weights == "bf16" else 4
                floor = sampling_floor(prior, n, peaks[weights], bandwidth, element_bytes)
                target = {4: "  [target: 2x the official code]", 32: "  [target: 3x the official code]"}.get(n, "") \
                    if device == "cpu" and weights == "fp32" else ""
                print(f"sample {n} videos with the KV cache, {weights} weights: codes {seconds:.2f} s + decode "
                      f"{decode:.2f} s = {n / (seconds + decode):.2f} videos/s ({n * prior.length / seconds:,.0f} "
                      f"tokens/s){target}")
                print(f"  floors of the codes: weights + cache traffic {floor['traffic']:.2f} s at {bandwidth:.1f} GB/s "
                      f"({element_bytes} bytes per value), matmuls {floor['compute']:.2f} s at {peaks[weights]:.1f} "
                      f"GFLOP/s, roofline {floor['roofline']:.2f} s -> {100 * floor['roofline'] / seconds:.0f}% of the "
                      "floor reached", flush=True)
            if len(timed) > 1:
                print(f"  {' / '.join(timed)}: {' : '.join(f'{timed[args.weights[0]] / s:.2f}' for s in timed.values())}"
                      f" (speed relative to {args.weights[0]})")
            if args.kernels and device == "cpu":
                rates = kernel_rates(prior, n)
                print(f"  one token step's matrix products over {n} rows stream the weights at: "
                      f"{', '.join(f'{name} {rate:.1f} GB/s' for name, rate in rates.items())}; sampling packs with "
                      f"{gpt_module.packing_library()} on this CPU")
                rates = attention_rates(prior, n)
                print(f"  one query of {n} samples over {prior.length} cached fp32 positions streams a layer's keys "
                      f"and values at: {', '.join(f'{name} {rate:.1f} GB/s' for name, rate in rates.items())}; "
                      f"sampling uses {gpt_module.cache_kernels()} on this CPU")
        if "bf16" in args.weights:
            exact, rounded = held_out_bits_per_dim("fp32"), held_out_bits_per_dim("bf16")
            print(f"held-out bits/dim of the shipped mnist_prior_lite (64 test clips): fp32 {exact:.4f}, bf16 weights "
                  f"{rounded:.4f} ({rounded - exact:+.4f})")
        n = args.samples[0]
        estimate = uncached_estimate(prior, n)
        print(f"sample {n} videos without the cache, estimated from 9 prefix lengths: {estimate:.1f} s")
        if args.full_uncached:
            uncached = _timed(lambda: prior.sample(n, use_cache=False, generator=torch.Generator(device).manual_seed(0),
                                                   frames=None if frames is None else frames[:1].expand(n, -1, -1, -1, -1)), device)
            print(f"sample {n} videos without the cache (whole prefix every step): {uncached:.1f} s")


if __name__ == "__main__":
    main()
