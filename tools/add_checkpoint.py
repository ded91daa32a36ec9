#!/usr/bin/env python3
"""Publish a training run's final weights into checkpoints/ with a MANIFEST.json entry.

    python tools/add_checkpoint.py RUN_DIR NAME --commit SHA [--note TEXT]

The entry is built from what the run itself wrote (config.json: the exact command and full config;
metrics.json: steps, wall time, hardware, held-out metrics), plus the code commit that trained it and
the sha256 of the copied file. Nothing is typed in by hand except the commit and an optional note.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from videogen_lite.io import resolve_weights  # noqa: E402
from videogen_lite.pretrained import sha256  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("--commit", required=True, help="the code commit the run was trained from")
    parser.add_argument("--note", default="")
    parser.add_argument("--inside", help="ship no separate file: the weights are the .vqvae of this prior entry")
    args = parser.parse_args()
    run_config = json.loads((args.run_dir / "config.json").read_text())
    metrics = json.loads((args.run_dir / "metrics.json").read_text())
    weights = resolve_weights(args.run_dir)
    target = ROOT / "checkpoints" / f"{args.name}.safetensors"
    target.parent.mkdir(exist_ok=True)
    if not args.inside:
        shutil.copyfile(weights, target)
    log_copy = ROOT / "checkpoints" / "logs" / f"{args.name}.jsonl"
    log_copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(args.run_dir / "log.jsonl", log_copy)
    manifest_path = ROOT / "checkpoints" / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"checkpoints": {}}
    logged = [json.loads(line) for line in (args.run_dir / "log.jsonl").read_text().splitlines()]
    if args.inside:  # the same weights travel inside the prior that was trained on them
        shipped = dict(path=None, inside=args.inside, sha256_of_run_file=sha256(weights))
    else:
        shipped = dict(path=target.name, sha256=sha256(target), size_bytes=target.stat().st_size)
    manifest["checkpoints"][args.name] = dict(
        **shipped,
        log=str(log_copy.relative_to(target.parent)),
        stage=run_config["stage"],
        command=run_config["command"],
        vqvae=run_config.get("vqvae"),
        config=run_config["config"],
        steps=metrics["steps"],
        wall_time_s=metrics["wall_time_s"],
        hardware=metrics["hardware"],
        processes=metrics["processes"],
        metrics=dict(held_out=metrics.get("held_out", {}), last_logged_train=logged[-1] if logged else {},
                     **{key: metrics[key] for key in ("test_accuracy",) if key in metrics}),
        commit=args.commit,
        note=args.note,
    )
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{args.name}: {json.dumps(shipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
