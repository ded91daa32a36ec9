"""``videogen-lite eval`` and :func:`videogen_lite.evaluate.evaluate` on tiny saved models."""
import json
import math

import pytest
import torch

import videogen_lite as vg
from videogen_lite.cli import main as cli_main
from videogen_lite.evaluate import evaluate, primed_continuation
from videogen_lite.fvd import InceptionI3d

# 8 x 40 x 40 Moving MNIST clips (the bouncing digits need 40 pixels), a tiny VQ-VAE and a 2-layer prior
TINY = [
    "data.sequence_length=8", "data.resolution=40", "data.variance=0.04",
    "vqvae.n_hiddens=16", "vqvae.res_hiddens=8", "vqvae.n_codes=32", "vqvae.embedding_dim=8",
    "vqvae.downsample=[2,4,4]",
    "prior.hidden=32", "prior.heads=2", "prior.layers=2", "prior.resnet_units=16",
]
KEYS = {"vqvae", "prior", "data", "split", "clip_length", "n_clips", "i3d", "seed",
        "nmse", "bits_per_dim", "fvd", "fvd_star", "fvd_recon"}


@pytest.fixture
def cfg():
    return vg.load_config("moving_mnist_lite", TINY)


@pytest.fixture
def models(cfg, tmp_path):
    """A tiny VQ-VAE saved as a run folder (with the config.json a training run writes) and a
    frame-conditioned prior on it saved as a bare file."""
    torch.manual_seed(0)
    vq = vg.VQVAE(cfg.vqvae).eval()
    run = tmp_path / "vq_run"
    vg.save(vq, run / "checkpoints" / "step_00000001.safetensors")
    (run / "config.json").write_text(json.dumps({"stage": "vqvae", "config": vg.config.to_dict(cfg)}))
    prior = vg.VideoGPT(cfg.prior, vqvae=vq).eval()
    prior_path = vg.save(prior, tmp_path / "prior.safetensors")
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text("base: moving_mnist_lite\ndata: {sequence_length: 8, resolution: 40, variance: 0.04}\n")
    return {"vq": vq, "prior": prior, "run": run, "prior_path": prior_path, "config_path": config_path}


def test_eval_command_writes_the_table_as_json(models, tmp_path, capsys):
    run, prior_path = models["run"], models["prior_path"]
    out = tmp_path / "eval.json"
    assert cli_main(["eval", "--vqvae", str(run), "--prior", str(prior_path), "--n-clips", "3", "--batch-size", "2",
                     "--out", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert KEYS <= set(result)
    assert result["n_clips"] == 3 and result["split"] == "test" and result["clip_length"] == 8
    assert 0 < result["nmse"] < 10 and 0 < result["bits_per_dim"] < 2 * math.log2(32)
    assert result["fvd"] is None and result["fvd_star"] is None and "convert_i3d.py" in result["fvd_note"]
    printed = capsys.readouterr().out
    assert "NMSE" in printed and "bits/dim" in printed and "FVD*" in printed and "convert_i3d.py" in printed


def test_eval_of_a_bare_file_needs_or_takes_a_config(models, tmp_path, capsys):
    prior_path, config_path = models["prior_path"], models["config_path"]
    assert cli_main(["eval", "--prior", str(prior_path), "--n-clips", "2"]) == 2
    assert "--config" in capsys.readouterr().err
    out = tmp_path / "prior.json"
    assert cli_main(["eval", "--prior", str(prior_path), "--config", str(config_path), "--n-clips", "2",
                     "--split", "val", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["nmse"] is None and result["bits_per_dim"] > 0 and result["split"] == "val"


def test_eval_errors_speak_to_the_user(models, tmp_path, capsys):
    run, prior_path, config_path = models["run"], models["prior_path"], models["config_path"]
    assert cli_main(["eval", "--vqvae", str(run), "--i3d", str(tmp_path / "none.safetensors")]) == 2
    assert "convert_i3d.py" in capsys.readouterr().err
    assert cli_main(["eval", "--vqvae", "no_such_checkpoint"]) == 2
    assert "lite checkpoint" in capsys.readouterr().err
    assert cli_main(["eval", "--vqvae", str(prior_path), "--config", str(config_path)]) == 2  # a prior as --vqvae
    assert "must be a VQVAE" in capsys.readouterr().err
    assert cli_main(["eval", "--vqvae", str(run), "--config", "moving_mnist_lite"]) == 2  # 16x64x64 clips
    assert "model takes" in capsys.readouterr().err


def test_evaluate_matches_the_models_own_numbers_and_computes_fvd(models, cfg):
    vq, prior = models["vq"], models["prior"]
    dataset = vg.data.build_dataset(cfg.data, "test")
    torch.manual_seed(0)
    i3d = InceptionI3d()
    result = evaluate(dataset, vq, prior, n_clips=4, i3d=i3d, batch_size=2, i3d_size=32)
    video = torch.stack([dataset[i]["video"] for i in range(4)])
    with torch.no_grad():
        nmse = vq(video)["nmse"]
        bits = prior(video, frames=video[:, :, :1])["bits_per_dim"]
    assert result["nmse"] == pytest.approx(float(nmse), rel=1e-5)
    assert result["bits_per_dim"] == pytest.approx(float(bits), rel=1e-5)
    for key in ("fvd", "fvd_star", "fvd_recon"):
        assert math.isfinite(result[key]) and result[key] >= -1e-6
    again = evaluate(dataset, vq, prior, n_clips=4, i3d=i3d, batch_size=2, i3d_size=32)
    assert again == result  # seeded samples: the same numbers every time


def test_evaluate_runs_models_in_eval_mode_and_restores_their_mode(cfg):
    torch.manual_seed(0)
    vq = vg.VQVAE(cfg.vqvae).train()  # in training mode a forward pass would initialise and update the codebook
    before = {k: v.clone() for k, v in vq.codebook.state_dict().items()}
    evaluate(vg.data.MovingMNIST("test", 8, 40, length=4), vq, n_clips=4, batch_size=2)
    assert vq.training and all(torch.equal(before[k], v) for k, v in vq.codebook.state_dict().items())


def test_primed_continuation_reports_each_way_per_frame_and_the_baselines(models, cfg):
    prior = models["prior"]
    videos = torch.stack([vg.data.build_dataset(cfg.data, "test")[i]["video"] for i in range(3)])
    result = primed_continuation(prior, videos, prime_steps=1, batch_size=2)
    assert result["prime_frames"] == 2 and result["n_clips"] == 3
    assert set(result["per_frame"]) == {"greedy", "sampled", "copy_last", "reconstruction"}
    assert all(len(v) == 8 for v in result["per_frame"].values())
    copy = result["per_frame"]["copy_last"]
    assert copy[1] == 0.0 and all(v > 0 for v in copy[2:])  # the copied frame is exact, the rest moves on
    assert result == primed_continuation(prior, videos, prime_steps=1, batch_size=2)  # seeded
    with pytest.raises(ValueError, match="prime_steps"):
        primed_continuation(prior, videos, prime_steps=4)
