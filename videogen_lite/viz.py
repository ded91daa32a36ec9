"""Showing and saving videos with mediapy (ffmpeg from the ``imageio-ffmpeg`` wheel, so no system ffmpeg).

Videos here are float ``[N, C, T, H, W]`` (or one ``[C, T, H, W]``) in [0, 1], what ``prior.sample`` returns;
a dataset's clips in [-0.5, 0.5] need ``+ 0.5`` first.
"""
from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import mediapy
import numpy as np
import torch

mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())


def to_uint8(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float ``[N, C, T, H, W]`` or ``[C, T, H, W]`` in [0, 1] -> uint8 ``[N, T, H, W, C]`` (values clipped)."""
    video = video.detach().float().cpu().numpy() if isinstance(video, torch.Tensor) else np.asarray(video, np.float32)
    if video.ndim == 4:
        video = video[None]
    if video.ndim != 5 or video.shape[1] not in (1, 3):
        raise ValueError(f"expected a video [N, C, T, H, W] or [C, T, H, W] with C = 1 or 3, got shape "
                         f"{list(video.shape)}")
    frames = np.clip(np.round(video * 255.0), 0, 255).astype(np.uint8)
    return frames.transpose(0, 2, 3, 4, 1)  # [N, T, H, W, C]


def _for_mediapy(frames: np.ndarray) -> np.ndarray:
    """``[..., H, W, C]`` -> grey frames as ``[..., H, W]``, colour as they are (what mediapy expects)."""
    return frames[..., 0] if frames.shape[-1] == 1 else frames


def tile(video: torch.Tensor | np.ndarray, gap: int = 2) -> np.ndarray:
    """The ``N`` videos side by side, ``gap`` white pixels apart: ``[N, C, T, H, W] -> uint8 [T, H, N*W + gaps, C]``."""
    frames = to_uint8(video)  # [N, T, H, W, C]
    n, t, h, _, c = frames.shape
    spacer = np.full((t, h, gap, c), 255, np.uint8)
    parts = []
    for i in range(n):
        parts += [frames[i]] + ([spacer] if i < n - 1 and gap else [])
    return np.concatenate(parts, axis=2)


def write_video(path: str | Path, video: torch.Tensor | np.ndarray, fps: float = 4) -> Path:
    """Write ``video [N, C, T, H, W]`` in [0, 1] to a ``.gif`` or ``.mp4`` file, the N videos side by side."""
    path = Path(path)
    if path.suffix.lower() not in (".gif", ".mp4"):
        raise ValueError(f"write_video writes .gif or .mp4 files, got {str(path)!r}")
    frames = tile(video)  # [T, H, W, C]
    if path.suffix.lower() == ".mp4":  # H.264 in yuv420p needs even sides
        frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)))
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "gif" if path.suffix.lower() == ".gif" else "h264"
    mediapy.write_video(path, _for_mediapy(frames), fps=fps, codec=codec)
    return path


def show_videos(videos: torch.Tensor | np.ndarray, titles: list[str] | None = None, fps: float = 4,
                height: int = 128, **kwargs) -> None:
    """Show ``videos [N, C, T, H, W]`` in [0, 1] in a notebook, one after the other (as GIFs, ``height`` px tall)."""
    frames = to_uint8(videos)  # [N, T, H, W, C]
    if titles is not None and len(titles) != len(frames):
        raise ValueError(f"got {len(titles)} titles for {len(frames)} videos")
    kwargs.setdefault("codec", "gif")
    mediapy.show_videos([_for_mediapy(f) for f in frames], titles=titles, fps=fps, height=height, **kwargs)
