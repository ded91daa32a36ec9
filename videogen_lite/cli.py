"""The ``videogen-lite`` command.

    videogen-lite train vqvae --config moving_mnist_lite --out runs/vq [--resume] [key=value ...]
    videogen-lite train prior --config moving_mnist_lite --vqvae runs/vq --out runs/prior [key=value ...]
    videogen-lite train judge --config moving_mnist_lite --out runs/judge [key=value ...]   (Moving MNIST judge)
    videogen-lite data vizdoom|bair|... (see ``videogen-lite data --help``)
    videogen-lite sample --prior runs/prior --n 4 --out samples.gif [--prime test --prime-steps 1] [--length 6] [--weights bf16]
    videogen-lite eval --vqvae runs/vq --prior runs/prior --split test [--i3d I3D.safetensors] [--out eval.json]
    videogen-lite bench [--only vqvae_step prior data_loading]
    videogen-lite configs            (lists the shipped configs)

The same ``train`` command under ``torchrun --nproc_per_node N`` trains data-parallel; ``batch_size`` is
the global batch.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .config import config_names, load_config, to_dict
from .gpt import SAMPLING_WEIGHTS


def _train(args) -> int:
    from . import data, metrics, train

    cfg = load_config(args.config, args.overrides)
    stage = {"vqvae": cfg.vqvae, "prior": cfg.prior, "judge": cfg.judge}[args.stage]
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(stage.train.seed)
    train_set = data.build_dataset(cfg.data, "train")
    val_set = data.build_dataset(cfg.data, "val")
    if args.stage == "judge":
        from dataclasses import replace

        from .judge import Judge, JudgeClips

        if not isinstance(train_set, data.MovingMNIST):
            raise ValueError(f"train judge needs generated Moving MNIST (data.name = moving_mnist, data.path unset "
                             f"or MNIST idx files), whose generator knows the digits and their motion; "
                             f"config {args.config!r} gives {type(train_set).__name__}")
        # short training clips (judge.clip_length frames), held-out clips of the data's full length
        train_set = JudgeClips(data.build_dataset(replace(cfg.data, sequence_length=cfg.judge.clip_length), "train"))
        val_set = JudgeClips(val_set)
        model = Judge(cfg.judge)
    elif args.stage == "vqvae":
        from .vqvae import VQVAE

        if cfg.vqvae.data_variance is None:
            cfg.vqvae.data_variance = metrics.data_variance(train_set)
            print(f"data variance measured on the training split: {cfg.vqvae.data_variance:.6f}", file=sys.stderr)
        model = VQVAE(cfg.vqvae)
        if cfg.vqvae.train.crop is not None:  # held-out metrics stay on whole clips
            train_set = train.RandomCrops(train_set, cfg.vqvae.train.crop, cfg.vqvae.downsample,
                                          cfg.vqvae.train.seed)
    else:
        from .gpt import VideoGPT
        from .pretrained import resolve

        if not args.vqvae:
            raise SystemExit("train prior needs --vqvae RUN_DIR|CHECKPOINT|LITE_NAME (the trained VQ-VAE it models)")
        vqvae, _ = resolve(args.vqvae)  # a run folder, a .safetensors file or a lite checkpoint name
        model = VideoGPT(cfg.prior, vqvae=vqvae)
    run_config = dict(stage=args.stage, config=to_dict(cfg), config_source=str(args.config),
                      overrides=list(args.overrides), vqvae=str(args.vqvae) if args.stage == "prior" else None,
                      command=" ".join(["videogen-lite"] + sys.argv[1:]))
    summary = train.fit(model, train_set, stage.train, args.out, val_set=val_set, run_config=run_config,
                        resume=args.resume, max_minutes=args.max_minutes, progress=not args.quiet)
    if args.stage == "judge" and summary.get("checkpoint") is not None:  # rank 0: digits it never saw
        from .io import atomic_write
        from .judge import judge_accuracy

        test_set = data.build_dataset(cfg.data, "test")
        summary["test_accuracy"] = judge_accuracy(model, test_set, min(256, len(test_set)))
        text = json.dumps(summary, indent=2)
        atomic_write(Path(args.out) / "metrics.json", lambda tmp: Path(tmp).write_text(text))
    if summary.get("checkpoint") is not None:
        print(json.dumps(summary, indent=2))
    return 0


def _held_out_clips(data_cfg: dict | None, split: str, n: int, source: str) -> dict:
    """The first ``n`` clips of ``split`` of the dataset a model was trained on -> ``dict(video, actions)``."""
    from .config import DataConfig, from_dict
    from .data import build_dataset

    if data_cfg is None:
        raise ValueError(f"{source} does not record the data it was trained on, so no clips of its {split!r} split "
                         "can be taken: pass --frames / --actions / --prime as torch files")
    dataset = build_dataset(from_dict(data_cfg, DataConfig), split)
    if len(dataset) < n:
        raise ValueError(f"the {split!r} split holds {len(dataset)} clips, fewer than --n {n}")
    items = [dataset[i] for i in range(n)]
    return {key: torch.stack([torch.as_tensor(item[key]) for item in items]) for key in ("video", "actions")}


def _sample(args) -> int:
    from .gpt import VideoGPT
    from .pretrained import resolve
    from .viz import write_video

    prior, data_cfg = resolve(args.prior)
    if not isinstance(prior, VideoGPT):
        raise ValueError(f"--prior {args.prior} is a {type(prior).__name__}, not a prior: sample needs a model "
                         "trained by `videogen-lite train prior` (or a prior checkpoint such as mnist_prior_lite)")
    frames = torch.load(args.frames, weights_only=True) if args.frames else None
    actions = torch.load(args.actions, weights_only=True) if args.actions else None
    clips = None
    needs_clips = (prior.cfg.frame_cond and frames is None) or (prior.cfg.action_dim and actions is None)
    if needs_clips or args.prime in ("train", "val", "test"):
        split = args.prime if args.prime in ("train", "val", "test") else "test"
        clips = _held_out_clips(data_cfg, split, args.n, args.prior)
        taken = [what for what, missing in (("first frames", prior.cfg.frame_cond and frames is None),
                                            ("actions", prior.cfg.action_dim and actions is None)) if missing]
        if taken:
            print(f"conditioning on the {' and '.join(taken)} of the first {args.n} {split} clips of the prior's "
                  "dataset (pass --frames / --actions to choose)", file=sys.stderr)
    if prior.cfg.frame_cond and frames is None:
        frames = clips["video"][:, :, : prior.cfg.n_cond_frames]
    if prior.cfg.action_dim and actions is None:
        actions = clips["actions"]  # every step of the clips: each window of a long rollout reads its own
    prime = None
    if args.prime:
        prime = clips["video"] if args.prime in ("train", "val", "test") else torch.load(args.prime, weights_only=True)
    generator = torch.Generator().manual_seed(args.seed)
    video = prior.sample(args.n, frames=frames, actions=actions, temperature=args.temperature, top_k=args.top_k,
                         generator=generator, progress=True, prime=prime,
                         prime_steps=args.prime_steps if prime is not None else None, length=args.length,
                         weights=args.weights)
    write_video(args.out, video)
    print(f"wrote {args.n} samples of {video.shape[2]} frames to {args.out}")
    return 0


def _eval(args) -> int:
    from .evaluate import run

    return run(args)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # the benchmarks' --dtype choices


def matmul_peak_gflops(device: str = "cpu", dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """Measured matmul throughput (2048^3 on CPU, 8192^3 on a GPU): the ceiling the benchmarks compare with."""
    import time

    size = 2048 if device == "cpu" else 8192
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def memory_bandwidth_gbs(device: str = "cpu", repeats: int = 5) -> float:
    """Measured streaming-read bandwidth in GB/s: a matrix-vector product over a 256 MiB fp32 matrix (far larger
    than any cache; the read pattern of a token step), best of ``repeats``. The traffic floor of the benchmarks."""
    import time

    matrix = torch.randn(8192, 8192, device=device)
    vector = torch.randn(8192, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        torch.mv(matrix, vector)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return matrix.numel() * 4 / best / 1e9


def _bench(args) -> int:
    import subprocess

    folder = Path(args.benchmarks) if args.benchmarks else Path(__file__).resolve().parent.parent / "benchmarks"
    scripts = sorted(folder.glob("*.py"))
    if not scripts:
        raise FileNotFoundError(f"no benchmark scripts in {folder}: run from a repository checkout or pass "
                                "--benchmarks DIR")
    if args.only:
        scripts = [s for s in scripts if s.stem in args.only]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is visible to torch {torch.__version__}")
    dtype = args.dtype or ("bf16" if device != "cpu" else "fp32")
    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name() if device != "cpu" else "CPU"
    print(f"device {device} ({name}), dtype {dtype}, {args.threads} CPU threads, torch {torch.__version__}")
    peak = matmul_peak_gflops(device, DTYPES[dtype])
    print(f"measured {dtype} matmul peak: {peak:.0f} GFLOP/s")
    failed = 0
    for script in scripts:
        print(f"\n== {script.stem}", flush=True)
        command = [sys.executable, str(script), "--threads", str(args.threads)]
        if '"--device"' in script.read_text():  # the model benchmarks; data loading is CPU work
            command += ["--device", device, "--dtype", dtype]
        failed += subprocess.call(command) != 0
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videogen-lite", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train_p = commands.add_parser("train", help="train the VQ-VAE, the prior or the Moving MNIST judge")
    train_p.add_argument("stage", choices=["vqvae", "prior", "judge"])
    train_p.add_argument("--config", required=True, help=f"a shipped name ({', '.join(config_names())}) or a YAML path")
    train_p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, log.jsonl, metrics.json)")
    train_p.add_argument("--vqvae", help="prior only: the trained VQ-VAE (run folder, .safetensors or lite checkpoint name)")
    train_p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    train_p.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this long")
    train_p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    train_p.add_argument("--quiet", action="store_true", help="no progress bar")
    train_p.add_argument("overrides", nargs="*", help="config overrides key.path=value, e.g. vqvae.train.steps=200")
    train_p.set_defaults(run=_train)

    sample_p = commands.add_parser("sample", help="sample videos from a trained prior")
    sample_p.add_argument("--prior", required=True, help="prior: run folder, .safetensors or lite checkpoint name")
    sample_p.add_argument("--n", type=int, default=4)
    sample_p.add_argument("--frames", help="a torch file holding conditioning frames [n, C, F, H, W] in [-0.5, 0.5]")
    sample_p.add_argument("--actions", help="a torch file holding actions [n, T, A]")
    sample_p.add_argument("--temperature", type=float, default=1.0)
    sample_p.add_argument("--top-k", type=int, default=None)
    sample_p.add_argument("--seed", type=int, default=0)
    sample_p.add_argument("--prime", help="real frames to continue: a split of the prior's dataset (train, val, "
                                          "test: its first N clips) or a torch file of videos [n, C, T, H, W] in "
                                          "[-0.5, 0.5] or codes [n, t, h, w]")
    sample_p.add_argument("--prime-steps", type=int, default=1,
                          help="latent time steps of --prime to keep (1 = the first 4 frames at 4x time downsampling)")
    sample_p.add_argument("--length", type=int, default=None,
                          help="latent time steps to sample; beyond the trained length a sliding window rolls on")
    sample_p.add_argument("--weights", choices=sorted(SAMPLING_WEIGHTS), default=None,
                          help="sample in the prior's own precision (default, exact) or with a bfloat16 copy of it "
                               "(faster on CPUs with bf16 instructions and on GPUs; other codes from the same seed)")
    sample_p.add_argument("--out", required=True, help="an .mp4 or .gif file")
    sample_p.set_defaults(run=_sample)

    eval_p = commands.add_parser("eval", help="NMSE, bits/dim, FVD / FVD*, the judge's metrics, continuation error "
                                              "and action following on held-out clips")
    eval_p.add_argument("--vqvae", help="VQ-VAE: run folder, .safetensors or lite checkpoint name")
    eval_p.add_argument("--prior", help="prior: run folder, .safetensors or lite checkpoint name")
    eval_p.add_argument("--config", help="data config (NAME|PATH), when the model file does not record it")
    eval_p.add_argument("--split", default="test", help="held-out split (default: test)")
    eval_p.add_argument("--n-clips", type=int, default=256, help="clips per set (256: the standard FVD protocol)")
    eval_p.add_argument("--i3d", help="I3D weights for FVD (tools/convert_i3d.py writes them)")
    eval_p.add_argument("--judge", help="Moving MNIST judge (run folder, .safetensors or lite checkpoint name, e.g. "
                                        "mnist_judge_lite): digit persistence and Fréchet judge distances")
    eval_p.add_argument("--prime-steps", type=int, default=1,
                        help="latent steps of real frames for the primed continuation error (0 = skip it)")
    eval_p.add_argument("--batch-size", type=int, default=16)
    eval_p.add_argument("--seed", type=int, default=0, help="seed of the samples")
    eval_p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    eval_p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    eval_p.add_argument("--out", help="write the results as JSON to this file")
    eval_p.set_defaults(run=_eval)

    bench_p = commands.add_parser("bench", help="print the speed and memory figures of benchmarks/")
    bench_p.add_argument("--threads", type=int, default=2)
    bench_p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    bench_p.add_argument("--dtype", choices=sorted(DTYPES), help="default: bf16 autocast on a GPU, fp32 on CPU")
    bench_p.add_argument("--only", nargs="*", help="benchmark names, e.g. vqvae_step prior")
    bench_p.add_argument("--benchmarks", help="folder of benchmark scripts (default: the checkout's benchmarks/)")
    bench_p.set_defaults(run=_bench)

    configs_p = commands.add_parser("configs", help="list the shipped configs")
    configs_p.set_defaults(run=lambda args: print("\n".join(config_names())) or 0)

    try:
        from .data.cli import add_data_commands
    except ImportError:
        pass
    else:
        add_data_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may come before or after the options: argparse leaves the later ones unparsed
    unknown = [e for e in extra if e.startswith("-") or "=" not in e]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"videogen-lite: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
