"""Saving and loading models: safetensors weights with the model's config as JSON metadata. Never pickle.

``save(model, "vq.safetensors")`` writes one self-describing file (atomically: a temporary file, fsync,
rename). ``load(path)`` rebuilds the model from it; ``load(run_dir)`` takes a training run's latest
checkpoint.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "videogen-lite"
CHECKPOINT_PATTERN = re.compile(r"step_(\d+)\.safetensors$")
MODELS = ("VQVAE", "VideoGPT", "Judge")  # the classes save() writes and load() rebuilds


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then fsync and rename over ``path``: a crash leaves the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def model_class(name: str):
    if name == "VQVAE":
        from .vqvae import VQVAE

        return VQVAE
    if name == "VideoGPT":
        from .gpt import VideoGPT

        return VideoGPT
    if name == "Judge":
        from .judge import Judge

        return Judge
    raise ValueError(f"unknown model class {name!r} in the file's metadata: expected one of {', '.join(MODELS)}")


def save(model: torch.nn.Module, path: str | Path, extra: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``model``'s weights and config to ``path`` (a ``.safetensors`` file).

    ``dtype=torch.float16`` (or bfloat16) stores the float weights at half the size; :func:`load` reads them
    back into the model's float32 parameters. Scalars (such as the data variance) stay in float32."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save() writes a .safetensors file, got {str(path)!r}")
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    if type(model).__name__ not in MODELS:
        raise TypeError(f"save() takes one of {', '.join(MODELS)}, got {type(model).__name__}")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    if dtype is not None:
        if dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise ValueError(f"save(dtype=...) takes torch.float16, torch.bfloat16 or torch.float32, got {dtype}")
        tensors = {k: v.to(dtype) if v.is_floating_point() and v.dim() > 0 else v for k, v in tensors.items()}
    metadata = {"format": FORMAT, "class": type(model).__name__, "config": json.dumps(model.config_dict())}
    if extra:
        metadata["extra"] = json.dumps(extra)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return path


def checkpoints_of(run_dir: str | Path) -> list[tuple[int, Path]]:
    """A run's checkpoints as (step, path), oldest first."""
    found = []
    for p in (Path(run_dir) / "checkpoints").glob("step_*.safetensors"):
        m = CHECKPOINT_PATTERN.search(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def resolve_weights(path: str | Path) -> Path:
    """A weights file, or the latest checkpoint of a run folder."""
    path = Path(path)
    if path.is_dir():
        found = checkpoints_of(path)
        if not found:
            raise FileNotFoundError(f"{path} is a folder without checkpoints/step_*.safetensors: not a training run")
        return found[-1][1]
    if not path.exists():
        raise FileNotFoundError(f"no model at {str(path)!r}: expected a .safetensors file or a training run folder")
    return path


def read_metadata(path: str | Path) -> dict:
    path = resolve_weights(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{path} is not a safetensors file written by videogen_lite.save ({err})") from err
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} has no videogen-lite metadata: was it written by videogen_lite.save()?")
    return metadata


def load_state(model: torch.nn.Module, state: dict, source: str) -> None:
    """Load ``state`` into ``model`` strictly, saying which keys or shapes differ."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        lines = [f"weights in {source} do not fit this {type(model).__name__} (another architecture or config?)"]
        if missing:
            lines.append(f"missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            lines.append(f"unexpected: {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        if wrong:
            lines.append("shape mismatch: " + "; ".join(wrong[:5]))
        raise ValueError("\n  ".join(lines))
    model.load_state_dict(state)


def load(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the model saved at ``path`` (a file from :func:`save` or a run folder), in eval mode."""
    from safetensors.torch import load_file

    weights = resolve_weights(path)
    metadata = read_metadata(weights)
    cls = model_class(metadata["class"])
    model = cls.from_config_dict(json.loads(metadata["config"]))
    load_state(model, load_file(str(weights)), str(weights))
    return model.to(device).eval()
