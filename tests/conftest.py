import os

import pytest
import torch

import videogen_lite as vg

torch.set_num_threads(1)
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(autouse=True)
def one_blas_thread():
    """numpy's OpenBLAS threads fight torch's for the 2 cores: a 400 x 400 eigh then takes seconds, not ms."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture
def tiny_cfg():
    """A small Moving MNIST config: 8x32x32 clips, a narrow VQ-VAE, a 2-layer prior."""
    return vg.load_config(
        "moving_mnist_lite",
        [
            "data.sequence_length=8", "data.resolution=32", "data.variance=0.04",
            "vqvae.n_hiddens=16", "vqvae.res_hiddens=8", "vqvae.n_codes=32", "vqvae.embedding_dim=8",
            "vqvae.downsample=[2,4,4]",
            "prior.hidden=32", "prior.heads=2", "prior.layers=2", "prior.resnet_units=16",
        ],
    )
