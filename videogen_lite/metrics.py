"""Numbers the paper reports: normalized MSE, bits per dimension, and the Fréchet distance behind FVD."""
from __future__ import annotations

import math

import numpy as np
import torch
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
    return torch.mean((recon - target) ** 2) / variance


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
