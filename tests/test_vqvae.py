import pytest
import torch

import videogen_lite as vg


def clip_batch(cfg, n=2, seed=0):
    ds = vg.data.MovingMNIST("train", cfg.data.sequence_length, cfg.data.resolution, seed=seed)
    return torch.stack([ds[i]["video"] for i in range(n)])


def test_forward_shapes_and_outputs(tiny_cfg):
    torch.manual_seed(0)
    vq = vg.VQVAE(tiny_cfg.vqvae)
    x = clip_batch(tiny_cfg)
    out = vq(x)
    assert out["recon"].shape == x.shape
    assert out["codes"].shape == (2, 4, 8, 8) and out["codes"].dtype == torch.long
    assert torch.allclose(out["loss"], out["nmse"] + out["commitment_loss"])
    expected_nmse = ((out["recon"] - x) ** 2).mean() / 0.04
    assert torch.allclose(out["nmse"], expected_nmse)
    assert 1.0 <= float(out["perplexity"]) <= tiny_cfg.vqvae.n_codes


def test_encode_decode_agree_with_forward(tiny_cfg):
    torch.manual_seed(0)
    vq = vg.VQVAE(tiny_cfg.vqvae)
    x = clip_batch(tiny_cfg)
    vq(x)  # initialise the codebook from these latents
    vq.eval()
    out = vq(x)
    codes = vq.encode(x)
    assert torch.equal(codes, out["codes"])
    assert torch.allclose(vq.decode(codes), out["recon"], atol=1e-5)
    assert vq.codebook.embeddings.shape == (32, 8)


def test_attention_variant_shares_one_position_embedding():
    cfg = vg.load_config("moving_mnist_lite", ["data.sequence_length=8", "data.resolution=32", "data.variance=0.04",
                                               "vqvae.n_hiddens=16", "vqvae.res_hiddens=8", "vqvae.attention=true",
                                               "vqvae.downsample=[2,4,4]"])
    vq = vg.VQVAE(cfg.vqvae)
    names = [n for n, _ in vq.named_parameters() if "tables" in n]
    assert sorted(names) == ["position.tables.h", "position.tables.t", "position.tables.w"]
    x = clip_batch(cfg)
    assert vq(x)["recon"].shape == x.shape


def test_training_reduces_the_loss(tiny_cfg):
    torch.manual_seed(0)
    vq = vg.VQVAE(tiny_cfg.vqvae)
    x = clip_batch(tiny_cfg, 4)
    opt = torch.optim.Adam(vq.parameters(), 3e-3)
    first = None
    for _ in range(15):
        out = vq(x)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else float(out["nmse"].detach())
    assert float(out["nmse"].detach()) < 0.7 * first


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 1, 8, 32), "5 dims"),
        ((2, 3, 8, 32, 32), "1 channel"),
        ((2, 1, 7, 32, 32), "T = 7 is not divisible by the downsampling factor 2"),
        ((2, 1, 8, 30, 32), "H = 30 is not divisible by the downsampling factor 4"),
    ],
)
def test_bad_input_shapes_are_explained(tiny_cfg, shape, message):
    vq = vg.VQVAE(tiny_cfg.vqvae)
    with pytest.raises(ValueError, match=message):
        vq(torch.zeros(shape))


def test_integer_input_and_bad_codes_are_explained(tiny_cfg):
    vq = vg.VQVAE(tiny_cfg.vqvae)
    with pytest.raises(TypeError, match="float tensor"):
        vq(torch.zeros(1, 1, 8, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 32\)"):
        vq.decode(torch.full((1, 4, 8, 8), 40))


def test_missing_data_variance_is_explained(tiny_cfg):
    tiny_cfg.vqvae.data_variance = None
    vq = vg.VQVAE(tiny_cfg.vqvae)
    with pytest.raises(ValueError, match="data variance"):
        vq(torch.zeros(1, 1, 8, 32, 32))


def test_codes_under_bf16_autocast_are_the_fp32_codes():
    # the prior's targets: a bf16 encoder would move many latents of a trained model to another code
    vq = vg.pretrained("mnist_vqvae_lite_cpu")
    test_set = vg.data.MovingMNIST("test", 16, 64)
    x = torch.stack([test_set[i]["video"] for i in range(2)])
    with torch.no_grad():
        fp32 = vq.encode(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(vq.encode(x), fp32)
            assert torch.equal(vq.encode(x.bfloat16()), fp32)



def test_encoder_runs_channels_last_on_cpu_with_the_same_numbers(tiny_cfg, monkeypatch):
    from videogen_lite import conv

    x = clip_batch(tiny_cfg)  # one channel: laid out the same channels-first and channels-last
    results = {}
    for channels_last in (True, False):
        monkeypatch.setattr(conv, "CPU_CHANNELS_LAST", channels_last)
        torch.manual_seed(0)
        vq = vg.VQVAE(tiny_cfg.vqvae)
        layouts = []
        for layer in list(vq.encoder.downsample)[1:]:
            if isinstance(layer, conv.SamePadConv3d):
                layer.register_forward_pre_hook(
                    lambda m, args, seen=layouts: seen.append(args[0].is_contiguous(memory_format=torch.channels_last_3d)))
        out = vq(x)
        out["loss"].backward()
        assert layouts == [channels_last] * 2  # the second strided conv and the unstrided one
        grads = {n: p.grad.clone() for n, p in vq.named_parameters() if p.grad is not None}
        results[channels_last] = (out, grads)
    (new, new_grads), (old, old_grads) = results[True], results[False]
    assert torch.equal(new["codes"], old["codes"])
    assert torch.allclose(new["recon"], old["recon"], atol=1e-5)
    assert torch.allclose(new["loss"], old["loss"], rtol=1e-5)
    assert new_grads.keys() == old_grads.keys()
    for name, g in new_grads.items():
        assert torch.allclose(g, old_grads[name], rtol=1e-4, atol=1e-6), name
