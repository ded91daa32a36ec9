import pytest
import torch

import videogen_lite as vg
from videogen_lite.config import config_names


def test_shipped_configs_load_and_match_table5():
    names = config_names()
    for name in ("moving_mnist", "vizdoom_hgs", "bair", "vizdoom_battle2", "moving_mnist_lite"):
        assert name in names
    expected = {  # Table 5: residual layers, attention, codebook, latent shape
        "moving_mnist": (2, False, 512, 64, (4, 16, 16)),
        "vizdoom_hgs": (4, True, 2048, 256, (4, 16, 16)),
        "bair": (4, True, 2048, 256, (8, 16, 16)),
        "vizdoom_battle2": (4, True, 2048, 256, (8, 16, 16)),
    }
    for name, (layers, attention, codes, dim, latent) in expected.items():
        v = vg.load_config(name).vqvae
        assert (v.n_res_layers, v.attention, v.n_codes, v.embedding_dim, v.latent_shape) == (
            layers, attention, codes, dim, latent)
        assert (v.n_hiddens, v.res_hiddens, v.beta) == (240, 128, 0.25)
        assert (v.train.batch_size, v.train.lr) == (64, 7e-4)
        assert v.input_shape == (16, 64, 64)
    assert vg.load_config("moving_mnist").vqvae.train.steps == 20_000
    assert vg.load_config("bair").vqvae.train.steps == 75_000


def test_overrides_are_typed_and_applied():
    cfg = vg.load_config("moving_mnist", ["vqvae.train.steps=200", "vqvae.train.lr=1e-3", "prior.dropout=0.0"])
    assert cfg.vqvae.train.steps == 200 and cfg.vqvae.train.lr == 1e-3 and cfg.prior.dropout == 0.0
    assert cfg.prior.train.steps == 40_000  # the other stage keeps its own settings


def test_unknown_key_names_the_key_and_suggests():
    with pytest.raises(ValueError, match=r"vqvae\.n_hidden'.*did you mean 'vqvae\.n_hiddens'"):
        vg.load_config("moving_mnist", ["vqvae.n_hidden=3"])


def test_bad_values_say_what_is_allowed():
    with pytest.raises(ValueError, match="downsample.*powers of two"):
        vg.load_config("moving_mnist", ["vqvae.downsample=[3,4,4]"])
    with pytest.raises(ValueError, match="not a multiple of 4"):
        vg.load_config("moving_mnist", ["data.sequence_length=10"])
    with pytest.raises(ValueError, match="an integer"):
        vg.load_config("moving_mnist", ["vqvae.n_codes=many"])
    with pytest.raises(ValueError, match="pos_embedding.*spatiotemporal"):
        vg.load_config("moving_mnist", ["prior.pos_embedding=rotary"])
    with pytest.raises(ValueError, match="unknown config 'nope'"):
        vg.load_config("nope")
    with pytest.raises(ValueError, match="key.path=value"):
        vg.load_config("moving_mnist", ["vqvae.n_codes"])


def test_yaml_file_with_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: moving_mnist\nvqvae:\n  n_codes: 128\n")
    cfg = vg.load_config(path)
    assert cfg.vqvae.n_codes == 128 and cfg.vqvae.n_hiddens == 240 and cfg.name == "mine"


def test_an_inherited_data_variance_is_dropped_when_the_data_changes(tmp_path):
    # moving_mnist's 0.039 describes two digits at 64x64; one digit at 32x32 has about twice the variance
    base = vg.load_config("moving_mnist_lite")
    assert base.data.variance == base.vqvae.data_variance == pytest.approx(0.039048)
    assert vg.load_config("moving_mnist_lite", ["data.sequence_length=8"]).data.variance == base.data.variance
    for overrides in (["data.resolution=32"], ["data.num_digits=1"], ["data.channels=3"]):
        cfg = vg.load_config("moving_mnist_lite", overrides)
        assert cfg.data.variance is None and cfg.vqvae.data_variance is None, overrides
    kept = vg.load_config("moving_mnist_lite", ["data.variance=0.07", "data.resolution=32"])
    assert kept.data.variance == kept.vqvae.data_variance == 0.07
    # the same in a YAML file: its own variance is kept, an inherited one is not
    path = tmp_path / "one_digit.yaml"
    path.write_text("base: moving_mnist_lite\ndata:\n  num_digits: 1\n")
    assert vg.load_config(path).data.variance is None
    path.write_text("base: moving_mnist_lite\ndata:\n  num_digits: 1\n  variance: 0.08\n")
    assert vg.load_config(path).data.variance == 0.08
    assert vg.load_config(path, ["data.num_digits=2"]).data.variance is None
    assert vg.load_config("moving_mnist_one_digit").data.variance == pytest.approx(0.075062)


def test_vqvae_copy_of_data_shape_must_agree():
    with pytest.raises(ValueError, match="disagrees with data.resolution"):
        vg.load_config("moving_mnist", ["vqvae.resolution=32"])


@pytest.mark.parametrize("name", config_names())
def test_a_fresh_vqvae_of_every_shipped_config_runs_without_measuring_anything(name):
    # each config declares its data variance, so NMSE (in the loss) is defined before any data is seen
    cfg = vg.load_config(name)
    vq = vg.VQVAE(cfg.vqvae)
    x = torch.zeros(1, cfg.data.channels, cfg.data.sequence_length, cfg.data.resolution, cfg.data.resolution)
    with torch.no_grad():
        out = vq.eval()(x)
    assert torch.isfinite(out["nmse"]) and out["codes"].shape == (1, *cfg.vqvae.latent_shape)
