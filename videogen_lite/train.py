"""One training loop for both stages (VQ-VAE and prior): data-parallel, checkpointed, resumable.

A model plugs in through ``model.forward_batch(batch) -> dict`` with a scalar ``loss`` and any other scalar
metrics to log. The loop:

- draws global batches from :class:`StepSampler` (a seeded permutation per epoch, batch ``s`` is a pure
  function of ``(seed, s)``), each process taking its contiguous slice, so a run means the same thing on 1
  or N processes and a resumed run sees exactly the batches it would have seen. The sampler hands out
  ``(epoch, index)`` keys: datasets whose training items change per epoch (fresh Moving MNIST clips,
  random windows of longer episodes) define ``item(index, epoch)``, so the item is a pure function of
  ``(seed, epoch, index)`` in any worker process, persistent or not, and after a resume;
- logs the metrics of the whole global batch: under torchrun each process's means are all-reduced
  (weighted by its share of the batch), and the codebook's perplexity comes from the all-reduced histogram;
- runs under ``torchrun`` as DistributedDataParallel (NCCL on GPUs, gloo on CPU), logging and saving on
  rank 0 only;
- writes ``RUN/checkpoints/step_XXXXXXXX.safetensors`` (weights + config, :func:`videogen_lite.save`) and
  ``.state.pt`` beside it (optimizer, scheduler, step, RNG states), atomically, keeping the last K;
- logs JSONL lines to ``RUN/log.jsonl`` (and TensorBoard scalars to ``RUN/tensorboard`` when the
  ``tensorboard`` package is installed) and ends with held-out metrics in ``RUN/metrics.json``.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import resource
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .config import TrainConfig
from .io import atomic_write, checkpoints_of, load_state, save

# ---------------------------------------------------------------------------------------------------
# processes


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world_size, device). Under torchrun, joins the process group (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x{max(1, int(os.environ.get('WORLD_SIZE', '1')))}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ---------------------------------------------------------------------------------------------------
# data order


class StepSampler:
    """Per-process lists of ``(epoch, index)`` keys for steps ``start, start+1, ..., steps-1``.

    Epoch ``e`` is a permutation of the dataset drawn from ``seed + e``; global batch ``s`` is its slice
    ``[j*B, (j+1)*B)`` with ``j = s mod (N // B)``. Process ``rank`` of ``world`` takes the ``rank``-th
    contiguous ``B / world`` of it (the incomplete last batch of an epoch is dropped). Each index travels
    with its epoch, which :class:`EpochItems` hands to the dataset.
    """

    def __init__(self, n: int, batch_size: int, steps: int, seed: int = 0, rank: int = 0, world: int = 1,
                 start: int = 0):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} (the global batch) is not divisible by {world} processes")
        if n < batch_size:
            raise ValueError(f"the dataset holds {n} clips, fewer than one batch of {batch_size}")
        self.n, self.batch_size, self.steps, self.seed = n, batch_size, steps, seed
        self.rank, self.world, self.start = rank, world, start
        self.per_epoch = n // batch_size

    def epoch(self, step: int) -> int:
        return step // self.per_epoch

    def global_batch(self, step: int) -> list[int]:
        epoch, j = divmod(step, self.per_epoch)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
        return perm[j * self.batch_size : (j + 1) * self.batch_size].tolist()

    def __iter__(self):
        share = self.batch_size // self.world
        for step in range(self.start, self.steps):
            epoch = self.epoch(step)
            yield [(epoch, i) for i in self.global_batch(step)[self.rank * share : (self.rank + 1) * share]]

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


class EpochItems(Dataset):
    """``dataset`` indexed by the sampler's ``(epoch, index)`` keys: ``dataset.item(index, epoch)`` where the
    dataset defines it (its training items change per epoch), else ``dataset[index]``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.item = getattr(dataset, "item", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        return self.item(index, epoch) if self.item is not None else self.dataset[index]


class RandomCrops(Dataset):
    """Random ``(t, h, w)`` crops of ``dataset``'s clips (``train.crop``), for training a convolutional VQ-VAE
    on smaller inputs than it encodes later. Offsets are multiples of ``align`` (the downsampling factors), so
    a crop's latent grid lines up with the whole clip's; each crop is a pure function of
    ``(seed, epoch, index)``, the same in any worker and after a resume. Items hold only ``video``."""

    def __init__(self, dataset: Dataset, size, align=(1, 1, 1), seed: int = 0):
        self.dataset, self.size, self.align, self.seed = dataset, tuple(size), tuple(align), seed
        self.inner = EpochItems(dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.item(index, 0)

    def item(self, index: int, epoch: int) -> dict:
        video = self.inner[(epoch, index)]["video"]  # [C, T, H, W]
        full = tuple(video.shape[1:])
        if any(n > m for n, m in zip(self.size, full)):
            raise ValueError(f"crop {list(self.size)} is larger than the clip's T x H x W = {list(full)}")
        rng = np.random.default_rng([self.seed, epoch, index])
        starts = [int(rng.integers(0, (m - n) // a + 1)) * a for n, m, a in zip(self.size, full, self.align)]
        (t, y, x), (dt, dy, dx) = starts, self.size
        return dict(video=video[:, t : t + dt, y : y + dy, x : x + dx].contiguous())


def collate(items: list[dict]) -> dict:
    return {key: torch.stack([torch.as_tensor(item[key]) for item in items]) for key in items[0]}


def batches(dataset: Dataset, sampler, num_workers: int) -> DataLoader:
    # its own generator, so creating the loader never consumes the global RNG (resume stays exact)
    return DataLoader(EpochItems(dataset), batch_sampler=sampler, num_workers=num_workers, collate_fn=collate,
                      generator=torch.Generator().manual_seed(0), persistent_workers=num_workers > 0)


def tensorboard_writer(run_dir: Path):
    """A TensorBoard writer into ``RUN/tensorboard`` when the ``tensorboard`` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def micro_batches(batch: dict, n: int) -> list[dict]:
    """Split a batch into ``n`` equal micro-batches (gradient accumulation)."""
    size = len(next(iter(batch.values())))
    if size % n:
        raise ValueError(f"the per-process batch of {size} clips does not split into grad_accumulation={n} "
                         "equal micro-batches")
    return [{k: v[i * size // n : (i + 1) * size // n] for k, v in batch.items()} for i in range(n)]


def out_of_time(began: float, max_minutes: float, world: int) -> bool:
    """Whether the time budget is spent; under torchrun all processes agree (rank clocks differ)."""
    flag = torch.tensor(float(time.time() - began > 60 * max_minutes))
    if world > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag)


def global_means(out: dict, world: int) -> dict:
    """Per-process means of equal shards -> the means over the whole global batch (all-reduced)."""
    if world == 1:
        return out
    keys = sorted(out)
    values = torch.tensor([out[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(values)
    return {k: float(v) / world for k, v in zip(keys, values)}


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ---------------------------------------------------------------------------------------------------
# optimisation


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        if cfg.lr_decay == "cosine":
            progress = min(1.0, step / max(1, cfg.steps))
            return warm * 0.5 * (1 + math.cos(math.pi * progress))
        return warm

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def rng_state() -> dict:
    return dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


def rng_states(world: int) -> list[dict]:
    """Every process's RNG state, in rank order (collective under torchrun: all ranks must call it)."""
    if world == 1:
        return [rng_state()]
    states = [None] * world
    dist.all_gather_object(states, rng_state())
    return states


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


# ---------------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(run_dir: Path, model, optimizer, scheduler, step: int, keep: int,
                    rng: list[dict] | None = None) -> Path:
    """Write step ``step``'s weights and state; ``rng``: every process's RNG state (default: this one's)."""
    folder = run_dir / "checkpoints"
    stem = folder / f"step_{step:08d}"
    state = dict(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), step=step,
                 rng=rng if rng is not None else [rng_state()])
    atomic_write(stem.with_suffix(".state.pt"), lambda tmp: torch.save(state, tmp))
    weights = save(model, stem.with_suffix(".safetensors"))  # written last: its presence marks a whole checkpoint
    for _, old in checkpoints_of(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".state.pt").unlink(missing_ok=True)
    return weights


def load_checkpoint(run_dir: Path, model, optimizer, scheduler, rank: int = 0) -> int:
    """Restore the latest whole checkpoint of ``run_dir`` (process ``rank`` takes its own RNG state); returns its step."""
    from safetensors.torch import load_file

    found = [(s, p) for s, p in checkpoints_of(run_dir) if p.with_suffix(".state.pt").exists()]
    if not found:
        raise FileNotFoundError(f"--resume: {run_dir} holds no checkpoint to resume from")
    step, weights = found[-1]
    load_state(getattr(model, "module", model), load_file(str(weights)), str(weights))
    state = torch.load(weights.with_suffix(".state.pt"), weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    states = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
    set_rng_state(states[rank % len(states)])
    return step


# ---------------------------------------------------------------------------------------------------
# the loop


class BatchForward(torch.nn.Module):
    """Exposes ``model.forward_batch`` as ``forward``, so DistributedDataParallel's hooks see every step."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        return self.model.forward_batch(batch)


def scalars(out: dict) -> dict:
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()
            if (isinstance(v, torch.Tensor) and v.numel() == 1) or isinstance(v, (int, float))}


@torch.no_grad()
def evaluate(model, dataset: Dataset, batch_size: int, max_batches: int, device: torch.device,
             num_workers: int = 0) -> dict:
    """Mean of ``forward_batch``'s scalars over the first ``max_batches`` batches of ``dataset``, in eval mode."""
    was_training = model.training
    model.eval()
    n = min(len(dataset), batch_size * max_batches)
    loader = DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=collate)
    totals, count = {}, 0
    for batch in loader:
        out = scalars(model.forward_batch(to_device(batch, device)))
        size = len(next(iter(batch.values())))
        for k, v in out.items():
            totals[k] = totals.get(k, 0.0) + v * size
        count += size
    model.train(was_training)
    return {k: v / max(count, 1) for k, v in totals.items()}


def fit(model, train_set: Dataset, cfg: TrainConfig, run_dir: str | Path, *, val_set: Dataset | None = None,
        run_config: dict | None = None, resume: bool = False, max_minutes: float | None = None,
        progress: bool = True) -> dict:
    """Train ``model`` on ``train_set`` for ``cfg.steps`` steps into ``run_dir``; returns the summary it writes."""
    run_dir = Path(run_dir)
    rank, world, device = setup_distributed()
    main = rank == 0
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if run_config is not None:
            atomic_write(run_dir / "config.json", lambda tmp: Path(tmp).write_text(json.dumps(run_config, indent=2)))
    seed_everything(cfg.seed + rank)  # dropout masks differ between processes (as nanoGPT seeds them)
    model.to(device).train()
    optimizer, scheduler = make_optimizer(model, cfg)
    start = load_checkpoint(run_dir, model, optimizer, scheduler, rank) if resume else 0
    if cfg.activation_checkpointing and hasattr(model, "activation_checkpointing"):
        model.activation_checkpointing = True  # recompute each transformer block in the backward pass
    step_fn = BatchForward(model)
    if world > 1:
        step_fn = torch.nn.parallel.DistributedDataParallel(step_fn)
    if cfg.compile:
        if hasattr(model, "compile_modules"):  # the models compile their static-shaped parts only
            model.compile_modules()
        else:
            step_fn = torch.compile(step_fn)
    log_path = run_dir / "log.jsonl"
    if main and not resume and log_path.exists():
        log_path.unlink()
    if main and resume and log_path.exists():  # drop lines logged after the checkpoint we resume from
        kept = [line for line in log_path.read_text().splitlines() if json.loads(line).get("step", 0) <= start]
        log_path.write_text("".join(line + "\n" for line in kept))

    board = tensorboard_writer(run_dir) if main else None
    tokens_per_clip = getattr(model, "length", None)  # a prior's tokens per video (t*h*w latent codes)
    sampler = StepSampler(len(train_set), cfg.batch_size, cfg.steps, cfg.seed, rank, world, start)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext())
    bar = tqdm(total=cfg.steps, initial=start, desc=f"training {type(model).__name__}", disable=not (main and progress),
               dynamic_ncols=True)
    began, window, window_start, step = time.time(), [], time.time(), start
    last_checkpoint, stopped_early = None, False
    if resume:
        last_checkpoint = checkpoints_of(run_dir)[-1][1] if checkpoints_of(run_dir) else None
    for batch in batches(train_set, sampler, cfg.num_workers):
        batch = to_device(batch, device)
        optimizer.zero_grad(set_to_none=True)
        micro_outs = []
        for i, micro in enumerate(micro_batches(batch, cfg.grad_accumulation)):
            last_micro = i == cfg.grad_accumulation - 1
            sync = nullcontext() if world == 1 or last_micro else step_fn.no_sync()
            with sync:
                with autocast:
                    micro_out = step_fn(micro)
                loss = micro_out["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss ({loss.item()}) at step {step + 1}; the last good checkpoint is "
                        f"{last_checkpoint or 'none (no checkpoint written yet)'}. Lower the learning rate or "
                        "enable gradient clipping (train.grad_clip) and resume from it."
                    )
                (loss / cfg.grad_accumulation).backward()
            micro_outs.append(scalars(micro_out))
        out = global_means({k: float(np.mean([m[k] for m in micro_outs])) for k in micro_outs[0]}, world)
        loss = torch.tensor(out["loss"])
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        window.append(out)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if main and (step % cfg.log_every == 0 or step == cfg.steps):
            now = time.time()
            record = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            seconds = max(now - window_start, 1e-9)
            record.update(step=step, lr=scheduler.get_last_lr()[0], elapsed_s=round(now - began, 2),
                          step_s=round(seconds / len(window), 4),
                          clips_per_s=round(len(window) * cfg.batch_size / seconds, 3),
                          peak_memory_mb=round(peak_memory_mb(device), 1))
            if tokens_per_clip:
                record["tokens_per_s"] = round(len(window) * cfg.batch_size * tokens_per_clip / seconds, 1)
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if board is not None:
                for key, value in record.items():
                    if key != "step":
                        board.add_scalar(key, value, step)
            window, window_start = [], now
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            states = rng_states(world)
            if main:
                last_checkpoint = save_checkpoint(run_dir, model, optimizer, scheduler, step, cfg.keep_checkpoints,
                                                  states)
        if max_minutes is not None and out_of_time(began, max_minutes, world):
            stopped_early = step < cfg.steps
            break
    bar.close()
    if board is not None:
        board.close()
    saved_last = step % cfg.checkpoint_every == 0 or step == cfg.steps  # the same on every rank
    if not saved_last:
        states = rng_states(world)
        if main:
            last_checkpoint = save_checkpoint(run_dir, model, optimizer, scheduler, step, cfg.keep_checkpoints,
                                              states)
    summary = dict(steps=step, wall_time_s=round(time.time() - began, 1), stopped_early=stopped_early,
                   hardware=hardware_description(device), processes=world,
                   checkpoint=str(last_checkpoint.relative_to(run_dir)) if main else None)
    if val_set is not None and main:
        summary["held_out"] = evaluate(model, val_set, max(1, cfg.batch_size // world), cfg.eval_batches, device)
    if main:
        atomic_write(run_dir / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    if world > 1:
        dist.barrier()
    return summary
