import pytest
import torch
from einops import rearrange

import videogen_lite as vg
from videogen_lite.vq import Codebook, perplexity


def latents(n=4, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, 2, 3, 3, generator=g)


def test_first_batch_initialises_the_codebook_from_latents():
    torch.manual_seed(0)
    cb = Codebook(8, 3)
    z = latents()
    flat = z.permute(0, 2, 3, 4, 1).reshape(-1, 3)
    cb.initialize(flat)
    assert bool(cb.initialized)
    assert (cb.embeddings[:, None, :] == flat[None]).all(-1).any(1).all()  # every code is a copy of a latent
    assert len({tuple(e.tolist()) for e in cb.embeddings}) == 8  # drawn without repeats
    cb.train()
    cb(z)  # the forward pass initialises only once
    assert bool(cb.initialized)


def test_ema_update_matches_the_formula():
    torch.manual_seed(0)
    cb = Codebook(4, 2, decay=0.9, restart_threshold=0.0)
    cb.embeddings.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]))
    cb.embedding_sum.copy_(cb.embeddings)
    cb.cluster_size.fill_(1.0)
    cb.initialized.fill_(True)
    z = torch.tensor([[1.0, 0.0], [9.0, 1.0], [11.0, 1.0]]).t().reshape(1, 2, 1, 1, 3)
    out = cb(z)
    assert out["codes"].flatten().tolist() == [0, 1, 1]
    counts = torch.tensor([0.9 + 0.1 * 1, 0.9 + 0.1 * 2, 0.9, 0.9])
    sums = 0.9 * torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    sums[0] += 0.1 * torch.tensor([1.0, 0.0])
    sums[1] += 0.1 * torch.tensor([20.0, 2.0])
    total = counts.sum()
    smoothed = (counts + cb.eps) / (total + 4 * cb.eps) * total
    assert torch.allclose(cb.cluster_size, counts)
    assert torch.allclose(cb.embeddings, sums / smoothed[:, None], atol=1e-5)


def test_dead_codes_restart_on_current_latents():
    torch.manual_seed(0)
    cb = Codebook(16, 3)
    z = latents(1)
    cb(z)
    cb.cluster_size[:8] = 0.0  # pretend half the codes died
    out = cb(z)
    flat = z.permute(0, 2, 3, 4, 1).reshape(-1, 3)
    restarted = cb.embeddings[:8]
    assert out["restarted"] >= 8
    assert (restarted[:, None, :] == flat[None]).all(-1).any(1).all()  # each restarted code is a current latent
    assert cb.codebook_usage() <= 0.5


def test_eval_mode_and_frozen_change_nothing():
    torch.manual_seed(0)
    cb = Codebook(8, 3)
    cb(latents())
    before = {k: v.clone() for k, v in cb.state_dict().items()}
    cb.eval()
    cb(latents(seed=1))
    cb.train()
    cb.frozen = True
    cb(latents(seed=2))
    assert all(torch.equal(before[k], v) for k, v in cb.state_dict().items())


def test_straight_through_gradient_and_commitment():
    torch.manual_seed(0)
    cb = Codebook(8, 3, beta=0.25)
    z = latents().requires_grad_()
    out = cb(z)
    assert torch.allclose(out["embeddings"], cb.lookup(out["codes"]), atol=1e-6)  # forward: the codes
    out["embeddings"].sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # backward: identity
    expected = 0.25 * ((z - cb.lookup(out["codes"])) ** 2).mean()
    assert torch.allclose(out["commitment_loss"], expected)


def test_perplexity_bounds():
    assert torch.isclose(perplexity(torch.zeros(10, dtype=torch.long), 4), torch.tensor(1.0))
    assert torch.isclose(perplexity(torch.arange(8) % 4, 4), torch.tensor(4.0))


def test_fsq_numbers_every_grid_point_once_and_trains_without_a_codebook():
    from videogen_lite.vq import FiniteScalarQuantizer

    fsq = FiniteScalarQuantizer((8, 5, 5, 5))
    assert fsq.n_codes == 1000 and fsq.embeddings.shape == (1000, 4)
    every = torch.arange(1000)
    assert torch.equal(fsq.codes_of(fsq.values_of(every)), every)  # a bijection between codes and grid points
    assert len(torch.unique(fsq.embeddings, dim=0)) == 1000
    z = (torch.randn(2, 4, 2, 3, 3) * 3).requires_grad_()
    out = fsq(z)
    assert out["codes"].shape == (2, 2, 3, 3) and float(out["commitment_loss"]) == 0.0
    torch.testing.assert_close(fsq.lookup(out["codes"]), out["embeddings"].detach())  # decode what was encoded
    assert torch.equal(fsq.nearest(rearrange(z, "b d t h w -> (b t h w) d").detach()), out["codes"].flatten())
    out["embeddings"].sum().backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0  # straight through the rounding
    vq_cfg = vg.load_config("moving_mnist_lite", ["vqvae.quantizer=fsq", "vqvae.n_codes=1000"]).vqvae
    assert isinstance(vg.VQVAE(vq_cfg).codebook, FiniteScalarQuantizer)
    with pytest.raises(ValueError, match=r"vqvae.n_codes.*product of fsq_levels \[8, 5, 5, 5\] = 1000"):
        vg.load_config("moving_mnist_lite", ["vqvae.quantizer=fsq", "vqvae.n_codes=512"])
    with pytest.raises(ValueError, match="vqvae.quantizer"):
        vg.load_config("moving_mnist_lite", ["vqvae.quantizer=rvq"])
