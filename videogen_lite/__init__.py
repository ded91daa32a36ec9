"""videogen-lite: VideoGen (a VQ-VAE over videos, then a GPT prior over its codes), small and readable.

    import videogen_lite as vg
    cfg = vg.load_config("moving_mnist_lite")
    vq = vg.VQVAE(cfg.vqvae)
"""
from . import data, metrics
from .config import Config, load_config
from .io import load, save
from .pretrained import pretrained
from .vqvae import VQVAE

__version__ = "0.1.0"

__all__ = ["Config", "VQVAE", "VideoGPT", "data", "load", "load_config", "metrics", "pretrained", "save"]


def __getattr__(name):  # VideoGPT lives in gpt.py, imported on first use
    if name == "VideoGPT":
        from .gpt import VideoGPT

        return VideoGPT
    raise AttributeError(f"module 'videogen_lite' has no attribute {name!r}")
