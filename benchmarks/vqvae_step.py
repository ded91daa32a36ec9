"""Seconds per VQ-VAE training step (forward + backward + optimizer + EMA codebook update) and peak memory.

The paper-shaped model: hidden 240, residual units 128, 2 attention residual layers, codebook 512 x 64,
batch 4 of 16x64x64 one-channel clips, 2 CPU threads by default.

    python benchmarks/vqvae_step.py [--threads 2] [--steps 5] [--profile]
    python benchmarks/vqvae_step.py --layouts   # the downsampling convs channels-last (default) vs channels-first
    python benchmarks/vqvae_step.py --phases    # the last transposed conv by phases (default) vs oneDNN's own
    python benchmarks/vqvae_step.py --device cuda --dtype bf16 [--batch 32]   # on a GPU: clips/s and MFU
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

import videogen_lite as vg
from videogen_lite import conv
from videogen_lite.cli import DTYPES, matmul_peak_gflops
from videogen_lite.scaling import step_cost


def paper_shaped_config(attention: bool = True):
    return vg.load_config("moving_mnist", ["data.variance=0.039", f"vqvae.attention={str(attention).lower()}",
                                           "vqvae.n_res_layers=2"])


def measure(threads: int = 2, steps: int = 5, batch: int = 4, device: str = "cpu", profile: bool = False,
            dtype: torch.dtype = torch.float32) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = paper_shaped_config()
    model = vg.VQVAE(cfg.vqvae).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.vqvae.train.lr)
    x = torch.rand(batch, 1, 16, 64, 64, device=device) - 0.5

    autocast = torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype != torch.float32)

    def step():
        with autocast:
            out = model(x)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        if device != "cpu":
            torch.cuda.synchronize()

    step()  # warm-up (and the codebook's data initialisation)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    result = dict(
        seconds_per_step=statistics.median(times),
        min_seconds=min(times),
        peak_memory_mb=(torch.cuda.max_memory_allocated() / 2**20 if device != "cpu"
                        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        parameters=sum(p.numel() for p in model.parameters()),
        threads=threads, batch=batch, device=device,
        flops=step_cost(cfg, "vqvae", batch=batch)["flops"],
    )
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        result["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="fp32, or bf16 autocast")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--layouts", action="store_true",
                        help="on a CPU, also time the encoder's convolutions channels-first "
                             "(videogen_lite.conv.CPU_CHANNELS_LAST=False), alternating with the default, twice")
    parser.add_argument("--phases", action="store_true",
                        help="on a CPU, also time the decoder's last transposed convolution as oneDNN's own "
                             "(videogen_lite.conv.CPU_PHASE_MAX_CHANNELS=0), alternating with the default, twice")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA device is visible to torch {torch.__version__}")
    dtype = DTYPES[args.dtype]
    r = measure(args.threads, args.steps, args.batch, args.device, args.profile, dtype)
    peak = matmul_peak_gflops(args.device, dtype)
    floor = r["flops"] / peak / 1e9
    print(f"VQ-VAE step (hidden 240, 2 attention residual layers, 512x64 codes, batch {r['batch']}, 16x64x64, "
          f"{args.dtype}) on {r['device']} with {r['threads']} threads: median {r['seconds_per_step']:.3f} s "
          f"(min {r['min_seconds']:.3f} s), peak memory {r['peak_memory_mb']:.0f} MB, "
          f"{r['parameters'] / 1e6:.2f} M parameters; {r['flops'] / 1e9:.0f} GFLOP per step -> "
          f"{r['flops'] / r['seconds_per_step'] / 1e9:.1f} GFLOP/s")
    print(f"compute floor: {floor:.3f} s at the measured {args.dtype} matmul peak of {peak:.1f} GFLOP/s -> "
          f"{100 * floor / r['seconds_per_step']:.0f}% of the floor reached (MFU); "
          f"{r['batch'] / r['seconds_per_step']:.2f} clips/s")
    if "profile" in r:
        print(r["profile"])
    if args.layouts and args.device == "cpu":
        first, last, runs = alternate(args, "CPU_CHANNELS_LAST", False, True)
        print(f"downsampling convs channels-first {first:.3f} s, channels-last {last:.3f} s a step ({runs}): "
              f"{first / last:.2f}x")
    if args.phases and args.device == "cpu":
        default = conv.CPU_PHASE_MAX_CHANNELS
        first, last, runs = alternate(args, "CPU_PHASE_MAX_CHANNELS", 0, default)
        print(f"last transposed conv as oneDNN's {first:.3f} s, by phases {last:.3f} s a step ({runs}): "
              f"{first / last:.2f}x")


def alternate(args, flag: str, off, on) -> tuple[float, float, str]:
    """Median step times with ``conv.<flag>`` = ``off`` and = ``on``, alternating twice so that the machine's
    drift falls on both; the flag is left at ``on`` (its default)."""
    times = {off: [], on: []}
    for _ in range(2):
        for value in (off, on):
            setattr(conv, flag, value)
            times[value].append(measure(args.threads, args.steps, args.batch)["seconds_per_step"])
    setattr(conv, flag, on)
    runs = (f"medians of {' / '.join(f'{t:.3f}' for t in times[off])} and "
            f"{' / '.join(f'{t:.3f}' for t in times[on])}")
    return statistics.median(times[off]), statistics.median(times[on]), runs


if __name__ == "__main__":
    main()
