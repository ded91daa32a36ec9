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
from videogen_lite.train import EpochItems, RandomCrops, StepSampler, collate, fit

TINY = ["data.sequence_length=8", "data.resolution=32", "data.variance=0.04", "vqvae.n_hiddens=16",
        "vqvae.res_hiddens=8", "vqvae.n_codes=32", "vqvae.embedding_dim=8", "vqvae.downsample=[2,4,4]",
        "vqvae.train.batch_size=4", "vqvae.train.log_every=1", "vqvae.train.eval_batches=1"]


def tiny(steps=6, extra=()):
    return vg.load_config("moving_mnist_lite", TINY + [f"vqvae.train.steps={steps}", *extra])


def run(cfg, run_dir, resume=False):
    torch.manual_seed(cfg.vqvae.train.seed)
    data = vg.data.MovingMNIST("train", 8, 32, length=16)  # 4 steps per epoch: runs cross epochs
    return fit(vg.VQVAE(cfg.vqvae), data, cfg.vqvae.train, run_dir, resume=resume, progress=False)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_log(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


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
    assert sorted(i for e, i in sum(full[:5], [])) == list(range(20))  # one epoch sees every clip once
    assert {e for e, _ in sum(full[:5], [])} == {0} and {e for e, _ in sum(full[5:], [])} == {1}
    with pytest.raises(ValueError, match="not divisible by 3 processes"):
        StepSampler(20, 4, 10, world=3)


def test_training_clips_change_between_epochs_in_any_worker():
    # the epoch travels with each index, so fresh clips need no set_epoch and work in (persistent) workers
    data = vg.data.MovingMNIST("train", 8, 32, length=8)
    sampler = StepSampler(8, 4, 4, seed=0)  # two steps per epoch: epochs 0 and 1
    loader = torch.utils.data.DataLoader(EpochItems(data), batch_sampler=sampler, collate_fn=collate,
                                         num_workers=2, persistent_workers=True)
    videos = [batch["video"] for batch in loader]
    keys = list(sampler)
    by_key = {key: video for batch_keys, batch in zip(keys, videos) for key, video in zip(batch_keys, batch)}
    for (epoch, index), video in by_key.items():
        assert torch.equal(video, data.item(index, epoch)["video"])
    assert torch.equal(data.item(3, 0)["video"], data[3]["video"])  # epoch 0 is the plain dataset
    assert not torch.equal(data.item(3, 0)["video"], data.item(3, 1)["video"])
    test = vg.data.MovingMNIST("test", 8, 32, length=8)
    assert torch.equal(test.item(3, 0)["video"], test.item(3, 5)["video"])  # held-out clips never change


def test_random_crops_are_aligned_pure_functions_of_seed_epoch_index():
    data = vg.data.MovingMNIST("train", 8, 32, length=8)
    crops = RandomCrops(data, (4, 16, 16), align=(2, 4, 4), seed=1)
    found = set()
    for index in range(8):
        for epoch in range(3):
            clip, crop = data.item(index, epoch)["video"], crops.item(index, epoch)["video"]
            assert crop.shape == (1, 4, 16, 16)
            assert torch.equal(crop, crops.item(index, epoch)["video"])  # the same crop when asked again
            matches = [(t, y, x) for t in range(0, 5, 2) for y in range(0, 17, 4) for x in range(0, 17, 4)
                       if torch.equal(clip[:, t:t + 4, y:y + 16, x:x + 16], crop)]
            assert matches  # a window of that epoch's clip, at offsets on the downsampling grid
            found.update(matches)
    assert len(found) > 5  # the offsets vary
    with pytest.raises(ValueError, match="larger than the clip"):
        RandomCrops(data, (16, 16, 16)).item(0, 0)


def test_crop_config_is_checked_and_training_on_crops_runs(tmp_path):
    with pytest.raises(ValueError, match="vqvae.train.crop"):
        tiny(extra=["vqvae.train.crop=[3,16,16]"])  # not divisible by downsample t=2
    with pytest.raises(ValueError, match="vqvae.train.crop"):
        tiny(extra=["vqvae.train.crop=[16,16,16]"])  # longer than the clip
    with pytest.raises(ValueError, match="vqvae.train.crop"):
        tiny(extra=["vqvae.attention=true", "vqvae.train.crop=[4,16,16]"])
    with pytest.raises(ValueError, match="prior.train.crop"):
        tiny(extra=["prior.train.crop=[4,16,16]"])
    cfg = tiny(steps=2, extra=["vqvae.train.crop=[4,16,16]"])
    data = vg.data.MovingMNIST("train", 8, 32, length=16)
    crops = RandomCrops(data, cfg.vqvae.train.crop, cfg.vqvae.downsample, cfg.vqvae.train.seed)
    val = vg.data.MovingMNIST("val", 8, 32, length=4)
    summary = fit(vg.VQVAE(cfg.vqvae), crops, cfg.vqvae.train, tmp_path, val_set=val, progress=False)
    assert summary["steps"] == 2 and summary["held_out"]["nmse"] > 0  # evaluated on whole 8x32x32 clips


def test_checkpoints_logs_and_keep_last_k(tmp_path):
    run(tiny(6, ["vqvae.train.checkpoint_every=2", "vqvae.train.keep_checkpoints=2"]), tmp_path)
    assert [s for s, _ in checkpoints_of(tmp_path)] == [4, 6]
    assert not list((tmp_path / "checkpoints").glob("step_00000002*"))
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "nmse", "perplexity", "codebook_usage", "clips_per_s", "peak_memory_mb"} <= log[0].keys()
    assert isinstance(vg.load(tmp_path), vg.VQVAE)


def test_resume_continues_exactly(tmp_path):
    # a constant learning rate: a cosine schedule depends on the total steps, which this test changes to stop early
    every = ["vqvae.train.checkpoint_every=2", "vqvae.train.lr_decay=none"]
    run(tiny(6, every), tmp_path / "straight")
    run(tiny(3, every), tmp_path / "split")  # stops at step 3
    run(tiny(6, every), tmp_path / "split", resume=True)
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
    port = free_port()
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path / "ddp"), 4), nprocs=2, join=True)
    run(tiny(4, ["vqvae.train.checkpoint_every=100"]), tmp_path / "single")
    a, b = final_weights(tmp_path / "single"), final_weights(tmp_path / "ddp")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    # the log holds the metrics of the whole global batch, not rank 0's half of it
    single, ddp = (read_log(tmp_path / name) for name in ("single", "ddp"))
    assert [r["step"] for r in single] == [r["step"] for r in ddp] == [1, 2, 3, 4]
    for one, two in zip(single, ddp):
        for key in ("loss", "nmse", "commitment_loss", "perplexity", "usage"):
            assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key


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


def record_first_draw(out_dir):
    """Patch (in this process) VQVAE.forward_batch to record the first random number the process draws."""
    original = vg.VQVAE.forward_batch

    def probed(self, batch):
        path = Path(out_dir) / f"rank{os.environ.get('RANK', '0')}.txt"
        if not path.exists():
            path.write_text(repr(float(torch.rand(()))))
        return original(self, batch)

    vg.VQVAE.forward_batch = probed


def _seed_worker(rank, world, port, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        cfg = tiny(1, ["vqvae.train.checkpoint_every=100"]).vqvae
        record_first_draw(out_dir)
        fit(vg.VQVAE(cfg), vg.data.MovingMNIST("train", 8, 32, length=16), cfg.train, Path(out_dir) / "run",
            progress=False)
    finally:
        torch.distributed.destroy_process_group()


def test_each_process_draws_its_own_random_numbers(tmp_path):
    # seed + rank (as nanoGPT seeds): dropout masks must differ between processes, rank 0 keeps the 1-process stream
    port = free_port()
    mp.spawn(_seed_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    draws = [float((tmp_path / f"rank{r}.txt").read_text()) for r in range(2)]
    assert draws[0] != draws[1]
    torch.manual_seed(tiny().vqvae.train.seed)
    assert draws[0] == float(torch.rand(()))
