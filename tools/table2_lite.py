#!/usr/bin/env python3
"""The paper's Table 2 at lite scale: four priors over the same Moving MNIST codes, trained and measured alike.

    python tools/table2_lite.py train    [--runs runs/table2] [--threads 1]
    python tools/table2_lite.py evaluate [--runs runs/table2] --judge mnist_judge_lite [--out book/data/table2_lite.json]

The arms (Table 2: C = conditioned on the first frame, U = unconditional; GPT Small has half the layers;
the Axial Transformer is Ho et al.'s, ``prior.attention=axial``) share the VQ-VAE ``mnist_vqvae_lite`` (the one
inside ``mnist_prior_lite``), the data, the width, the optimiser and the number of steps. ``train`` runs
``videogen-lite train prior`` once per arm (the exact commands are printed and recorded in each run's
config.json); ``evaluate`` measures each on the same held-out clips: bits/dim over ``--n-clips`` test clips and
the Fréchet judge distance of as many samples (conditioned on those clips' first frames where the arm is)
against the real clips, beside its floors (real vs real, reconstructions vs real), and writes one JSON.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VQVAE = "mnist_vqvae_lite"
COMMON = ["prior.hidden=64", "prior.heads=4", "prior.resnet_units=64", "prior.dropout=0.1",
          "prior.train.batch_size=8", "prior.train.steps=150", "prior.train.lr=1e-3", "prior.train.lr_decay=cosine",
          "prior.train.warmup_steps=15", "prior.train.log_every=10", "prior.train.checkpoint_every=50",
          "prior.train.eval_batches=4"]
ARMS = {  # name -> (label as in the paper's Table 2, overrides)
    "gpt_c": ("GPT (C)", ["prior.frame_cond=true", "prior.layers=4"]),
    "axial_c": ("Axial (C)", ["prior.frame_cond=true", "prior.layers=4", "prior.attention=axial"]),
    "gpt_small_u": ("GPT Small (U)", ["prior.frame_cond=false", "prior.layers=2"]),
    "gpt_u": ("GPT (U)", ["prior.frame_cond=false", "prior.layers=4"]),
}
PAPER = {"GPT (C)": (3.59, 103.3, 94.2), "Axial (C)": (3.94, 170.1, 133.3), "GPT Small (U)": (4.53, 230.4, 187.0),
         "GPT (U)": (4.08, 191.7, 164.2)}  # BAIR: bits/dim, FVD, FVD* (the paper's Table 2)


def command(name: str, runs: Path, threads: int) -> list[str]:
    return ["videogen-lite", "train", "prior", "--config", "moving_mnist_lite", "--vqvae", VQVAE,
            "--out", str(runs / name), "--threads", str(threads), "--quiet", *COMMON, *ARMS[name][1]]


def train(args) -> None:
    for name in ARMS:
        cmd = command(name, args.runs, args.threads)
        print(" ".join(cmd), flush=True)
        began = time.time()
        subprocess.run([sys.executable, "-m", "videogen_lite.cli", *cmd[1:]], check=True, cwd=ROOT)
        print(f"{name}: {time.time() - began:.0f} s", flush=True)


def evaluate(args) -> None:
    import torch

    import videogen_lite as vg
    from videogen_lite.evaluate import _clips
    from videogen_lite.judge import digit_persistence, frechet_judge_distance
    from videogen_lite.pretrained import resolve

    torch.set_num_threads(args.threads)
    judge, _ = resolve(args.judge)
    test = vg.data.MovingMNIST("test", 16, 64)
    n = args.n_clips
    clips = _clips(test, 0, n)
    real = clips["video"] + 0.5
    other = _clips(test, n, n)["video"] + 0.5
    vq = vg.pretrained(VQVAE)
    with torch.no_grad():
        recon = torch.cat([(vq.decode(vq.encode(v)) + 0.5).clamp(0, 1) for v in clips["video"].split(32)])
    result = {"n_clips": n, "vqvae": VQVAE, "judge": args.judge, "seed": args.seed, "arms": {},
              "floors": {"real_vs_real": frechet_judge_distance(judge, real, other),
                         "reconstructions_vs_real": frechet_judge_distance(judge, recon, real)},
              "paper_bair": PAPER}
    for name, (label, _) in ARMS.items():
        run = ROOT / args.runs / name
        prior = vg.load(run)
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        metrics = json.loads((run / "metrics.json").read_text())
        generator = torch.Generator().manual_seed(args.seed)
        nats, samples = 0.0, []
        with torch.no_grad():
            for video in clips["video"].split(32):
                frames = video[:, :, :1] if prior.cfg.frame_cond else None
                nats += float(prior(video, frames)["loss"]) * len(video)
                samples.append(prior.sample(len(video), frames=frames, generator=generator))
        samples = torch.cat(samples)
        result["arms"][name] = {
            "label": label, "command": " ".join(command(name, args.runs, args.threads)),
            "parameters": prior.num_parameters(), "steps": metrics["steps"], "wall_time_s": metrics["wall_time_s"],
            "hardware": metrics["hardware"], "train_loss_last": log[-1]["loss"],
            "bits_per_dim": vg.metrics.bits_per_dim(nats / n),
            "frechet_judge": frechet_judge_distance(judge, samples, real),
            "persistence": digit_persistence(judge, samples, clips["label"]).tolist(),
        }
        print(label, {k: v for k, v in result["arms"][name].items() if k not in ("persistence", "command")}, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["train", "evaluate"])
    parser.add_argument("--runs", type=Path, default=Path("runs/table2"), help="relative to the repository")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--judge", default="mnist_judge_lite")
    parser.add_argument("--n-clips", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "data" / "table2_lite.json")
    args = parser.parse_args()
    train(args) if args.action == "train" else evaluate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
