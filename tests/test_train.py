"""The training loop: checkpoints, exact resume (also after SIGKILL), data-parallel equality, failures."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

import videogen_lite as vg
from videogen_lite.io import atomic_write, checkpoints_of
from videogen_lite.train import StepSampler, fit

TINY = ["data.sequence_length=8", "data.resolution=32", "data.variance=0.04", "vqvae.n_hiddens=16",
        "vqvae.res_hiddens=8", "vqvae.n_codes=32", "vqvae.embedding_dim=8", "vqvae.downsample=[2,4,4]",
        "vqvae.train.batch_size=4", "vqvae.train.log_every=1", "vqvae.train.eval_batches=1"]


def tiny(steps=6, extra=()):
    return vg.load_config("moving_mnist_lite", TINY + [f"vqvae.train.steps={steps}", *extra])


def run(cfg, run_dir, resume=False):
    torch.manual_seed(cfg.vqvae.train.seed)
    data = vg.data.MovingMNIST("train", 8, 32, length=64)
    return fit(vg.VQVAE(cfg.vqvae), data, cfg.vqvae.train, run_dir, resume=resume, progress=False)


def final_weights(run_dir):
    return load_file(str(checkpoints_of(run_dir)[-1][1]))


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_sampler_is_a_function_of_seed_and_step_and_shards_contiguously():
    full = list(StepSampler(20, 4, 10, seed=3))
    assert list(StepSampler(20, 4, 10, seed=3, start=6)) == full[6:]
    halves = [list(StepSampler(20, 4, 10, seed=3, rank=r, world=2)) for r in range(2)]
    assert [a + b for a, b in zip(*halves)] == full
    assert sorted(sum(full[:5], [])) == list(range(20))  # one epoch sees every clip once
    with pytest.raises(ValueError, match="not divisible by 3 processes"):
        StepSampler(20, 4, 10, world=3)


def test_checkpoints_logs_and_keep_last_k(tmp_path):
    run(tiny(6, ["vqvae.train.checkpoint_every=2", "vqvae.train.keep_checkpoints=2"]), tmp_path)
    assert [s for s, _ in checkpoints_of(tmp_path)] == [4, 6]
    assert not list((tmp_path / "checkpoints").glob("step_00000002*"))
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "nmse", "perplexity", "codebook_usage", "clips_per_s", "peak_memory_mb"} <= log[0].keys()
    assert isinstance(vg.load(tmp_path), vg.VQVAE)


def test_resume_continues_exactly(tmp_path):
    run(tiny(6, ["vqvae.train.checkpoint_every=2"]), tmp_path / "straight")
    run(tiny(3, ["vqvae.train.checkpoint_every=2"]), tmp_path / "split")  # stops at step 3
    run(tiny(6, ["vqvae.train.checkpoint_every=2"]), tmp_path / "split", resume=True)
    assert_same(final_weights(tmp_path / "straight"), final_weights(tmp_path / "split"))
    straight = (tmp_path / "straight" / "log.jsonl").read_text().splitlines()
    split = (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in straight] == [json.loads(x)["loss"] for x in split]


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    args = ["--config", "moving_mnist_lite", "--quiet"] + TINY + [
        "vqvae.train.steps=10", "vqvae.train.checkpoint_every=2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cli = [sys.executable, "-m", "videogen_lite.cli", "train", "vqvae"]
    subprocess.run(cli + ["--out", str(tmp_path / "straight")] + args, check=True, env=env, capture_output=True)
    victim = subprocess.Popen(cli + ["--out", str(tmp_path / "killed")] + args, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "checkpoints" / "step_00000004.safetensors").exists():
        assert time.time() < deadline and victim.poll() is None, "the run never reached step 4"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = checkpoints_of(tmp_path / "killed")[-1][0]
    assert killed_at < 10, "the run finished before it could be killed"
    subprocess.run(cli + ["--out", str(tmp_path / "killed"), "--resume"] + args, check=True, env=env,
                   capture_output=True)
    assert_same(final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed"))


def test_atomic_write_leaves_the_old_file_when_the_writer_crashes(tmp_path):
    target = tmp_path / "weights.safetensors"
    target.write_bytes(b"old")

    def crash(tmp):
        Path(tmp).write_bytes(b"half a fi")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_non_finite_loss_stops_with_the_step_and_last_checkpoint(tmp_path, monkeypatch):
    cfg = tiny(6, ["vqvae.train.checkpoint_every=2"])
    original = vg.VQVAE.forward_batch
    calls = {"n": 0}

    def poisoned(self, batch):
        calls["n"] += 1
        out = original(self, batch)
        if calls["n"] == 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(vg.VQVAE, "forward_batch", poisoned)
    with pytest.raises(FloatingPointError, match=r"at step 3.*step_00000002\.safetensors"):
        run(cfg, tmp_path)


def _ddp_worker(rank, world, port, run_dir, steps):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        run(tiny(steps, ["vqvae.train.checkpoint_every=100"]), run_dir)
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path / "ddp"), 4), nprocs=2, join=True)
    run(tiny(4, ["vqvae.train.checkpoint_every=100"]), tmp_path / "single")
    a, b = final_weights(tmp_path / "single"), final_weights(tmp_path / "ddp")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_gradient_accumulation_matches_the_full_batch(tmp_path, monkeypatch):
    # freeze the codebook (no EMA, no restarts): then nothing couples the clips of a batch and the
    # mean of two half-batch gradients must equal the full-batch gradient
    original = vg.VQVAE.__init__

    def frozen_init(self, cfg):
        original(self, cfg)
        self.codebook.frozen = True

    monkeypatch.setattr(vg.VQVAE, "__init__", frozen_init)

    def sgd(model, cfg):  # plain SGD: unlike Adam, its step is proportional to the gradient it is given
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    monkeypatch.setattr("videogen_lite.train.make_optimizer", sgd)
    run(tiny(3), tmp_path / "full")
    run(tiny(3, ["vqvae.train.grad_accumulation=2"]), tmp_path / "accumulated")
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "accumulated")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    with pytest.raises(ValueError, match="grad_accumulation=3"):
        run(tiny(1, ["vqvae.train.grad_accumulation=3"]), tmp_path / "bad")


def test_bf16_autocast_trains_both_stages_with_an_fp32_codebook(tmp_path, tiny_cfg):
    # bf16 autocast (a GPU option, but CPU autocast runs it too): the codebook quantizes, updates and restarts
    # in fp32 whatever the encoder's output dtype, and the prior's log reports tokens/s
    cfg = tiny(3, ["vqvae.train.bf16=true", "vqvae.n_codes=256"])  # 256 codes > latents: restarts happen
    run(cfg, tmp_path / "vqvae")
    vq = vg.load(tmp_path / "vqvae")
    assert all(b.dtype in (torch.float32, torch.bool) for b in vq.codebook.buffers())
    log = [json.loads(line) for line in (tmp_path / "vqvae" / "log.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)

    prior_cfg = tiny_cfg.prior
    prior_cfg.train.bf16, prior_cfg.train.steps, prior_cfg.train.log_every = True, 2, 1
    prior_cfg.train.batch_size = 4
    prior = vg.VideoGPT(prior_cfg, vqvae=vq)
    data = vg.data.MovingMNIST("train", 8, 32, length=16)
    fit(prior, data, prior_cfg.train, tmp_path / "prior", progress=False)
    log = [json.loads(line) for line in (tmp_path / "prior" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["tokens_per_s"] == pytest.approx(log[-1]["clips_per_s"] * prior.length, rel=1e-3)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
