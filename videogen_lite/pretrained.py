"""The small pretrained "lite" checkpoints that ship in the repository's ``checkpoints/`` folder.

Each was trained by the project's own command line; ``checkpoints/MANIFEST.json`` records how (command,
config, steps, wall time, hardware, metrics, code commit, sha256). ``pretrained("mnist_vqvae_lite")``
loads one after checking its sha256 against the manifest.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .io import load, load_state, read_metadata


def checkpoints_dir() -> Path:
    """``$VIDEOGEN_LITE_CHECKPOINTS``, else the ``checkpoints/`` folder of the repository holding the package."""
    if os.environ.get("VIDEOGEN_LITE_CHECKPOINTS"):
        return Path(os.environ["VIDEOGEN_LITE_CHECKPOINTS"])
    return Path(__file__).resolve().parent.parent / "checkpoints"


def manifest() -> dict:
    path = checkpoints_dir() / "MANIFEST.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no {path}: the lite checkpoints live in the repository's checkpoints/ folder; clone the repository "
            "(or set VIDEOGEN_LITE_CHECKPOINTS to that folder)"
        )
    return json.loads(path.read_text())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def entry(name: str) -> dict:
    """The manifest entry of checkpoint ``name`` (command, config, steps, metrics, ...)."""
    entries = manifest()["checkpoints"]
    if name not in entries:
        raise ValueError(f"no checkpoint named {name!r}: the manifest lists {', '.join(sorted(entries))}")
    return entries[name]


def pretrained(name: str, device: str = "cpu"):
    """Load lite checkpoint ``name`` (its sha256 checked against the manifest), in eval mode.

    An entry with ``inside`` ships no file of its own: its weights are the ``.vqvae`` of that prior.
    """
    info = entry(name)
    if info.get("inside"):  # a VQ-VAE that ships inside the prior trained on it
        return _vqvae_inside(_checked_path(info["inside"]), device)
    return load(_checked_path(name), device)


def _checked_path(name: str) -> Path:
    info = entry(name)
    path = checkpoints_dir() / info["path"]
    if sha256(path) != info["sha256"]:
        raise ValueError(f"{path} does not match the sha256 in MANIFEST.json: the file was changed or is corrupt")
    return path


def _vqvae_inside(path: Path, device: str):
    """The frozen VQ-VAE saved inside a prior's file, built and loaded alone (the prior is never built)."""
    from safetensors import safe_open

    from .vqvae import VQVAE

    config = json.loads(read_metadata(path)["config"])
    vq = VQVAE.from_config_dict(config)
    with safe_open(str(path), framework="pt") as f:
        state = {key.removeprefix("vqvae."): f.get_tensor(key) for key in f.keys() if key.startswith("vqvae.")}
    load_state(vq, state, f"{path} (its .vqvae)")
    return vq.to(device).eval()


def resolve(name_or_path, device="cpu"):
    """A model from a run folder, a ``.safetensors`` file or a lite checkpoint name ->
    ``(model, the data config it was trained on as a dict, or None when the file does not record it)``."""
    path = Path(name_or_path)
    if path.exists():
        run_dir = path if path.is_dir() else path.parent.parent if path.parent.name == "checkpoints" else None
        recorded = None
        if run_dir is not None and (run_dir / "config.json").exists():
            recorded = json.loads((run_dir / "config.json").read_text()).get("config", {}).get("data")
        return load(path, device), recorded
    try:
        info = entry(str(name_or_path))
    except (ValueError, FileNotFoundError) as err:
        raise FileNotFoundError(f"{str(name_or_path)!r} is neither a run folder or .safetensors file nor a lite "
                                f"checkpoint name ({err})") from err
    return pretrained(str(name_or_path), device), info.get("config", {}).get("data")

