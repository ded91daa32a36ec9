"""Any folder of videos (mp4, webm, avi, gif, mov, mkv), decoded with the ffmpeg inside ``imageio-ffmpeg``.

Splits: where ``root`` has ``train/`` and ``test/`` (and maybe ``val/``) subfolders, as the official
VideoGPT code expects, each is a split; otherwise every video under ``root`` goes to ``train``, ``val``
or ``test`` by a hash of its path relative to ``root`` (8:1:1, the same on every machine).

Each frame is scaled so that its short side is ``resolution`` and centre-cropped to a square. A video
of ``L`` frames gives ``L // sequence_length`` clips per epoch: random windows in ``train`` (seeded by
``(seed, epoch, index)``, see :meth:`VideoFolder.set_epoch`), back-to-back windows in ``val``/``test``.
A clip is decoded on demand from the start of its file up to its last frame, which suits short videos;
for long ones or many epochs pass ``cache="videos.h5"``: every video is decoded once into an HDF5 video
file (:mod:`videogen_lite.data.hdf5`) and clips are read from there.

Every video is decoded once when the dataset is built, to count its frames; one that ffmpeg cannot
read is skipped, with one warning that names every skipped file.
"""
from __future__ import annotations

import hashlib
import subprocess
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .hdf5 import SPLITS, HDF5Dataset, HDF5Writer, read_attrs, to_video_tensor

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".gif", ".mov", ".mkv")
PROBE_RESOLUTION = 8


def decode_video(path: str | Path, resolution: int, first: int = 0, count: int | None = None) -> np.ndarray:
    """Frames ``first .. first + count - 1`` (all from ``first`` if ``count`` is None) of a video,
    short side scaled to ``resolution`` and centre-cropped: uint8 ``[L, resolution, resolution, 3]``.

    Raises RuntimeError with ffmpeg's message when the file cannot be decoded.
    """
    short_side = f"scale=w='if(lt(iw,ih),{resolution},-1)':h='if(lt(iw,ih),-1,{resolution})':flags=area"
    filters = [f"select=gte(n\\,{first})"] if first else []
    filters += [short_side, f"crop={resolution}:{resolution}"]
    import imageio_ffmpeg  # the ffmpeg binary ships inside this wheel

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0",
               "-vf", ",".join(filters), "-fps_mode", "passthrough"]
    if count is not None:
        command += ["-frames:v", str(count)]
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    result = subprocess.run(command, check=False, capture_output=True)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"ffmpeg exited with code {result.returncode}")
    return np.frombuffer(result.stdout, np.uint8).reshape(-1, resolution, resolution, 3)


def _files_by_split(root: Path) -> dict[str, list[Path]]:
    def videos(folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())

    if (root / "train").is_dir() or (root / "test").is_dir():
        return {split: videos(root / split) for split in SPLITS if (root / split).is_dir()}
    by_split = {split: [] for split in SPLITS}
    for path in videos(root):
        bucket = int(hashlib.sha1(path.relative_to(root).as_posix().encode()).hexdigest(), 16) % 10
        by_split["train" if bucket < 8 else "val" if bucket == 8 else "test"].append(path)
    return by_split


def _probe(paths: list[Path]) -> tuple[list[Path], list[int]]:
    """The readable videos and their frame counts; one warning names every unreadable one."""
    usable, lengths, broken = [], [], []
    for path in paths:
        try:
            frames = len(decode_video(path, PROBE_RESOLUTION))
        except RuntimeError as error:
            broken.append(f"{path} ({error})")
            continue
        if frames == 0:
            broken.append(f"{path} (no video frames)")
            continue
        usable.append(path)
        lengths.append(frames)
    if broken:
        warnings.warn(f"skipped {len(broken)} unreadable video file(s): " + "; ".join(broken), stacklevel=3)
    return usable, lengths


class VideoFolder(Dataset):
    """Clips of ``sequence_length`` frames from a folder of videos (see the module docstring).

    Item: ``dict(video=float32 [3, T, resolution, resolution] in [-0.5, 0.5], actions=float32 [T, 0],
    label=int)``, the label being the video's index in ``self.files``.
    """

    def __init__(self, root: str | Path, sequence_length: int, resolution: int, split: str = "train",
                 seed: int = 0, cache: str | Path | None = None):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"video folder {str(root)!r} does not exist or is not a folder")
        if sequence_length < 1 or resolution < 1:
            raise ValueError(f"sequence_length and resolution must be positive, got {sequence_length}, {resolution}")
        by_split = _files_by_split(root)
        if split not in by_split:
            raise ValueError(f"split {split!r} does not exist in {str(root)!r}: it has subfolders for "
                             f"{sorted(by_split)}; expected {split}/ beside them")
        if not by_split[split]:
            raise ValueError(f"no {'/'.join(VIDEO_SUFFIXES)} files for split {split!r} under {str(root)!r}")
        self.root, self.split, self.seed, self.epoch = root, split, seed, 0
        self.sequence_length, self.resolution = sequence_length, resolution
        self.files, self.lengths = _probe(by_split[split])
        if not self.files:
            raise ValueError(f"no usable video for split {split!r} under {str(root)!r}: every file failed to decode")
        lengths = np.array(self.lengths)
        if not (lengths >= sequence_length).any():
            raise ValueError(f"sequence_length {sequence_length} is longer than every video of split {split!r} "
                             f"(longest: {lengths.max()} frames); choose sequence_length <= {lengths.max()}")
        windows = lengths // sequence_length
        self.item_file = np.repeat(np.arange(len(self.files)), windows)
        self.item_window = np.concatenate([np.arange(n) for n in windows])
        self.cached = self._cache(Path(cache)) if cache is not None else None

    def _cache(self, path: Path) -> HDF5Dataset:
        """Decode this split's videos into the HDF5 file ``path``, unless it already holds exactly them
        (same files, sizes, times and resolution). Use one cache file per split."""
        fingerprint = hashlib.sha1(repr([(str(p), p.stat().st_size, p.stat().st_mtime_ns, self.resolution)
                                         for p in self.files]).encode()).hexdigest()
        if not (path.is_file() and read_attrs(path).get("fingerprint") == fingerprint):
            with HDF5Writer(path, source="video_folder",
                            attrs={"root": str(self.root), "resolution": self.resolution, "fingerprint": fingerprint,
                                       "files": [str(p) for p in self.files]}) as writer:
                for file in self.files:
                    writer.add_episode(self.split, decode_video(file, self.resolution))
        return HDF5Dataset(path, self.split, self.sequence_length, seed=self.seed)

    def set_epoch(self, epoch: int) -> None:
        """Choose fresh random windows (training split) for this epoch."""
        self.epoch = epoch
        if self.cached is not None:
            self.cached.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.cached) if self.cached is not None else len(self.item_file)

    def __getitem__(self, index: int) -> dict:
        return self.item(index, self.epoch)

    def item(self, index: int, epoch: int) -> dict:
        """Item ``index`` in ``epoch``: a fresh random window per epoch in ``train``, a fixed one otherwise."""
        if self.cached is not None:
            return self.cached.item(index, epoch)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        file = self.item_file[index]
        if self.split == "train":
            rng = np.random.default_rng([self.seed, epoch, index])
            start = int(rng.integers(0, self.lengths[file] - self.sequence_length + 1))
        else:
            start = int(self.item_window[index]) * self.sequence_length
        try:
            frames = decode_video(self.files[file], self.resolution, start, self.sequence_length)
        except RuntimeError as error:
            frames, reason = np.zeros((0, self.resolution, self.resolution, 3), np.uint8), str(error)
        else:
            reason = f"only {len(frames)} of the frames {start}..{start + self.sequence_length - 1} decoded"
        if len(frames) < self.sequence_length:  # the file changed or broke since it was probed
            warnings.warn(f"{self.files[file]}: {reason}; the clip is padded with its last frame", stacklevel=2)
            last = frames[-1:] if len(frames) else np.zeros((1, self.resolution, self.resolution, 3), np.uint8)
            frames = np.concatenate([frames, np.repeat(last, self.sequence_length - len(frames), axis=0)])
        return {"video": to_video_tensor(frames), "actions": torch.zeros(self.sequence_length, 0), "label": int(file)}
