"""Data loading speed: ViZDoom collection (frames/s), then clips/s through a DataLoader (2 workers,
batch 32, clips 16x64x64) for HDF5Dataset and VideoFolder (decoding on demand, and from its HDF5 cache).

    python benchmarks/data_loading.py [--episodes 20] [--length 200] [--clips 1024]

Everything it reads it makes first, in a temporary folder: ViZDoom rollouts of Health Gathering
Supreme, and the same frames encoded as 128x128 H.264 mp4 files for the video folder.
"""
import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import h5py
import imageio_ffmpeg
import torch
from torch.utils.data import DataLoader

from videogen_lite.data import HDF5Dataset, VideoFolder, collect_vizdoom


def clips_per_second(dataset, clips: int) -> float:
    """Clips/s over at least ``clips`` clips, after one warm-up batch (workers started)."""
    loader = DataLoader(dataset, batch_size=32, shuffle=True, num_workers=2, persistent_workers=True)
    iter(loader).__next__()
    seen, epoch, started = 0, 0, time.perf_counter()
    while seen < clips:
        dataset.set_epoch(epoch)
        for batch in loader:
            assert batch["video"].shape[1:] == (3, 16, 64, 64)
            seen += len(batch["video"])
        epoch += 1
    return seen / (time.perf_counter() - started)


def write_mp4s(h5_path: Path, folder: Path) -> int:
    """Encode each training episode of an HDF5 video file as a 128x128 mp4; returns how many."""
    (folder / "train").mkdir(parents=True)
    with h5py.File(h5_path) as f:
        frames, lengths = f["train/frames"], f["train/episode_lengths"][:]
        start = 0
        for index, length in enumerate(lengths):
            command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                       "-s", "64x64", "-r", "35", "-i", "-", "-vf", "scale=128:128", "-c:v", "libx264",
                       "-pix_fmt", "yuv420p", str(folder / "train" / f"episode_{index}.mp4")]
            subprocess.run(command, input=frames[start:start + length].tobytes(), check=True)
            start += length
    return len(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--clips", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        summary = collect_vizdoom("health_gathering_supreme", args.episodes, args.length, tmp / "hgs.h5",
                                  progress=False)
        print(f"ViZDoom collection (HGS, 64x64, frame skip 4): {summary['frames_per_second']:.0f} frames/s "
              f"({summary['frames']} frames, engine + resize + HDF5 write)")
        hdf5 = HDF5Dataset(tmp / "hgs.h5", "train", 16)
        print(f"HDF5Dataset: {clips_per_second(hdf5, args.clips):.0f} clips/s ({len(hdf5)} clips per epoch)")
        videos = write_mp4s(tmp / "hgs.h5", tmp / "videos")
        folder = VideoFolder(tmp / "videos", 16, 64)
        print(f"VideoFolder, decoding on demand: {clips_per_second(folder, args.clips // 4):.0f} clips/s "
              f"({videos} mp4 files of {args.length} frames, 128x128 -> 64x64)")
        started = time.perf_counter()
        cached = VideoFolder(tmp / "videos", 16, 64, cache=tmp / "cache.h5")
        print(f"VideoFolder, HDF5 cache: {clips_per_second(cached, args.clips):.0f} clips/s "
              f"(cache built in {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
