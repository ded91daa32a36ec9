"""BAIR conversion without TensorFlow: TFRecord framing, tf.train.Example parsing, pixel-exact HDF5."""
import argparse

import h5py
import numpy as np
import pytest

from videogen_lite.data import HDF5Dataset, convert_bair, read_attrs
from videogen_lite.data.bair import bair_clip, crc32c, encode_example, parse_example, read_tfrecord, write_tfrecord
from videogen_lite.data.cli import add_data_commands


def bair_example(rng: np.random.Generator) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A record in the softmotion30_44k schema (with the features the converter ignores, too)."""
    frames = rng.integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    actions = rng.normal(size=(30, 4)).astype(np.float32)
    features = {}
    for t in range(30):
        features[f"{t}/action"] = actions[t]
        features[f"{t}/endeffector_pos"] = rng.normal(size=3).astype(np.float32)
        features[f"{t}/image_aux1/encoded"] = frames[t].tobytes()
        features[f"{t}/image_main/encoded"] = frames[t, ::-1].tobytes()
    return encode_example(features), frames, actions


@pytest.fixture(scope="module")
def softmotion(tmp_path_factory):
    """softmotion30_44k/{train,test}/*.tfrecords: 9 training clips in two files, 2 test clips."""
    root = tmp_path_factory.mktemp("softmotion30_44k")
    rng = np.random.default_rng(0)
    clips = {"train": [], "test": []}
    for split, sizes in (("train", [5, 4]), ("test", [2])):
        (root / split).mkdir()
        for number, size in enumerate(sizes):
            examples = [bair_example(rng) for _ in range(size)]
            write_tfrecord(root / split / f"traj_{number}.tfrecords", [record for record, _, _ in examples])
            clips[split] += [(frames, actions) for _, frames, actions in examples]
    return root, clips


def test_crc32c_and_example_roundtrip():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    parsed = parse_example(encode_example({"a": b"xyz", "b": np.array([1.5, -2.0], np.float32), "c": [b"", b"q"]}))
    assert parsed["a"] == [b"xyz"] and parsed["c"] == [b"", b"q"]
    assert np.array_equal(parsed["b"], [1.5, -2.0])


def test_conversion_is_pixel_exact_and_keeps_the_splits(softmotion, tmp_path):
    root, clips = softmotion
    counts = convert_bair(root, tmp_path / "bair.h5", val_fraction=0.25, progress=False)
    assert counts == {"train": 7, "val": 2, "test": 2}
    assert read_attrs(tmp_path / "bair.h5")["source"] == "bair"
    with h5py.File(tmp_path / "bair.h5") as f:
        converted = {split: (f[split]["frames"][:].reshape(-1, 30, 64, 64, 3), f[split]["actions"][:].reshape(-1, 30, 4))
                     for split in ("train", "val", "test")}
    for index, (frames, actions) in enumerate(clips["test"]):
        assert np.array_equal(converted["test"][0][index], frames)
        assert np.array_equal(converted["test"][1][index], actions)
    # every training clip lands in exactly one of train and val, unchanged and in order
    originals = [frames.tobytes() for frames, _ in clips["train"]]
    kept = [frames.tobytes() for frames in converted["train"][0]]
    held = [frames.tobytes() for frames in converted["val"][0]]
    assert sorted(kept + held) == sorted(originals)
    assert kept == [clip for clip in originals if clip in kept]
    item = HDF5Dataset(tmp_path / "bair.h5", "test", 16)[1]
    assert item["video"].shape == (3, 16, 64, 64) and item["actions"].shape == (16, 4)
    pixels = ((item["video"] + 0.5) * 255).round().byte().permute(1, 2, 3, 0).numpy()  # [T, H, W, C]
    assert np.array_equal(pixels, clips["test"][1][0][:16])


def test_validation_split_is_deterministic_for_a_seed(softmotion, tmp_path):
    root, _ = softmotion

    def val_clips(seed, name):
        convert_bair(root, tmp_path / name, val_fraction=0.25, seed=seed, progress=False)
        with h5py.File(tmp_path / name) as f:
            return f["val/frames"][:].tobytes()

    assert val_clips(0, "a.h5") == val_clips(0, "b.h5")
    assert val_clips(0, "a.h5") != val_clips(1, "c.h5")


def test_broken_inputs_are_named(softmotion, tmp_path):
    root, _ = softmotion
    with pytest.raises(ValueError, match="does not look like softmotion30_44k"):
        convert_bair(tmp_path, tmp_path / "x.h5")
    (tmp_path / "junk.tfrecords").write_bytes(b"this is not a tfrecord file at all")
    with pytest.raises(ValueError, match="not a TFRecord file"):
        list(read_tfrecord(tmp_path / "junk.tfrecords"))
    data = bytearray((root / "test" / "traj_0.tfrecords").read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "flipped.tfrecords").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum does not match"):
        list(read_tfrecord(tmp_path / "flipped.tfrecords", verify_data=True))
    write_tfrecord(tmp_path / "other.tfrecords", [encode_example({"0/image_main/encoded": b"x"})])
    with pytest.raises(ValueError, match="not a BAIR example"):
        bair_clip(parse_example(next(read_tfrecord(tmp_path / "other.tfrecords"))))


def test_command_line(softmotion, tmp_path):
    root, clips = softmotion
    parser = argparse.ArgumentParser()
    add_data_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "bair", "--tfrecords", str(root), "--out", str(tmp_path / "b.h5"),
                              "--val-fraction", "0.2", "--verify-checksums"])
    args.run(args)
    with h5py.File(tmp_path / "b.h5") as f:
        assert np.array_equal(f["test/frames"][:30], clips["test"][0][0])
