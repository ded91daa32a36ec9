"""The shipped lite checkpoints: every MANIFEST.json entry is complete, its file matches its sha256 and
loads as the model its config describes, and its training log ends at the recorded step."""
import json

import pytest
import torch

import videogen_lite as vg
from videogen_lite.config import to_dict
from videogen_lite.pretrained import checkpoints_dir, entry, manifest, sha256

NAMES = sorted(manifest()["checkpoints"])
FIELDS = {"command", "config", "steps", "wall_time_s", "hardware", "metrics", "commit", "log", "stage", "note"}


@pytest.mark.parametrize("name", NAMES)
def test_manifest_entry_is_complete_and_matches_its_files(name):
    e = entry(name)
    assert FIELDS <= e.keys(), FIELDS - e.keys()
    assert e["command"].startswith("videogen-lite train " + e["stage"])
    log = [json.loads(line) for line in (checkpoints_dir() / e["log"]).read_text().splitlines()]
    assert log[-1]["step"] == e["steps"]
    if e.get("inside"):  # shipped as the .vqvae of that prior, which was trained on this very run
        assert entry(e["inside"])["stage"] == "prior" and e["stage"] == "vqvae"
        assert name in entry(e["inside"])["command"]  # its --vqvae names this run
    else:
        assert sha256(checkpoints_dir() / e["path"]) == e["sha256"]


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_loads_the_model_its_config_describes(name):
    model = vg.pretrained(name)
    e = entry(name)
    from videogen_lite.judge import Judge

    expected = {"vqvae": vg.VQVAE, "prior": vg.VideoGPT, "judge": Judge}[e["stage"]]
    assert isinstance(model, expected) and not model.training
    # the weights are those of the recorded run: the model's config is the manifest's, key for key; keys the
    # package gained after the run (e.g. prior.attention, vqvae.quantizer) hold their defaults, the old behaviour
    recorded, now = e["config"][e["stage"]], to_dict(model.cfg)
    defaults = to_dict(type(model.cfg)())

    def same(recorded: dict, now: dict, defaults: dict) -> None:  # nested sections (train) likewise
        for key in now:
            if key not in recorded:
                assert now[key] == defaults[key], key
            elif isinstance(recorded[key], dict):
                same(recorded[key], now[key], defaults[key])
            else:
                assert now[key] == recorded[key], key
        assert set(recorded) <= set(now)

    same(recorded, now, defaults)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_changed_file_is_refused(tmp_path, monkeypatch):
    for name in ("MANIFEST.json", entry("mnist_vqvae_lite_cpu")["path"]):
        (tmp_path / name).write_bytes((checkpoints_dir() / name).read_bytes())
    path = tmp_path / entry("mnist_vqvae_lite_cpu")["path"]
    path.write_bytes(path.read_bytes()[:-1] + b" ")
    monkeypatch.setenv("VIDEOGEN_LITE_CHECKPOINTS", str(tmp_path))
    with pytest.raises(ValueError, match="does not match the sha256"):
        vg.pretrained("mnist_vqvae_lite_cpu")
    with pytest.raises(ValueError, match="the manifest lists"):
        entry("no_such_checkpoint")


def test_train_prior_takes_a_lite_checkpoint_name(tmp_path):
    from videogen_lite.cli import main

    assert main(["train", "prior", "--config", "moving_mnist_lite", "--vqvae", "mnist_vqvae_lite", "--out",
                 str(tmp_path), "--quiet", "prior.layers=1", "prior.train.steps=1", "prior.train.batch_size=2",
                 "prior.train.eval_batches=1"]) == 0
    trained, shipped = vg.load(tmp_path).vqvae.state_dict(), vg.pretrained("mnist_vqvae_lite").state_dict()
    assert all(torch.equal(trained[k], shipped[k]) for k in shipped)
