"""I3D (layout, 'SAME' padding, the 224 path), loading and converting its weights, and the Fréchet distance
against a scipy reference. All with random weights: no I3D checkpoint ships with the repository."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from safetensors.torch import save_file

import videogen_lite as vg
from videogen_lite.fvd import InceptionI3d, fvd, fvd_features, load_i3d, preprocess, same_padding

STANDARD_LAYOUT = [
    "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3", "Mixed_3b",
    "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
    "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c", "logits",
]


@pytest.fixture(scope="module")
def i3d():
    torch.manual_seed(0)
    model = InceptionI3d()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that loading them is tested
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                buffer.normal_(0.0, 0.1)
    return model


def reference_frechet(a, b):
    """The textbook formula with scipy's matrix square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


# ---------------------------------------------------------------------------------------------------
# the Fréchet distance


def test_frechet_distance_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    b = rng.normal(0.3, 1.5, size=(200, 16)) @ rng.normal(size=(16, 16))
    expected = reference_frechet(a, b)
    assert vg.metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert vg.metrics.frechet_distance(torch.tensor(a), torch.tensor(b)) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_is_zero_for_identical_sets_and_symmetric():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(100, 8)), rng.normal(1.0, 2.0, size=(80, 8))
    assert abs(vg.metrics.frechet_distance(a, a)) < 1e-8
    assert vg.metrics.frechet_distance(a, b) == pytest.approx(vg.metrics.frechet_distance(b, a), rel=1e-9)
    assert vg.metrics.frechet_distance(a, a + 1.0) == pytest.approx(8.0, rel=1e-9)  # a shift: only ||mu_a - mu_b||^2


@pytest.mark.parametrize("a_shape, b_shape", [((10,), (10, 4)), ((10, 4), (10, 5)), ((1, 4), (10, 4)),
                                              ((10, 4, 1), (10, 4))])
def test_frechet_distance_rejects_bad_shapes(a_shape, b_shape):
    with pytest.raises(ValueError, match=r"\[N, D\]|at least 2"):
        vg.metrics.frechet_distance(np.zeros(a_shape), np.ones(b_shape))


# ---------------------------------------------------------------------------------------------------
# I3D


def test_layout_is_the_standard_one_with_the_ports_key_names(i3d):
    assert [name for name, _ in i3d.named_children()] == STANDARD_LAYOUT
    keys = i3d.state_dict()
    for key in ["Conv3d_1a_7x7.conv3d.weight", "Conv3d_1a_7x7.bn.running_var", "Mixed_3b.b1b.conv3d.weight",
                "Mixed_5c.b3b.bn.bias", "logits.conv3d.weight", "logits.conv3d.bias"]:
        assert key in keys
    assert tuple(keys["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 3, 7, 7, 7)
    assert tuple(keys["logits.conv3d.weight"].shape) == (400, 1024, 1, 1, 1)
    assert i3d.Conv3d_1a_7x7.bn.eps == 1e-3
    assert sum(p.numel() for p in i3d.parameters()) == 12_697_264


def test_same_padding_is_tensorflows():
    assert same_padding(224, 7, 2) == (2, 3)  # output 112: 5 pixels of padding, the odd one at the end
    assert same_padding(112, 3, 2) == (0, 1)
    assert same_padding(8, 3, 1) == (1, 1)
    assert same_padding(7, 2, 2) == (0, 1)  # odd size: output ceil(7 / 2) = 4


@pytest.mark.parametrize("shape, grid", [((16, 64, 64), (2, 2, 2)), ((15, 33, 40), (2, 2, 2)), ((8, 32, 32), (1, 1, 1))])
def test_feature_maps_shrink_like_same_padding_says(i3d, shape, grid):
    with torch.no_grad():
        out = i3d.features(torch.zeros(1, 3, *shape))
    assert tuple(out.shape) == (1, 1024, *grid)  # (T/8, H/32, W/32) rounded up


def test_forward_on_a_small_input_gives_finite_logits_that_depend_on_the_clip(i3d):
    x = torch.rand(2, 3, 16, 32, 32) * 2 - 1
    with torch.no_grad():
        logits = i3d(x)
    assert logits.shape == (2, 400) and torch.isfinite(logits).all()
    assert not torch.allclose(logits[0], logits[1])
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        i3d(torch.zeros(3, 16, 32, 32))


def test_i3d_stays_in_eval_mode(i3d):
    i3d.train()
    assert not i3d.training and not i3d.Mixed_4b.b0.bn.training


def test_preprocess_resizes_scales_and_repeats_grey():
    video = torch.full((2, 1, 4, 64, 48), 0.75)
    out = preprocess(video, 224)
    assert out.shape == (2, 3, 4, 224, 224)
    torch.testing.assert_close(out, torch.full_like(out, 0.5))  # 0.75 in [0, 1] -> 0.5 in [-1, 1]
    ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 1, 8).expand(1, 3, 2, 8, 8)
    scaled = preprocess(ramp, 16)
    assert float(scaled.min()) == pytest.approx(-1.0) and float(scaled.max()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        preprocess(torch.zeros(1, 2, 4, 8, 8))


def test_the_224_path_once(i3d):
    features = fvd_features(torch.rand(1, 1, 16, 64, 64), i3d, batch_size=1)
    assert features.shape == (1, 400) and features.dtype == np.float64 and np.isfinite(features).all()


def test_features_are_float64_batched_and_fvd_of_a_set_with_itself_is_zero(i3d):
    g = torch.Generator().manual_seed(0)
    real = torch.rand(4, 3, 8, 32, 32, generator=g)
    other = (real + 0.3 * torch.rand(4, 3, 8, 32, 32, generator=g)).clamp(0, 1)
    whole = fvd_features(real, i3d, batch_size=4, size=32)
    assert whole.dtype == np.float64 and whole.shape == (4, 400)
    np.testing.assert_allclose(fvd_features(real[:3], i3d, batch_size=2, size=32), whole[:3], rtol=1e-4, atol=1e-6)
    assert abs(fvd(real, real, i3d, batch_size=3, size=32)) < 1e-6  # batched differently, the same clips
    assert fvd(real, other, i3d, size=32) > 1e-3
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fvd_features(real - 0.5, i3d, size=32)


# ---------------------------------------------------------------------------------------------------
# weights: load, convert, wrong files


def outputs(model):
    with torch.no_grad():
        return model(torch.linspace(-1, 1, 3 * 8 * 32 * 32).view(1, 3, 8, 32, 32))


def test_load_i3d_roundtrip_from_safetensors_and_from_the_ports_state_dict(i3d, tmp_path):
    state = {k: v.contiguous() for k, v in i3d.state_dict().items()}
    save_file(state, str(tmp_path / "i3d.safetensors"))
    torch.testing.assert_close(outputs(load_i3d(tmp_path / "i3d.safetensors")), outputs(i3d), rtol=0, atol=0)
    # the 2017 port: no num_batches_tracked; a DataParallel copy also has a module. prefix
    port = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(port, tmp_path / "rgb_imagenet.pt")
    loaded = load_i3d(tmp_path / "rgb_imagenet.pt")
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(outputs(loaded), outputs(i3d), rtol=0, atol=0)


def test_converter_writes_safetensors_that_load(i3d, tmp_path):
    spec = importlib.util.spec_from_file_location("convert_i3d", Path(__file__).parent.parent / "tools" / "convert_i3d.py")
    convert_i3d = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert_i3d)
    torch.save({k: v for k, v in i3d.state_dict().items() if not k.endswith("num_batches_tracked")},
               tmp_path / "rgb_imagenet.pt")
    assert convert_i3d.main([str(tmp_path / "rgb_imagenet.pt"), str(tmp_path / "i3d.safetensors")]) == 0
    torch.testing.assert_close(outputs(load_i3d(tmp_path / "i3d.safetensors")), outputs(i3d), rtol=0, atol=0)
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "other.pt")
    assert convert_i3d.main([str(tmp_path / "other.pt"), str(tmp_path / "x.safetensors")]) == 2
    assert convert_i3d.main([str(tmp_path / "missing.pt"), str(tmp_path / "x.safetensors")]) == 2


def test_wrong_weight_files_say_what_to_do(i3d, tiny_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="convert_i3d.py"):
        load_i3d(tmp_path / "nowhere.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="convert_i3d.py"):
        load_i3d(tmp_path / "garbage.safetensors")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="weights_only"):
        load_i3d(tmp_path / "garbage.pt")
    vq_path = vg.save(vg.VQVAE(tiny_cfg.vqvae), tmp_path / "vq.safetensors")  # a model, but not I3D
    with pytest.raises(ValueError, match="missing: Conv3d_1a_7x7"):
        load_i3d(vq_path)
    ucf = InceptionI3d(num_classes=101)  # another head: a fine-tuned I3D is not the FVD network
    save_file({k: v.contiguous() for k, v in ucf.state_dict().items()}, str(tmp_path / "ucf.safetensors"))
    with pytest.raises(ValueError, match="shape mismatch: logits.conv3d.weight"):
        load_i3d(tmp_path / "ucf.safetensors")
