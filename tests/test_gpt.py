"""The GPT prior: causality, KV-cached sampling, the frozen VQ-VAE, position encodings, conditioning,
determinism, bad inputs, save/load, and the train prior / sample commands."""
import pytest
import torch
from PIL import Image

import videogen_lite as vg
from videogen_lite.cli import main as cli_main
from videogen_lite.conditioning import ConditionalLayerNorm, FrameEncoder
from videogen_lite.train import make_optimizer

TINY = [  # the tiny_cfg fixture's overrides (conftest.py), for the command line
    "data.sequence_length=8", "data.resolution=32", "data.variance=0.04",
    "vqvae.n_hiddens=16", "vqvae.res_hiddens=8", "vqvae.n_codes=32", "vqvae.embedding_dim=8",
    "vqvae.downsample=[2,4,4]",
    "prior.hidden=32", "prior.heads=2", "prior.layers=2", "prior.resnet_units=16",
]


def make_prior(cfg, frame_cond=False, action_dim=0, **prior):
    cfg.prior.frame_cond, cfg.prior.action_dim = frame_cond, action_dim
    for key, value in prior.items():
        setattr(cfg.prior, key, value)
    torch.manual_seed(0)
    return vg.VideoGPT(cfg.prior, vqvae=vg.VQVAE(cfg.vqvae)).eval()


def randomise_action_norms(prior):
    """Conditional norms start as plain LayerNorms; give them weights so that actions matter."""
    with torch.no_grad():
        for module in prior.modules():
            if isinstance(module, ConditionalLayerNorm):
                for p in module.parameters():
                    p.normal_(std=0.1)


def inputs(prior, b=2, seed=0):
    """Random codes [b, t, h, w], frames [b, 1, 1, 32, 32] and actions [b, 4, 3] for the tiny prior."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, prior.n_codes, (b, *prior.latent_shape), generator=g)
    frames = torch.rand(b, 1, 1, 32, 32, generator=g) - 0.5 if prior.cfg.frame_cond else None
    actions = torch.randn(b, 4, 3, generator=g) if prior.cfg.action_dim else None
    return codes, frames, actions


def test_forward_shapes_and_bits_per_dim(tiny_cfg):
    prior = make_prior(tiny_cfg, frame_cond=True, action_dim=12)
    codes, frames, actions = inputs(prior)
    out = prior(codes, frames, actions)
    assert out["logits"].shape == (2, 4, 8, 8, 32)
    assert torch.allclose(out["bits_per_dim"], out["loss"] / torch.log(torch.tensor(2.0)))
    # an untrained prior is close to uniform over the codebook: ln(32) nats
    assert abs(out["loss"].item() - torch.log(torch.tensor(32.0)).item()) < 0.5
    video = torch.rand(2, 1, 8, 32, 32) - 0.5  # a video is encoded by the VQ-VAE first
    assert torch.equal(prior(video, frames, actions)["logits"], prior(prior.vqvae.encode(video), frames, actions)["logits"])


def test_causality_a_later_code_never_changes_an_earlier_logit(tiny_cfg):
    prior = make_prior(tiny_cfg, frame_cond=True, action_dim=12)
    randomise_action_norms(prior)
    codes, frames, actions = inputs(prior)
    logits = prior(codes, frames, actions)["logits"].flatten(1, 3)  # [B, L, K]
    for j in (0, 37, 255):
        changed = codes.clone().flatten(1)
        changed[:, j] = (changed[:, j] + 1) % prior.n_codes
        new = prior(changed.view_as(codes), frames, actions)["logits"].flatten(1, 3)
        assert torch.allclose(new[:, : j + 1], logits[:, : j + 1], atol=1e-6), f"code {j} leaked backwards"
        if j + 1 < prior.length:
            assert not torch.allclose(new[:, j + 1], logits[:, j + 1], atol=1e-6), "the next position must see it"


@pytest.mark.parametrize("conditioned", [False, True])
def test_cached_and_uncached_sampling_draw_the_same_codes(tiny_cfg, conditioned):
    prior = make_prior(tiny_cfg, frame_cond=conditioned, action_dim=12 if conditioned else 0)
    randomise_action_norms(prior)
    _, frames, actions = inputs(prior, b=2)
    kwargs = {"frames": frames, "actions": actions, "temperature": 0.9, "top_k": 20 if conditioned else None}
    cached = prior.sample_codes(2, generator=torch.Generator().manual_seed(1), **kwargs)
    uncached = prior.sample_codes(2, generator=torch.Generator().manual_seed(1), use_cache=False, **kwargs)
    assert cached.shape == (2, 4, 8, 8)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("kernels", ["gather", "fused"])
@pytest.mark.parametrize("batch, heads", [(1, 1), (3, 2)])
def test_one_position_against_the_cache_equals_attention_over_the_whole_prefix(batch, heads, kernels, monkeypatch):
    from videogen_lite import gpt

    monkeypatch.setattr(gpt, "CACHE_KERNELS", kernels)  # both CPU paths, whichever this CPU picks by default
    assert gpt.cache_kernels() == kernels
    torch.manual_seed(0)
    attn = gpt.CausalSelfAttention(dim=16, heads=heads, attention_dropout=0.0, layers=2).eval()
    x = torch.randn(batch, 10, 16)
    full = attn(x)  # no cache: the fused causal kernel over all 10 positions
    cache = gpt.KVCache(2, batch, heads, 12, 16 // heads, torch.float32, torch.device("cpu"))
    cache.keys.fill_(float("nan"))  # the positions after the prefix must never be read
    cache.values.fill_(float("nan"))
    with torch.no_grad():
        prefill = attn(x[:, :6], cache, layer=1, offset=0)
        steps = [attn(x[:, i : i + 1], cache, layer=1, offset=i) for i in range(6, 10)]  # attend_to_cache
    assert torch.allclose(prefill, full[:, :6], atol=1e-6)
    assert torch.allclose(torch.cat(steps, dim=1), full[:, 6:], atol=1e-6)
    assert torch.isnan(cache.values[0]).all() and torch.isnan(cache.values[1, :, :, 10:]).all()
    indices, bags = cache.bags(9)  # a bag of rows per (sample, head) over one layer's [B * heads * L, d] values
    assert bags.tolist() == [9 * i for i in range(batch * heads)]
    assert indices.view(batch * heads, 9)[-1].tolist() == [12 * (batch * heads - 1) + j for j in range(9)]


def test_packing_library_picks_by_cpu_and_dtype_and_rejects_unknown_names(monkeypatch):
    from videogen_lite import gpt

    monkeypatch.setattr(gpt, "PACKING_LIBRARY", None)
    mkl = torch.backends.mkl.is_available()
    assert gpt.packing_library() == ("mkl" if mkl and gpt.cpu_vendor() != "amd" else "onednn")
    monkeypatch.setattr(gpt, "PACKING_LIBRARY", "mkl")
    assert gpt.packing_library(torch.bfloat16) == "onednn"  # MKL packs fp32 only
    monkeypatch.setattr(gpt, "PACKING_LIBRARY", "openblas")
    with pytest.raises(ValueError, match="PACKING_LIBRARY must be None .* 'onednn' or 'mkl', got 'openblas'"):
        gpt.packing_library()


def test_cache_kernels_pick_by_cpu_and_reject_unknown_names(monkeypatch):
    from videogen_lite import gpt

    monkeypatch.setattr(gpt, "CACHE_KERNELS", None)
    assert gpt.cache_kernels() == ("gather" if gpt.cpu_vendor() == "amd" else "fused")
    monkeypatch.setattr(gpt, "CACHE_KERNELS", "fast")
    with pytest.raises(ValueError, match="CACHE_KERNELS must be None .* 'gather' or 'fused', got 'fast'"):
        gpt.cache_kernels()


def skip_without(library: str) -> None:
    from videogen_lite import gpt

    if library == "mkl" and gpt.packing_library() != "mkl":
        pytest.skip("this PyTorch build has no MKL to prepack with")


@pytest.mark.parametrize("library", ["onednn", "mkl"])
def test_prepacked_sampling_weights_match_f_linear_and_draw_the_same_codes(tiny_cfg, monkeypatch, library):
    from videogen_lite import gpt

    monkeypatch.setattr(gpt, "PACKING_LIBRARY", library)
    skip_without(library)
    prior = make_prior(tiny_cfg, frame_cond=True, action_dim=12)
    randomise_action_norms(prior)
    _, frames, actions = inputs(prior, b=3)
    linears = [m for m in prior.modules() if isinstance(m, gpt.Linear)]
    assert len(linears) == 4 * prior.cfg.layers + 1  # qkv, proj, fc, proj per block, and the head
    assert not gpt.can_pack(linears[0].weight)  # too small to pay for packing: F.linear
    monkeypatch.setattr(gpt, "PACK_MIN_WEIGHTS", 0)  # pack the tiny prior's matrices too
    if not gpt.can_pack(linears[0].weight):
        pytest.skip("this PyTorch build has no oneDNN to prepack with")
    x = torch.randn(3, 1, linears[0].in_features)
    with gpt.packed_linears(prior, 3):
        assert all(m.packed is not None and m.packed[1] == library for m in linears)
        packed = linears[0](x)
        other_rows = linears[0](x[:2])  # packed for 3 rows: 2 rows take F.linear
    assert all(m.packed is None for m in linears)  # dropped on exit
    plain = torch.nn.functional.linear(x, linears[0].weight, linears[0].bias)
    assert packed.shape == plain.shape and torch.allclose(packed, plain, atol=1e-5)
    assert torch.allclose(other_rows, plain[:2], atol=1e-6)
    kwargs = {"frames": frames, "actions": actions, "generator": None}
    with_packing = prior.sample_codes(3, **{**kwargs, "generator": torch.Generator().manual_seed(2)})
    monkeypatch.setattr(gpt, "PACK_SAMPLING_WEIGHTS", False)
    without = prior.sample_codes(3, **{**kwargs, "generator": torch.Generator().manual_seed(2)})
    assert torch.equal(with_packing, without)


@pytest.mark.parametrize("library", ["onednn", "mkl"])
def test_a_prepacked_mlp_applies_gelu_after_its_first_product(tiny_cfg, monkeypatch, library):
    from videogen_lite import gpt

    monkeypatch.setattr(gpt, "PACKING_LIBRARY", library)  # oneDNN as a post-op, MKL in a second pass
    skip_without(library)
    prior = make_prior(tiny_cfg)  # no frames: the MLP's first layer is fc alone, so GELU can ride on it
    monkeypatch.setattr(gpt, "PACK_MIN_WEIGHTS", 0)
    if not gpt.can_pack(prior.blocks[0].mlp.fc.weight):
        pytest.skip("this PyTorch build has no oneDNN to prepack with")
    mlp, x = prior.blocks[0].mlp, torch.randn(3, 1, prior.cfg.hidden)
    with torch.no_grad():
        plain = mlp.proj(torch.nn.functional.gelu(torch.nn.functional.linear(x, mlp.fc.weight, mlp.fc.bias)))
        assert torch.equal(mlp(x), plain)  # unpacked: F.linear then F.gelu, as in training
        with gpt.packed_linears(prior, 3):
            fused = mlp(x)
    assert torch.allclose(fused, plain, atol=1e-6)
    with_packing = prior.sample_codes(3, generator=torch.Generator().manual_seed(4))
    monkeypatch.setattr(gpt, "PACK_SAMPLING_WEIGHTS", False)
    assert torch.equal(with_packing, prior.sample_codes(3, generator=torch.Generator().manual_seed(4)))


def test_sampling_is_deterministic_for_a_seeded_generator(tiny_cfg):
    prior = make_prior(tiny_cfg)
    a = prior.sample(2, generator=torch.Generator().manual_seed(3))
    b = prior.sample(2, generator=torch.Generator().manual_seed(3))
    c = prior.sample(2, generator=torch.Generator().manual_seed(4))
    assert a.shape == (2, 1, 8, 32, 32) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not prior.training  # sampling restores the mode it found


@pytest.mark.parametrize("attention", ["full", "axial"])
def test_bf16_sampling_is_an_opt_in_copy_that_leaves_the_fp32_prior_exact(tiny_cfg, attention):
    from videogen_lite import gpt

    prior = make_prior(tiny_cfg, frame_cond=True, action_dim=12, attention=attention)
    randomise_action_norms(prior)
    codes, frames, actions = inputs(prior, b=2)
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    with torch.no_grad():
        exact = prior(codes, frames, actions)["bits_per_dim"]
    twin = prior.with_weights("bf16")
    assert twin is not prior and twin.vqvae is prior.vqvae  # the frozen VQ-VAE is shared, not copied
    assert all(p.dtype == torch.bfloat16 for name, p in twin.named_parameters() if not name.startswith("vqvae."))
    assert next(prior.vqvae.parameters()).dtype == torch.float32
    assert prior.with_weights("fp32") is prior and twin.with_weights("bf16") is twin
    with torch.no_grad():
        rounded = twin(codes, frames, actions)["bits_per_dim"]
    assert rounded.dtype == torch.float32 and abs(float(rounded) - float(exact)) < 0.02  # rounding, not a new model
    kwargs = {"frames": frames, "actions": actions, "temperature": 0.9}

    def seeded():
        return torch.Generator().manual_seed(5)

    a = prior.sample_codes(2, generator=seeded(), weights="bf16", **kwargs)
    b = prior.sample_codes(2, generator=seeded(), weights="bf16", **kwargs)
    assert a.shape == (2, *prior.latent_shape) and a.dtype == torch.long and torch.equal(a, b)
    assert 0 <= int(a.min()) and int(a.max()) < prior.n_codes
    video = prior.sample(2, generator=seeded(), weights="bf16", **kwargs)
    assert video.dtype == torch.float32 and video.shape == (2, 1, 8, 32, 32)  # decoded by the fp32 VQ-VAE
    # the fp32 default is untouched: the same state, and "fp32" is the default path itself
    assert all(torch.equal(before[k], v) for k, v in prior.state_dict().items())
    assert torch.equal(prior.sample_codes(2, generator=seeded(), **kwargs),
                       prior.sample_codes(2, generator=seeded(), weights="fp32", **kwargs))
    with pytest.raises(ValueError, match=r"weights must be one of \['bf16', 'fp32'\].*'int4'"):
        prior.sample_codes(2, weights="int4", **kwargs)
    assert set(gpt.SAMPLING_WEIGHTS) == {"fp32", "bf16"}


def test_top_k_one_is_greedy(tiny_cfg):
    prior = make_prior(tiny_cfg)
    codes = prior.sample_codes(1, top_k=1, generator=torch.Generator().manual_seed(0))
    logits = prior(codes)["logits"]
    assert torch.equal(codes, logits.argmax(-1))


def test_the_vqvae_stays_frozen_while_the_prior_trains(tiny_cfg):
    prior = make_prior(tiny_cfg, frame_cond=True)
    before = {k: v.clone() for k, v in prior.vqvae.state_dict().items()}
    prior.train()
    assert prior.training and prior.blocks[0].training
    assert not prior.vqvae.training and prior.vqvae.codebook.frozen
    assert not any(p.requires_grad for p in prior.vqvae.parameters())
    optimizer, _ = make_optimizer(prior, tiny_cfg.prior.train)
    vq_params = {id(p) for p in prior.vqvae.parameters()}
    assert not any(id(p) in vq_params for group in optimizer.param_groups for p in group["params"])
    first = None
    for step in range(3):
        video = torch.rand(2, 1, 8, 32, 32, generator=torch.Generator().manual_seed(step)) - 0.5
        out = prior.forward_batch({"video": video, "actions": torch.zeros(2, 8, 0), "label": torch.zeros(2)})
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        first = first if first is not None else prior.head.weight.detach().clone()
    assert not torch.equal(first, prior.head.weight)  # the prior did train
    after = prior.vqvae.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "the VQ-VAE changed under prior training"


@pytest.mark.parametrize("kind", ["spatiotemporal", "spatial", "temporal", "sincos", "none"])
def test_each_position_encoding_has_the_latent_shape_and_broadcasts(tiny_cfg, kind):
    prior = make_prior(tiny_cfg, pos_embedding=kind)
    emb = prior.position()
    assert emb.shape == (4, 8, 8, 32)  # [t, h, w, hidden]
    if kind == "spatial":
        assert torch.equal(emb[0], emb[3])
    if kind == "temporal":
        assert torch.equal(emb[:, 0, 0], emb[:, 5, 7])
    if kind == "spatiotemporal":
        assert torch.allclose(emb[2, 0, 0] - emb[0, 0, 0], emb[2, 5, 7] - emb[0, 5, 7], atol=1e-6)
    if kind == "none":
        assert not emb.any() and not any("position" in name for name, _ in prior.named_parameters())
    codes, _, _ = inputs(prior)
    assert prior(codes)["logits"].shape == (2, 4, 8, 8, 32)


def test_frames_and_actions_change_the_logits(tiny_cfg):
    prior = make_prior(tiny_cfg, frame_cond=True, action_dim=12)
    codes, frames, actions = inputs(prior)
    base = prior(codes, frames, actions)["logits"]
    assert not torch.allclose(base, prior(codes, -frames, actions)["logits"], atol=1e-5)
    # conditional norms start as plain LayerNorms: actions change nothing until they have learnt weights
    assert torch.allclose(base, prior(codes, frames, actions + 1)["logits"], atol=1e-6)
    randomise_action_norms(prior)
    base = prior(codes, frames, actions)["logits"]
    assert not torch.allclose(base, prior(codes, frames, actions + 1)["logits"], atol=1e-5)


def test_conditional_layer_norm_starts_as_layer_norm():
    norm = ConditionalLayerNorm(6, 4)
    x, cond = torch.randn(3, 5, 6), torch.randn(3, 4)
    assert torch.allclose(norm(x, cond), torch.nn.functional.layer_norm(x, (6,)), atol=1e-6)


def test_frame_encoder_is_batch_independent_and_on_the_latent_grid():
    torch.manual_seed(0)
    encoder = FrameEncoder(channels=3, n_frames=2, depth=34, units=16, grid=(8, 8)).train()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in encoder.modules())
    frames = torch.rand(3, 3, 2, 32, 32) - 0.5
    features = encoder(frames)
    assert features.shape == (3, 64, 16)  # [B, h*w, units]
    assert torch.allclose(encoder(frames[1:2]), features[1:2], rtol=1e-4, atol=1e-4)  # the same alone as in a batch


def test_forward_batch_takes_the_first_frames_and_action_steps(tiny_cfg):
    prior = make_prior(tiny_cfg, frame_cond=True, action_dim=12)
    randomise_action_norms(prior)
    video = torch.rand(2, 1, 8, 32, 32) - 0.5
    actions = torch.randn(2, 8, 3)  # the dataset gives 8 steps; action_dim 12 = 4 steps x 3
    out = prior.forward_batch({"video": video, "actions": actions, "label": torch.zeros(2)})
    assert torch.equal(out["logits"], prior(video, video[:, :, :1], actions[:, :4])["logits"])
    with pytest.raises(ValueError, match="action_dim = 12"):
        prior.forward_batch({"video": video, "actions": torch.zeros(2, 8, 5)})


def test_bad_inputs_say_what_was_expected(tiny_cfg):
    prior = make_prior(tiny_cfg, frame_cond=True, action_dim=12)
    codes, frames, actions = inputs(prior)
    with pytest.raises(ValueError, match=r"no frames.*\[2, 1, 1, 32, 32\]"):
        prior(codes, None, actions)
    with pytest.raises(ValueError, match=r"expected frames .*\[2, 1, 1, 32, 32\].*got .*\[2, 1, 2, 32, 32\]"):
        prior(codes, torch.zeros(2, 1, 2, 32, 32), actions)
    with pytest.raises(ValueError, match="no actions"):
        prior(codes, frames, None)
    with pytest.raises(ValueError, match=r"T' x A = prior.action_dim = 12.*\[2, 5, 3\]"):
        prior(codes, frames, torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match=r"codes \[B, t, h, w\] = \[B, 4, 8, 8\]"):
        prior(codes[:, :2], frames, actions)
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        prior(codes + 32, frames, actions)
    with pytest.raises(ValueError, match=r"video \[B, C, T, H, W\] = \[B, 1, 8, 32, 32\]"):
        prior(torch.zeros(2, 1, 8, 16, 16), frames, actions)
    with pytest.raises(ValueError, match="n = 3 samples"):
        prior.sample(3, frames=frames, actions=actions)
    with pytest.raises(ValueError, match="temperature"):
        prior.sample(2, frames=frames, actions=actions, temperature=0)
    plain = make_prior(tiny_cfg)
    with pytest.raises(ValueError, match="not action-conditioned"):
        plain(codes, actions=actions)
    with pytest.raises(ValueError, match="not frame-conditioned"):
        plain(codes, frames=frames)


def test_save_load_roundtrip_gives_identical_logits(tiny_cfg, tmp_path):
    prior = make_prior(tiny_cfg, frame_cond=True, action_dim=12, pos_embedding="sincos")
    randomise_action_norms(prior)
    codes, frames, actions = inputs(prior)
    path = vg.save(prior, tmp_path / "prior.safetensors")
    loaded = vg.load(path)
    assert isinstance(loaded, vg.VideoGPT) and loaded.config_dict() == prior.config_dict()
    assert not loaded.vqvae.training and loaded.vqvae.codebook.frozen
    assert torch.equal(loaded(codes, frames, actions)["logits"], prior(codes, frames, actions)["logits"])
    # half-precision storage: half the bytes, read back into float32 parameters
    half = vg.save(prior, tmp_path / "prior_fp16.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    loaded = vg.load(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert float(loaded.vqvae.data_variance) == float(prior.vqvae.data_variance)  # scalars stay float32
    torch.testing.assert_close(loaded(codes, frames, actions)["logits"], prior(codes, frames, actions)["logits"],
                               atol=2e-2, rtol=2e-2)


def test_train_prior_and_sample_from_the_command_line(tmp_path, capsys):
    vq_dir, prior_dir, frames_file, gif = tmp_path / "vq", tmp_path / "prior", tmp_path / "f.pt", tmp_path / "s.gif"
    # 40x40: MovingMNIST's bouncing digits (28x28) need room >= 5 pixels (its top speed) at this commit
    common = ["--config", "moving_mnist_lite", "--quiet", *TINY, "data.resolution=40"]
    assert cli_main(["train", "vqvae", "--out", str(vq_dir), *common, "vqvae.train.steps=2",
                     "vqvae.train.batch_size=2", "vqvae.train.eval_batches=1"]) == 0
    assert cli_main(["train", "prior", "--vqvae", str(vq_dir), "--out", str(prior_dir), *common,
                     "prior.train.steps=3", "prior.train.batch_size=2", "prior.train.eval_batches=1",
                     "prior.train.log_every=1"]) == 0
    assert (prior_dir / "checkpoints" / "step_00000003.safetensors").exists()
    assert len((prior_dir / "log.jsonl").read_text().splitlines()) == 3
    prior = vg.load(prior_dir)
    assert isinstance(prior, vg.VideoGPT) and prior.cfg.frame_cond
    torch.save(torch.rand(2, 1, 1, 40, 40) - 0.5, frames_file)
    assert cli_main(["sample", "--prior", str(prior_dir), "--n", "2", "--frames", str(frames_file),
                     "--out", str(gif)]) == 0
    image = Image.open(gif)
    assert image.n_frames == 8 and image.size[0] > 2 * 40  # two 40x40 videos side by side
    # without --frames, a frame-conditioned prior continues the first frames of test clips of its own data
    assert cli_main(["sample", "--prior", str(prior_dir), "--n", "2", "--out", str(gif)]) == 0
    assert "first frames of the first 2 test clips" in capsys.readouterr().err
    # primed with real frames, rolled out past the trained 4 latent steps (2 frames each)
    assert cli_main(["sample", "--prior", str(prior_dir), "--n", "2", "--prime", "test", "--prime-steps", "1",
                     "--length", "5", "--out", str(gif)]) == 0
    assert Image.open(gif).n_frames == 10
    assert cli_main(["sample", "--prior", str(prior_dir), "--n", "2", "--weights", "bf16", "--out", str(gif)]) == 0
    assert Image.open(gif).n_frames == 8
    assert cli_main(["sample", "--prior", str(vq_dir), "--n", "2", "--out", str(gif)]) == 2
    assert "is a VQVAE, not a prior" in capsys.readouterr().err


def test_activation_checkpointing_gives_the_same_gradients(tiny_cfg):
    import videogen_lite as vg

    torch.manual_seed(0)
    tiny_cfg.prior.dropout = 0.0
    prior = vg.VideoGPT(tiny_cfg.prior, vqvae=vg.VQVAE(tiny_cfg.vqvae)).train()
    codes = torch.randint(0, tiny_cfg.vqvae.n_codes, (2, *tiny_cfg.vqvae.latent_shape))
    frames = torch.rand(2, 1, 1, 32, 32) - 0.5
    grads = []
    for flag in (False, True):
        prior.zero_grad()
        prior.activation_checkpointing = flag
        prior(codes, frames=frames)["loss"].backward()
        grads.append([p.grad.clone() for p in prior.parameters() if p.grad is not None])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------------------------
# priming, long rollouts and the Axial Transformer prior


def small_grid(cfg):
    """The tiny config on a 4 x 4 x 4 latent grid (64 positions): small enough to test every position."""
    cfg.vqvae.downsample = (2, 8, 8)
    return cfg


@pytest.mark.parametrize("attention", ["full", "axial"])
def test_every_position_sees_exactly_the_codes_before_it(tiny_cfg, attention):
    prior = make_prior(small_grid(tiny_cfg), frame_cond=True, action_dim=12, attention=attention)
    randomise_action_norms(prior)
    codes, frames, actions = inputs(prior)
    logits = prior(codes, frames, actions)["logits"].flatten(1, 3)  # [B, 64, K]
    for j in range(prior.length):  # exhaustive: change each code in turn
        changed = codes.clone().flatten(1)
        changed[:, j] = (changed[:, j] + 1) % prior.n_codes
        new = prior(changed.view_as(codes), frames, actions)["logits"].flatten(1, 3)
        assert torch.allclose(new[:, : j + 1], logits[:, : j + 1], atol=1e-6), f"code {j} leaked backwards"
        if j + 1 < prior.length:
            assert not torch.allclose(new[:, j + 1], logits[:, j + 1], atol=1e-6), f"position {j + 1} must see code {j}"


@pytest.mark.parametrize("attention", ["full", "axial"])
def test_primed_sampling_keeps_the_prime_and_cached_equals_uncached(tiny_cfg, attention):
    prior = make_prior(tiny_cfg, frame_cond=True, action_dim=12, attention=attention)
    randomise_action_norms(prior)
    codes, frames, actions = inputs(prior)
    kwargs = {"frames": frames, "actions": actions, "prime": codes, "prime_steps": 2}
    cached = prior.sample_codes(2, generator=torch.Generator().manual_seed(1), **kwargs)
    uncached = prior.sample_codes(2, generator=torch.Generator().manual_seed(1), use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, :2], codes[:, :2]) and not torch.equal(cached[:, 2:], codes[:, 2:])
    # a prime video is encoded from its first prime_steps * dt frames only, later frames replaced by the last one
    video = torch.rand(2, 1, 8, 32, 32) - 0.5
    padded = torch.cat([video[:, :, :2], video[:, :, 1:2].expand(-1, -1, 6, -1, -1)], dim=2)
    primed = prior.sample_codes(2, frames=frames, actions=actions, prime=video, prime_steps=1)
    assert torch.equal(primed[:, :1], prior.vqvae.encode(padded)[:, :1])
    changed_future = video.clone()
    changed_future[:, :, 2:] = 0.3
    assert torch.equal(prior.sample_codes(2, frames=frames, actions=actions, prime=changed_future, prime_steps=1)[:, :1],
                       primed[:, :1])


@pytest.mark.parametrize("attention", ["full", "axial"])
def test_long_rollouts_slide_the_window_and_continue_at_the_seam(tiny_cfg, attention):
    prior = make_prior(tiny_cfg, attention=attention)  # t = 4 latent steps
    greedy = {"top_k": 1}
    long = prior.sample_codes(2, length=6, generator=torch.Generator().manual_seed(0), **greedy)
    assert long.shape == (2, 6, 8, 8)
    assert torch.equal(long[:, :4], prior.sample_codes(2, generator=torch.Generator().manual_seed(0), **greedy))
    # after the window slid by one step, step 4 is what the prior draws after steps 1-3 at positions 0-2
    assert torch.equal(long[:, 1:5], prior.sample_codes(2, prime=long[:, 1:4], prime_steps=3, **greedy))
    sampled = {"temperature": 1.0, "length": 6}
    cached = prior.sample_codes(2, generator=torch.Generator().manual_seed(5), **sampled)
    uncached = prior.sample_codes(2, generator=torch.Generator().manual_seed(5), use_cache=False, **sampled)
    assert torch.equal(cached, uncached)
    assert prior.sample(2, length=6).shape == (2, 1, 12, 32, 32)  # 6 latent steps of 2 frames


def test_long_action_conditioned_rollouts_read_each_windows_actions(tiny_cfg):
    prior = make_prior(tiny_cfg, frame_cond=True, action_dim=12)  # 4 steps of 3 action values per window
    randomise_action_norms(prior)
    _, frames, actions = inputs(prior)
    longer = torch.randn(2, 8, 3, generator=torch.Generator().manual_seed(2))  # 2 more windows x dt = 2 steps
    codes = prior.sample_codes(2, frames=frames, actions=longer, length=6, generator=torch.Generator().manual_seed(0))
    assert codes.shape == (2, 6, 8, 8)
    with pytest.raises(ValueError, match=r"T >= 4 \+ action_dim / A"):
        prior.sample_codes(2, frames=frames, actions=longer[:, :7], length=6)


def test_bad_priming_and_lengths_say_what_was_expected(tiny_cfg):
    prior = make_prior(tiny_cfg)
    codes, _, _ = inputs(prior)
    with pytest.raises(ValueError, match=r"prime_steps = 5: expected 1 to 3"):
        prior.sample_codes(2, prime=codes, prime_steps=5)  # longer than the window
    with pytest.raises(ValueError, match=r"prime_steps = 4: expected 1 to 3"):
        prior.sample_codes(2, prime=codes, prime_steps=4)  # nothing left to sample
    with pytest.raises(ValueError, match="together"):
        prior.sample_codes(2, prime=codes)
    with pytest.raises(ValueError, match=r"prime codes must be \[n, t', h, w\] = \[2, >= 2, 8, 8\]"):
        prior.sample_codes(2, prime=codes[:, :1], prime_steps=2)
    with pytest.raises(ValueError, match=r"one video \[n, C, T, H, W\] or code grid"):
        prior.sample_codes(2, prime=codes[:1], prime_steps=1)
    with pytest.raises(ValueError, match=r"need 4 frames .* has 3"):
        prior.sample_codes(2, prime=torch.zeros(2, 1, 3, 32, 32), prime_steps=2)
    with pytest.raises(ValueError, match=r"a prime video must be \[n, C, T, H, W\]"):
        prior.sample_codes(2, prime=torch.zeros(2, 3, 8, 32, 32), prime_steps=1)
    with pytest.raises(ValueError, match="length"):
        prior.sample_codes(2, length=0)


def test_axial_prior_trains_saves_and_loads(tiny_cfg, tmp_path):
    prior = make_prior(tiny_cfg, frame_cond=True, attention="axial").train()
    codes, frames, _ = inputs(prior)
    optimizer = torch.optim.Adam([p for p in prior.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(30):
        loss = prior(codes, frames)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.5  # it fits two clips: every part gets gradients
    prior.eval()
    path = vg.save(prior, tmp_path / "axial.safetensors")
    loaded = vg.load(path)
    assert loaded.cfg.attention == "axial" and loaded.axial is not None
    assert torch.equal(loaded(codes, frames)["logits"], prior(codes, frames)["logits"])
    with pytest.raises(ValueError, match="prior.attention"):
        vg.load_config("moving_mnist_lite", ["prior.attention=sparse"])
