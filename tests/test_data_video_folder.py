"""VideoFolder on small mp4/webm/gif files made with the real ffmpeg, plus a corrupt one."""
import subprocess
import warnings

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from videogen_lite.data import VideoFolder
from videogen_lite.data.video_folder import _files_by_split, decode_video

FRAMES = 24


def write_video(path, frames: int = FRAMES, height: int = 40, width: int = 56, codec: list[str] = ()):
    """A white square sliding right over a grey background, encoded by ffmpeg."""
    video = np.full((frames, height, width, 3), 60, np.uint8)
    for t in range(frames):
        video[t, 12:28, t:t + 16] = 255
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", "10", "-i", "-", *codec, str(path)]
    subprocess.run(command, input=video.tobytes(), check=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    (root / "train").mkdir()
    (root / "test").mkdir()
    write_video(root / "train" / "a.mp4", codec=["-c:v", "libx264", "-pix_fmt", "yuv420p"])
    write_video(root / "train" / "b.gif", frames=20)
    write_video(root / "train" / "c.webm", frames=10, codec=["-c:v", "libvpx"])  # shorter than a clip of 16
    (root / "train" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    write_video(root / "test" / "d.avi", codec=["-c:v", "mjpeg"])
    return root


def load(root, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = VideoFolder(root, *args, **kwargs)
    return dataset, [str(w.message) for w in caught]


def test_decodes_resizes_and_crops(folder):
    dataset, caught = load(folder, 8, 32, split="test")
    assert caught == [] and dataset.lengths == [FRAMES]
    assert len(dataset) == FRAMES // 8
    item = dataset[1]
    assert item["video"].shape == (3, 8, 32, 32) and item["actions"].shape == (8, 0) and item["label"] == 0
    assert -0.5 <= item["video"].min() and item["video"].max() <= 0.5
    # short side 40 -> 32, long side 56 -> 45, centre crop of 32: the square is visible and moves right
    brightest_column = item["video"][0].mean(dim=1).argmax(dim=-1)  # [T]
    assert (brightest_column[-1] > brightest_column[0]).item()
    full = decode_video(folder / "test" / "d.avi", 32)
    pixels = ((item["video"] + 0.5) * 255).round().byte().permute(1, 2, 3, 0).numpy()
    assert np.array_equal(pixels, full[8:16])


def test_corrupt_file_is_skipped_with_one_warning(folder):
    dataset, caught = load(folder, 16, 32, split="train")
    assert len(caught) == 1 and "broken.mp4" in caught[0] and "a.mp4" not in caught[0]
    assert [p.name for p in dataset.files] == ["a.mp4", "b.gif", "c.webm"]
    assert dataset.lengths == [FRAMES, 20, 10]
    assert len(dataset) == 2  # c.webm is shorter than 16 frames
    assert {dataset[i]["label"] for i in range(2)} == {0, 1}


def test_deterministic_for_a_seed_and_workers(folder):
    a, _ = load(folder, 8, 16, split="train", seed=4)
    b, _ = load(folder, 8, 16, split="train", seed=4)
    assert all(torch.equal(a[i]["video"], b[i]["video"]) for i in range(len(a)))
    batches = list(DataLoader(a, batch_size=2, num_workers=2))
    assert torch.equal(torch.cat([batch["video"] for batch in batches]), torch.stack([a[i]["video"] for i in range(len(a))]))


def test_cache_serves_the_same_clips(folder, tmp_path):
    plain, _ = load(folder, 8, 16, split="test")
    cached, _ = load(folder, 8, 16, split="test", cache=tmp_path / "test.h5")
    again, _ = load(folder, 8, 16, split="test", cache=tmp_path / "test.h5")  # reuses the file
    assert len(plain) == len(cached) == len(again)
    for index in range(len(plain)):
        assert torch.equal(plain[index]["video"], cached[index]["video"])
        assert torch.equal(plain[index]["video"], again[index]["video"])


def test_folders_without_usable_videos_are_errors(folder, tmp_path):
    with pytest.raises(ValueError, match="no .* files for split 'train'"):
        VideoFolder(tmp_path, 8, 32)
    with pytest.raises(ValueError, match="split 'val' does not exist"):
        VideoFolder(folder, 8, 32, split="val")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "x.mp4").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="x.mp4"), pytest.raises(ValueError, match="no usable video"):
        VideoFolder(tmp_path, 8, 32)
    with pytest.raises(ValueError, match="longer than every video"):
        load(folder, 30, 32, split="test")


def test_flat_folder_is_split_by_name(tmp_path):
    for index in range(40):
        (tmp_path / f"clip_{index}.mp4").touch()
    splits = _files_by_split(tmp_path)
    assert sorted(p.name for files in splits.values() for p in files) == sorted(f"clip_{i}.mp4" for i in range(40))
    assert all(splits[name] for name in ("train", "val", "test")) and len(splits["train"]) > 20
    assert splits == _files_by_split(tmp_path)
