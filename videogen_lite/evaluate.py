"""``videogen-lite eval``: the paper's numbers for a trained VQ-VAE and prior, on held-out clips.

    videogen-lite eval --vqvae runs/vq --prior runs/prior --split test [--n-clips 256] [--i3d I3D.safetensors]
                       [--out eval.json]

- **NMSE** of the VQ-VAE: mean squared reconstruction error over the clips divided by the data variance
  (Table 3);
- **bits/dim** of the prior: its cross-entropy per latent code in bits, with the frame and action
  conditioning taken from each clip as in training (Tables 2 and 4);
- with ``--i3d``: **FVD** (real clips vs samples, Table 1), **FVD*** (VQ-VAE reconstructions vs samples,
  Table 2) and the FVD of the reconstructions themselves (real vs reconstructions, Table 3). Samples are
  conditioned on the first frame(s) and actions of the real clips, as in the BAIR protocol. See
  :mod:`videogen_lite.fvd` for the protocol and for how to get the I3D weights.

``--vqvae`` and ``--prior`` take a run folder, a ``.safetensors`` file or the name of a lite checkpoint
(``mnist_vqvae_lite``). The held-out clips come from the data config the run or the checkpoint's
manifest recorded; pass ``--config NAME|PATH`` for a bare weights file.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from . import fvd as fvd_lib
from .config import DataConfig, from_dict, load_config, to_dict
from .data import build_dataset
from .metrics import bits_per_dim, data_variance, frechet_distance, normalized_mse
from .pretrained import resolve


def check_data(data_cfg: DataConfig, model: torch.nn.Module) -> None:
    """The clips must have the shape the VQ-VAE was built for."""
    vq = model.vqvae.cfg if hasattr(model, "vqvae") else model.cfg
    clip = (data_cfg.channels, data_cfg.sequence_length, data_cfg.resolution)
    expected = (vq.channels, vq.sequence_length, vq.resolution)
    if clip != expected:
        raise ValueError(f"the data config gives clips (C, T, H=W) = {clip} but the model takes {expected}; "
                         "pass --config with the config the model was trained with")


def conditioning(prior: torch.nn.Module, video: torch.Tensor, actions: torch.Tensor | None):
    """The frames and actions a prior is conditioned on, taken from a batch as ``VideoGPT.forward_batch`` does."""
    from .gpt import action_window

    frames = video[:, :, : prior.cfg.n_cond_frames] if prior.cfg.frame_cond else None
    return frames, action_window(actions, prior.cfg.action_dim)


@torch.no_grad()
def primed_continuation(prior: torch.nn.Module, videos: torch.Tensor, actions: torch.Tensor | None = None,
                        prime_steps: int = 1, seed: int = 0, batch_size: int = 16) -> dict:
    """How well a prior continues real clips: per-frame NMSE of continuations against the truth.

    ``videos`` float ``[N, C, T, H, W]`` in [-0.5, 0.5] (held-out clips, with their ``actions [N, T, A]`` for
    an action-conditioned prior). The prior is primed with the codes of each clip's first ``prime_steps``
    latent time steps (its first ``prime_steps * dt`` frames) and, when frame-conditioned, its first
    frame(s); it samples the rest greedily (``top_k=1``) and at temperature 1 (seeded). Beside them, two
    baselines: ``copy_last`` repeats the last primed frame (no motion at all) and ``reconstruction`` is the
    VQ-VAE's own reconstruction of the whole clip (the floor: the best any prior over these codes can do).

    Returns ``dict(prime_frames, per_frame={name: [T] NMSE per frame}, unprimed={name: mean over the
    frames after the prime})`` for ``greedy``, ``sampled``, ``copy_last`` and ``reconstruction``.
    """
    from .gpt import action_window

    if videos.dim() != 5 or not videos.is_floating_point():
        raise ValueError(f"expected videos float [N, C, T, H, W] in [-0.5, 0.5], got {videos.dtype} {list(videos.shape)}")
    vq = prior.vqvae
    variance = float(vq.data_variance)
    if not math.isfinite(variance) or variance <= 0:
        raise ValueError("the prior's VQ-VAE records no data variance, the NMSE denominator")
    dt = vq.cfg.downsample[0]
    first = prime_steps * dt
    generator = torch.Generator().manual_seed(seed)
    squared = {name: torch.zeros(videos.shape[2], dtype=torch.float64)
               for name in ("greedy", "sampled", "copy_last", "reconstruction")}
    device = next(prior.parameters()).device
    for start in range(0, len(videos), batch_size):
        x = videos[start : start + batch_size].to(device)
        acts = None if actions is None else action_window(actions[start : start + batch_size].to(device),
                                                          prior.cfg.action_dim)
        frames = x[:, :, : prior.cfg.n_cond_frames] if prior.cfg.frame_cond else None
        common = {"frames": frames, "actions": acts, "prime": x, "prime_steps": prime_steps}
        outputs = {
            "greedy": prior.sample(len(x), top_k=1, **common) - 0.5,
            "sampled": prior.sample(len(x), temperature=1.0, generator=generator, **common) - 0.5,
            "copy_last": x[:, :, first - 1 : first].expand_as(x),
            "reconstruction": vq.decode(vq.encode(x)).clamp(-0.5, 0.5),
        }
        for name, out in outputs.items():  # sum of squared errors per frame index
            squared[name] += ((out.float() - x) ** 2).mean(dim=(1, 3, 4)).sum(0).double().cpu()
    per_frame = {name: (value / len(videos) / variance).tolist() for name, value in squared.items()}
    unprimed = {name: float(np.mean(values[first:])) for name, values in per_frame.items()}
    return {"prime_frames": first, "n_clips": len(videos), "per_frame": per_frame, "unprimed": unprimed}


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def evaluate(dataset, vqvae: torch.nn.Module | None = None, prior: torch.nn.Module | None = None,
             n_clips: int = fvd_lib.N_SAMPLES, i3d: torch.nn.Module | None = None, batch_size: int = 16,
             seed: int = 0, variance: float | None = None, i3d_size: int = fvd_lib.RESOLUTION,
             judge: torch.nn.Module | None = None, prime_steps: int | None = None,
             action_names: list[str] | None = None) -> dict:
    """The paper's numbers and the ones that tell a working model from a broken one, on the first ``n_clips``
    clips of the held-out ``dataset``:

    - ``nmse`` (VQ-VAE), ``bits_per_dim`` (prior); with ``i3d``: ``fvd``, ``fvd_star``, ``fvd_recon``;
    - with a Moving MNIST ``judge`` (:mod:`videogen_lite.judge`): its accuracy on the real clips,
      ``persistence`` per frame (real clips, reconstructions, samples conditioned on the clips' first
      frames) and the Fréchet judge distance of reconstructions and samples to the real clips, with its
      floor: real clips against the next ``n_clips`` clips of the split (all at ``n_clips`` per set);
    - with ``prime_steps``: the primed continuation error (:func:`primed_continuation`) and its baselines;
    - for an action-conditioned prior: ``action_following`` (mean horizontal pan per action) of the real
      clips and of samples given the same actions.

    ``variance`` is the NMSE denominator (default: the one the VQ-VAE was trained with). FVD* decodes the
    real clips with the prior's own VQ-VAE (the one that decodes its samples). Samples are drawn from a
    generator seeded with ``seed``. Returns a dict (``None`` for what was not computed).
    """
    if vqvae is None and prior is None:
        raise ValueError("nothing to evaluate: give a VQ-VAE, a prior or both")
    models = [m for m in (vqvae, prior, judge) if m is not None]
    modes = [m.training for m in models]
    try:
        for model in models:  # a VQ-VAE in training mode would update its codebook
            model.eval()
        with torch.no_grad():
            return _evaluate(dataset, vqvae, prior, n_clips, i3d, batch_size, seed, variance, i3d_size, judge,
                             prime_steps, action_names)
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)


def _clips(dataset, first: int, n: int) -> dict:
    """Clips ``first .. first+n-1`` of ``dataset`` -> ``dict(video [n, C, T, H, W], actions [n, T, A] or None,
    label)``."""
    items = [dataset[i] for i in range(first, first + n)]
    out = {"video": torch.stack([torch.as_tensor(item["video"]) for item in items])}
    actions = torch.as_tensor(items[0].get("actions", torch.zeros(0)))
    out["actions"] = torch.stack([torch.as_tensor(i["actions"]) for i in items]).float() if actions.numel() else None
    out["label"] = torch.stack([torch.as_tensor(item["label"]) for item in items]) if "label" in items[0] else None
    return out


def _evaluate(dataset, vqvae, prior, n_clips, i3d, batch_size, seed, variance, i3d_size, judge, prime_steps,
              action_names) -> dict:
    n = min(n_clips, len(dataset))
    if n < 2:
        raise ValueError(f"need at least 2 held-out clips, the split has {len(dataset)} and n_clips = {n_clips}")
    if vqvae is not None:
        variance = float(vqvae.data_variance) if variance is None else variance
        if not math.isfinite(variance) or variance <= 0:
            raise ValueError("the VQ-VAE records no data variance for NMSE: pass variance (data.variance)")
    decoder = prior.vqvae if prior is not None else vqvae
    device = next((prior or vqvae).parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    clips = _clips(dataset, 0, n)
    acting = prior is not None and prior.cfg.action_dim > 0 and clips["actions"] is not None
    want_samples = prior is not None and (i3d is not None or judge is not None or acting)
    squared_error = pixels = nats = 0.0
    recons, samples = [], []
    for start in range(0, n, batch_size):
        video = clips["video"][start : start + batch_size].to(device)  # [B, C, T, H, W]
        actions = None if clips["actions"] is None else clips["actions"][start : start + batch_size].to(device)
        recon = None
        if vqvae is not None:
            recon = vqvae(video)["recon"]  # [B, C, T, H, W]
            squared_error += float(normalized_mse(recon, video, variance)) * video.numel()
            pixels += video.numel()
        if prior is not None:
            frames, acts = conditioning(prior, video, actions)
            nats += float(prior(video, frames, acts)["loss"]) * len(video)
            if want_samples:  # [B, C, T, H, W] in [0, 1]
                samples.append(prior.sample(len(video), frames, acts, generator=generator).cpu())
        if decoder is not vqvae:  # the reconstructions the prior's samples are compared with
            recon = decoder.decode(decoder.encode(video))
        recons.append(((recon + 0.5).clamp(0, 1)).cpu())
    real = (clips["video"] + 0.5).clamp(0, 1)
    recons = torch.cat(recons)
    samples = torch.cat(samples) if samples else None
    result = {
        "n_clips": n,
        "nmse": squared_error / pixels if vqvae is not None else None,
        "bits_per_dim": bits_per_dim(nats / n) if prior is not None else None,
        "fvd": None, "fvd_star": None, "fvd_recon": None,
    }
    if i3d is not None:
        feats = {name: fvd_lib.fvd_features(v, i3d, batch_size, i3d_size) for name, v in
                 (("real", real), ("recon", recons), ("samples", samples)) if v is not None}
        result["fvd_recon"] = frechet_distance(feats["real"], feats["recon"])
        if samples is not None:
            result["fvd"] = frechet_distance(feats["real"], feats["samples"])
            result["fvd_star"] = frechet_distance(feats["recon"], feats["samples"])
    if judge is not None:
        result.update(_judge_metrics(judge, dataset, n, real, recons, samples, clips["label"], batch_size))
    if prior is not None and prime_steps:
        result["continuation"] = primed_continuation(prior, clips["video"], clips["actions"], prime_steps, seed,
                                                     batch_size)
    if acting:
        from .metrics import action_following

        result["action_following"] = {
            "real": action_following(real, clips["actions"], action_names)["mean_pan"],
            "samples": action_following(samples, clips["actions"], action_names)["mean_pan"],
        }
    return result


def _judge_metrics(judge, dataset, n, real, recons, samples, labels, batch_size) -> dict:
    """The Moving MNIST judge's accuracy, persistence per frame and Fréchet distances, all at ``n`` clips."""
    from .judge import digit_persistence, frechet_judge_distance

    if labels is None or not hasattr(dataset, "trajectories"):
        raise ValueError("the judge measures generated Moving MNIST (data.name = moving_mnist), whose clips carry "
                         f"their digits; this dataset is a {type(dataset).__name__}")
    sets = {"real": real, "reconstructions": recons, "samples": samples}
    persistence = {name: digit_persistence(judge, v, labels, batch_size).tolist() for name, v in sets.items()
                   if v is not None}
    frechet = {name + "_vs_real": frechet_judge_distance(judge, real, v, batch_size)
               for name, v in sets.items() if v is not None and name != "real"}
    floor = None
    if len(dataset) >= 2 * n:  # the floor: two disjoint sets of real clips of the same size
        floor = frechet_judge_distance(judge, real, (_clips(dataset, n, n)["video"] + 0.5).clamp(0, 1), batch_size)
    # the judge's accuracy on real frames is the persistence of the real clips, averaged over frames
    return {"judge_accuracy": float(np.mean(persistence["real"])), "persistence": persistence,
            "frechet_judge": {"real_vs_real": floor, **frechet}, "frechet_clips": n}


ROWS = [  # key, label, what it compares
    ("nmse", "NMSE (VQ-VAE)", "reconstruction error / data variance (Table 3)"),
    ("bits_per_dim", "bits/dim (prior)", "cross-entropy per latent code, in bits (Tables 2, 4)"),
    ("fvd", "FVD", "real clips vs samples (Table 1)"),
    ("fvd_star", "FVD*", "VQ-VAE reconstructions vs samples (Table 2)"),
    ("fvd_recon", "FVD (reconstructions)", "real clips vs reconstructions (Table 3)"),
]


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def table(result: dict) -> str:
    """The result as a table like the paper's, then the judge's, continuation and action rows where measured."""
    lines = [f"{'metric':<34}{'value':>10}   compares", "-" * 88]
    for key, label, what in ROWS:
        lines.append(f"{label:<34}{_fmt(result.get(key)):>10}   {what} (lower is better)")
    if result.get("persistence"):
        n = result["frechet_clips"]
        lines.append(f"{'judge accuracy (real frames)':<34}{_fmt(result['judge_accuracy']):>10}   "
                     "share of real frames whose digits the judge names (higher is better)")
        for name, values in result["persistence"].items():
            late = float(np.mean(values[len(values) // 2 :]))
            lines.append(f"{'digit persistence, ' + name:<34}{_fmt(late):>10}   share of frames in the second half "
                         "that show the clip's digits (higher is better)")
        for name, value in result["frechet_judge"].items():
            lines.append(f"{'Fréchet judge distance, ' + name.replace('_vs_', ' vs '):<34}{_fmt(value):>10}   "
                         f"judge clip features, {n} clips per set (lower is better)")
    if result.get("continuation"):
        c = result["continuation"]
        for name, value in c["unprimed"].items():
            lines.append(f"{'continuation NMSE, ' + name:<34}{_fmt(value):>10}   frames {c['prime_frames']}+ of "
                         f"{c['n_clips']} clips primed with {c['prime_frames']} real frames (lower is better)")
    if result.get("action_following"):
        for action, real in result["action_following"]["real"].items():
            sample = result["action_following"]["samples"][action]
            lines.append(f"{'pan per frame, ' + str(action):<34}{_fmt(sample):>10}   samples, px per frame (real "
                         f"clips: {_fmt(real)})")
    return "\n".join(lines)


def run(args) -> int:
    """The ``videogen-lite eval`` command (arguments from :func:`videogen_lite.cli.build_parser`)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.vqvae and not args.prior:
        raise ValueError("eval needs --vqvae RUN_OR_CHECKPOINT, --prior RUN_OR_CHECKPOINT or both")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    vqvae, recorded = resolve(args.vqvae, device) if args.vqvae else (None, None)
    prior, prior_recorded = resolve(args.prior, device) if args.prior else (None, None)
    for model, flag, kind in ((vqvae, "--vqvae", "VQVAE"), (prior, "--prior", "VideoGPT")):
        if model is not None and type(model).__name__ != kind:
            raise ValueError(f"{flag} must be a {kind}, got a {type(model).__name__}")
    if vqvae is not None and prior is not None and not same_weights(vqvae, prior.vqvae):
        print("note: --vqvae differs from the VQ-VAE inside --prior; NMSE is of --vqvae, FVD* uses the prior's",
              file=sys.stderr)
    if args.config:
        data_cfg = load_config(args.config).data
    elif (recorded or prior_recorded) is not None:
        data_cfg = from_dict(recorded or prior_recorded, DataConfig)
    else:
        raise ValueError("the model file does not say which data it was trained on: pass --config NAME|PATH "
                         "(e.g. --config moving_mnist_lite)")
    for model in (vqvae, prior):
        if model is not None:
            check_data(data_cfg, model)
    dataset = build_dataset(data_cfg, args.split)
    variance = None
    if vqvae is not None and not math.isfinite(float(vqvae.data_variance)):
        variance = data_cfg.variance or data_variance(build_dataset(data_cfg, "train"))
    i3d = fvd_lib.load_i3d(args.i3d, device) if args.i3d else None
    n = min(args.n_clips, len(dataset))
    print(f"evaluating on {n} {data_cfg.name} {args.split} clips of {data_cfg.sequence_length} frames"
          + (" (FVD on CPU takes a while: about a second per clip and set)" if i3d is not None and device == "cpu"
             else ""), file=sys.stderr)
    judge = None
    if args.judge:
        judge, _ = resolve(args.judge, device)
        if type(judge).__name__ != "Judge":
            raise ValueError(f"--judge must be a Moving MNIST judge (videogen-lite train judge), got a "
                             f"{type(judge).__name__}")
    action_names = None
    if getattr(dataset, "attrs", None) and "action_names" in dataset.attrs:
        action_names = [str(a) for a in dataset.attrs["action_names"]]
    result = evaluate(dataset, vqvae, prior, args.n_clips, i3d, args.batch_size, args.seed, variance, judge=judge,
                      prime_steps=args.prime_steps if prior is not None else None, action_names=action_names)
    result = {"vqvae": args.vqvae, "prior": args.prior, "judge": args.judge, "data": to_dict(data_cfg),
              "split": args.split,
              "clip_length": data_cfg.sequence_length, "i3d": args.i3d, "seed": args.seed, **result}
    if i3d is None:
        result["fvd_note"] = fvd_lib.WEIGHTS_HELP
    elif n < fvd_lib.N_SAMPLES:
        result["fvd_note"] = (f"FVD from {n} clips per set, not the standard {fvd_lib.N_SAMPLES}: "
                              "compare only with numbers computed on as many clips")
    print(table(result))
    if "fvd_note" in result:
        print("\n" + result["fvd_note"])
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {out}")
    return 0
