"""The shipped lite checkpoints: every MANIFEST.json entry is complete, its file matches its sha256 and
loads as the model its config describes, and its training log ends within one logging window of the recorded step."""
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
    # a run stopped by --max-minutes between two log lines logs up to its last whole window of log_every steps
    every = e["config"][e["stage"]]["train"]["log_every"]
    assert log[-1]["step"] in (e["steps"], e["steps"] - e["steps"] % every)  # the recorded step or its last window
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


def test_add_checkpoint_publishes_a_resumed_run_in_half_precision(tmp_path):
    """tools/add_checkpoint.py on a real two-segment run (resumed with another schedule): the entry sums the
    segments' wall times and lists them, the float16 file loads as float32 weights equal to the run's within
    half-precision rounding, and its sha256 and log match."""
    import subprocess
    import sys

    from videogen_lite.io import resolve_weights

    tiny = ["--config", "moving_mnist_lite", "--quiet", "data.sequence_length=8", "data.resolution=32",
            "data.variance=0.04", "vqvae.n_hiddens=16", "vqvae.res_hiddens=8", "vqvae.n_codes=32",
            "vqvae.embedding_dim=8", "vqvae.downsample=[2,4,4]", "vqvae.train.batch_size=4",
            "vqvae.train.log_every=1", "vqvae.train.eval_batches=1"]
    cli = [sys.executable, "-m", "videogen_lite.cli", "train", "vqvae", "--out", str(tmp_path / "run")]
    subprocess.run(cli + tiny + ["vqvae.train.steps=3"], check=True, capture_output=True)
    (tmp_path / "part1").mkdir()
    for name in ("config.json", "metrics.json"):
        (tmp_path / "part1" / name).write_bytes((tmp_path / "run" / name).read_bytes())
    subprocess.run(cli + ["--resume"] + tiny + ["vqvae.train.steps=5", "vqvae.train.lr_decay=cosine"],
                   check=True, capture_output=True)
    tool = checkpoints_dir().parent / "tools" / "add_checkpoint.py"
    published = tmp_path / "published"
    subprocess.run([sys.executable, str(tool), str(tmp_path / "run"), "tiny", "--commit", "0000000", "--half",
                    "--earlier", str(tmp_path / "part1"), "--checkpoints", str(published)], check=True,
                   capture_output=True)
    e = json.loads((published / "MANIFEST.json").read_text())["checkpoints"]["tiny"]
    first, last = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "part1", tmp_path / "run"))
    assert [s["steps_to"] for s in e["segments"]] == [3, 5] and e["steps"] == 5
    assert e["wall_time_s"] == round(first["wall_time_s"] + last["wall_time_s"], 1)
    assert "--resume" in e["command"] and "--resume" not in e["segments"][0]["command"]
    assert e["stored_as"] == "float16" and sha256(published / e["path"]) == e["sha256"]
    log = [json.loads(line) for line in (published / e["log"]).read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
    from safetensors.torch import load_file

    stored = load_file(str(published / e["path"]))
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point() and v.dim() > 0)
    run_weights, shipped = vg.load(resolve_weights(tmp_path / "run")), vg.load(published / e["path"])
    for (key, a), b in zip(run_weights.state_dict().items(), shipped.state_dict().values()):
        assert b.dtype == a.dtype and torch.allclose(a, b, rtol=1e-3, atol=1e-4), key


def test_the_shipped_checkpoints_fit_the_60_mb_budget():
    sizes = {p.name: p.stat().st_size for p in checkpoints_dir().glob("*.safetensors")}
    assert sum(sizes.values()) <= 60e6, sizes
    listed = {e["path"] for e in manifest()["checkpoints"].values() if e.get("path")}
    assert listed == set(sizes), "every shipped file has a manifest entry and every entry's file ships"
