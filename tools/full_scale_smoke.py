"""Run a paper-scale config (default: ``bair``, Tables 5 and 6) for a few steps on a GPU, through the
project's own command line, and summarise step time, throughput and peak memory.

    python tools/full_scale_smoke.py --out runs/full_scale [--config bair] [--steps 40] [--minutes 2.5]
        [--arms bf16_compile fp32_eager] [--stages vqvae prior]

For each arm (``bf16_compile``: bf16 autocast + ``torch.compile``; ``fp32_eager``: neither; ``bf16_eager``:
bf16 alone; ``bf16_compile_ckpt``: also activation checkpointing of the prior's blocks) and stage, it runs

    videogen-lite train vqvae|prior --config CONFIG --out OUT/STAGE_ARM ... --max-minutes MINUTES

on clips of the config's shape whose pixels and actions are uniform random numbers (written here to
``OUT/random_clips.h5``): the real datasets are large downloads, and neither step time nor memory depends
on pixel values. Nothing learnt in these runs means anything; only their speed does. The prior of each
arm uses that arm's VQ-VAE, or the first VQ-VAE run found in OUT when that arm has none.

``OUT/summary.json`` gets, per run: the median ``step_s`` of the logged windows after the first (which
holds compilation and warm-up), tokens/s or clips/s, peak GPU memory, parameters, the GPU, and the
commands. Chapter 9 reads a copy of it (``book/data/full_scale_<gpu>.json``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ARMS = {
    "bf16_compile": ["train.bf16=true", "train.compile=true"],
    "fp32_eager": [],
    "bf16_eager": ["train.bf16=true"],
    "bf16_compile_ckpt": ["train.bf16=true", "train.compile=true", "train.activation_checkpointing=true"],
}


def write_random_clips(path: Path, cfg, clips: dict[str, int], length: int = 30) -> None:
    """Episodes of ``length`` frames of the config's shape, uniform random uint8 pixels and float actions."""
    from videogen_lite.data.hdf5 import HDF5Writer

    rng = np.random.default_rng(0)
    res, channels, action_size = cfg.data.resolution, cfg.data.channels, cfg.data.action_size or 0
    with HDF5Writer(path, source="random clips of the config's shape (tools/full_scale_smoke.py)") as writer:
        for split, n in clips.items():
            for _ in range(n):
                frames = rng.integers(0, 256, (length, res, res, channels), dtype=np.uint8)
                actions = rng.uniform(-1, 1, (length, action_size)).astype(np.float32) if action_size else None
                writer.add_episode(split, frames, actions)


def summarise(run: Path) -> dict:
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())
    steady = log[1:] or log  # the first window holds compilation and warm-up
    out = dict(steps=metrics["steps"], hardware=metrics["hardware"], wall_time_s=metrics["wall_time_s"],
               first_window_step_s=log[0]["step_s"], step_s=statistics.median(r["step_s"] for r in steady),
               clips_per_s=statistics.median(r["clips_per_s"] for r in steady),
               peak_memory_mb=max(r["peak_memory_mb"] for r in log), windows=len(log))
    if "tokens_per_s" in log[0]:
        out["tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in steady)
    out["batch_size"] = config["config"][config["stage"]]["train"]["batch_size"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", default="bair")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=2.5, help="--max-minutes of each run")
    parser.add_argument("--arms", nargs="+", default=["bf16_compile", "fp32_eager"], choices=sorted(ARMS))
    parser.add_argument("--stages", nargs="+", default=["vqvae", "prior"], choices=["vqvae", "prior"])
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more config overrides for every run (e.g. to shrink the model for a CPU trial)")
    args = parser.parse_args()

    import torch

    import videogen_lite as vg
    cfg = vg.load_config(args.config, args.set)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "random_clips.h5"
    if not data.exists():
        began = time.time()
        write_random_clips(data, cfg, {"train": 256, "val": 64, "test": 8})
        print(f"wrote {data} in {time.time() - began:.0f} s", flush=True)
    summary_path = args.out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary.update(config=args.config, overrides=args.set, torch=torch.__version__,
                   gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                   data="uniform random clips of the config's shape", runs=summary.get("runs", {}))
    for arm in args.arms:
        for stage in args.stages:
            name = f"{stage}_{arm}"
            run = args.out / name
            command = [sys.executable, "-m", "videogen_lite.cli", "train", stage, "--config", args.config,
                       "--out", str(run), "--max-minutes", str(args.minutes), "--quiet"]
            if stage == "prior":
                vqvae = args.out / f"vqvae_{arm}"
                if not vqvae.exists():
                    found = sorted(args.out.glob("vqvae_*/metrics.json"))
                    if not found:
                        raise SystemExit(f"no VQ-VAE run in {args.out} for the prior: add the stage vqvae")
                    vqvae = found[0].parent
                command += ["--vqvae", str(vqvae)]
            command += [f"data.path={data}", "data.variance=0.0833"]
            command += [f"{stage}.{o}" for o in ARMS[arm] + [
                f"train.steps={args.steps}", f"train.log_every={args.log_every}", "train.checkpoint_every=100000",
                "train.eval_batches=1", f"train.num_workers={args.num_workers}"]] + args.set
            print("$", " ".join(command), flush=True)
            began = time.time()
            rc = subprocess.call(command)
            entry = dict(command=" ".join(command[2:]), returncode=rc, seconds=round(time.time() - began, 1))
            if rc == 0:
                entry.update(summarise(run))
            summary["runs"][name] = entry
            summary_path.write_text(json.dumps(summary, indent=2))
            print(json.dumps({name: entry}, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
