"""Numbers the paper reports (normalized MSE, bits per dimension, the Fréchet distance behind FVD) and
whether a ViZDoom model follows its actions (:func:`action_following`)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


def data_variance(dataset: Dataset, max_clips: int = 1000) -> float:
    """Pixel variance of a dataset's ``video`` over its first ``max_clips`` clips (the NMSE denominator).

    Computed once on the training split, never per batch, so the loss means the same at every step.
    """
    n = min(len(dataset), max_clips)
    if n == 0:
        raise ValueError("cannot measure the variance of an empty dataset")
    total = total_sq = count = 0.0
    for i in range(n):
        video = dataset[i]["video"].double()
        total += float(video.sum())
        total_sq += float((video * video).sum())
        count += video.numel()
    mean = total / count
    return total_sq / count - mean * mean


def normalized_mse(recon: torch.Tensor, target: torch.Tensor, variance: float) -> torch.Tensor:
    """MSE divided by the data variance: 1.0 is as good as predicting the mean pixel everywhere."""
    return F.mse_loss(recon, target) / variance


def bits_per_dim(nats_per_token: torch.Tensor | float) -> torch.Tensor | float:
    """Cross-entropy in nats per latent token -> bits per latent dimension (divide by ln 2)."""
    return nats_per_token / math.log(2.0)


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]`` each, in float64:

    ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})``.

    The trace of the matrix square root is computed from the eigenvalues of ``sqrt(S_a) S_b sqrt(S_a)``,
    which is symmetric positive semi-definite, so no complex parts appear.
    """
    a = np.asarray(features_a.detach().cpu() if isinstance(features_a, torch.Tensor) else features_a, np.float64)
    b = np.asarray(features_b.detach().cpu() if isinstance(features_b, torch.Tensor) else features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two feature arrays [N, D] with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 samples in each set to fit a covariance, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    sqrt_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


# ---------------------------------------------------------------------------------------------------
# action following (ViZDoom): does the camera turn the way the actions say?


def _as_numpy(x) -> np.ndarray:
    return np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, np.float64)


def _check_unit_range(videos: np.ndarray, name: str) -> None:
    low, high = float(videos.min()), float(videos.max())
    if low < 0 or high > 1:
        raise ValueError(f"{name} must be in [0, 1] (what VideoGPT.sample returns; add 0.5 to dataset clips, which "
                         f"are in [-0.5, 0.5]), got values in [{low:.3f}, {high:.3f}]")


def horizontal_pan(video, max_shift: int | None = None) -> np.ndarray:
    """How far the picture moves sideways between consecutive frames: ``video`` float ``[C, T, H, W]`` in
    [0, 1] -> float64 ``[T-1]`` in pixels per frame, positive when the scene moves right in the image
    (what turning left does).

    Phase correlation on the grayscale frames (channel mean, mean removed, Hann-windowed): the inverse FFT
    of the normalised cross-power spectrum of frames ``t`` and ``t+1`` peaks at their shift; the column of
    the peak, refined to sub-pixel precision by a parabola through it and its two neighbours, is the pan.
    The peak is searched among shifts of at most ``max_shift`` pixels in each direction (default: a quarter
    of the width, 16 px at 64 px; a ViZDoom turn moves about 6 px per frame), which keeps a false peak far
    away (the correlation of a repeated texture, or of a scene change) from counting as a huge pan. A frame
    without texture gives 0.
    """
    video = _as_numpy(video)
    if video.ndim != 4 or video.shape[1] < 2:
        raise ValueError(f"horizontal_pan takes one video float [C, T, H, W] with T >= 2, got shape {list(video.shape)}")
    _check_unit_range(video, "video")
    gray = video.mean(0)  # [T, H, W]
    gray = gray - gray.mean(axis=(1, 2), keepdims=True)
    _, height, width = gray.shape
    limit = width // 4 if max_shift is None else int(max_shift)
    if not 0 < limit < width // 2:
        raise ValueError(f"max_shift must be between 1 and {width // 2 - 1} pixels for frames {width} wide, got {max_shift}")
    spectra = np.fft.fft2(gray * np.outer(np.hanning(height), np.hanning(width)))
    cross = spectra[1:] * np.conj(spectra[:-1])  # [T-1, H, W]
    cross /= np.abs(cross) + 1e-12
    correlation = np.real(np.fft.ifft2(cross))  # peaks at (dy, dx): frame t+1 = frame t moved by (dy, dx)
    # shifts within the limit, in the FFT's wrapped order (0, 1, ..., limit, -limit, ..., -1)
    rows = np.r_[0 : min(limit, height // 2 - 1) + 1, height - min(limit, height // 2 - 1) : height]
    cols = np.r_[0 : limit + 1, width - limit : width]
    pans = np.empty(len(correlation))
    for t, surface in enumerate(correlation):
        window = surface[np.ix_(rows, cols)]
        i, j = np.unravel_index(np.argmax(window), window.shape)
        row, col = rows[i], cols[j]
        left, centre, right = surface[row, (col - 1) % width], surface[row, col], surface[row, (col + 1) % width]
        curvature = left - 2 * centre + right
        offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
        shift = col if col <= width // 2 else col - width  # the FFT wraps: columns past W/2 are negative
        pans[t] = shift + offset
    return pans


def action_following(videos, actions, action_names: list[str] | None = None) -> dict:
    """Mean horizontal pan per action, to check that a model turns when told to (ViZDoom).

    ``videos``: float ``[N, C, T, H, W]`` in [0, 1] (e.g. ``VideoGPT.sample(..., actions=actions)``);
    ``actions``: float ``[N, T, A]``, one-hot per step as the ViZDoom dataset stores them (action ``t`` is the
    one taken at frame ``t``). Each frame pair ``(t, t+1)`` is measured with :func:`horizontal_pan` and
    attributed to action ``t``. Returns ``dict(mean_pan={action: pixels per frame, or None where the action
    never occurs}, count={action: frame pairs})``, keyed by action index, or by name when ``action_names``
    (``A`` names, e.g. the dataset's ``action_names`` attribute) are given. In Health Gathering Supreme,
    TURN_LEFT should pan positive, TURN_RIGHT negative, MOVE_FORWARD and NOOP near 0.
    """
    videos, actions = _as_numpy(videos), _as_numpy(actions)
    if videos.ndim != 5 or videos.shape[2] < 2:
        raise ValueError(f"videos must be float [N, C, T, H, W] with T >= 2, got shape {list(videos.shape)}")
    n, _, length = videos.shape[:3]
    if actions.ndim != 3 or actions.shape[:2] != (n, length) or actions.shape[2] < 1:
        raise ValueError(f"actions must be [N, T, A] = [{n}, {length}, A] (one action per frame of each video), got "
                         f"shape {list(actions.shape)}")
    if not (np.isin(actions, (0.0, 1.0)).all() and (actions.sum(-1) == 1).all()):
        raise ValueError("actions must be one-hot per step (one 1 and zeros elsewhere), as the ViZDoom dataset "
                         "stores them")
    size = actions.shape[2]
    if action_names is not None and len(action_names) != size:
        raise ValueError(f"action_names must name the {size} actions, got {len(action_names)}: {list(action_names)}")
    _check_unit_range(videos, "videos")
    pans = np.stack([horizontal_pan(video) for video in videos])  # [N, T-1]
    taken = actions[:, :-1].argmax(-1)  # [N, T-1]: the action at the earlier frame of each pair
    keys = list(action_names) if action_names is not None else list(range(size))
    mean_pan, count = {}, {}
    for index, key in enumerate(keys):
        chosen = taken == index
        count[key] = int(chosen.sum())
        mean_pan[key] = float(pans[chosen].mean()) if count[key] else None
    return dict(mean_pan=mean_pan, count=count)
