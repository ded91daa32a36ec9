#!/usr/bin/env python3
"""Publish a training run's final weights into checkpoints/ with a MANIFEST.json entry.

    python tools/add_checkpoint.py RUN_DIR NAME --commit SHA [--note TEXT] [--half] [--earlier DIR ...]

The entry is built from what the run itself wrote (config.json: the exact command and full config;
metrics.json: steps, wall time, hardware, held-out metrics), plus the code commit that trained it and
the sha256 of the copied file. Nothing is typed in by hand except the commit and an optional note.

``--half`` stores the float weights in float16 (half the size; ``videogen_lite.load`` reads them back as
float32). ``--earlier DIR`` (repeatable, oldest first) names a copy of the config.json and metrics.json an
earlier segment of the same run wrote before it was resumed (``train ... --resume`` with other settings):
the entry's wall time is then the sum over all segments, and ``segments`` lists each one's command, steps
and wall time.
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
    parser.add_argument("--half", action="store_true", help="store the float weights in float16")
    parser.add_argument("--earlier", type=Path, action="append", default=[],
                        help="config.json + metrics.json of an earlier segment of this run (oldest first)")
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints",
                        help="the checkpoints folder to publish into (default: the repository's)")
    args = parser.parse_args()
    run_config = json.loads((args.run_dir / "config.json").read_text())
    metrics = json.loads((args.run_dir / "metrics.json").read_text())
    weights = resolve_weights(args.run_dir)
    target = args.checkpoints / f"{args.name}.safetensors"
    target.parent.mkdir(exist_ok=True)
    if args.inside and args.half:
        raise SystemExit("--half stores a file of its own; an --inside entry ships none")
    if not args.inside and args.half:
        import torch

        from videogen_lite.io import load, save

        save(load(weights), target, dtype=torch.float16)
    elif not args.inside:
        shutil.copyfile(weights, target)
    segments = []
    for folder in args.earlier:
        earlier = json.loads((folder / "metrics.json").read_text())
        segments.append(dict(command=json.loads((folder / "config.json").read_text())["command"],
                             steps_to=earlier["steps"], wall_time_s=earlier["wall_time_s"],
                             hardware=earlier["hardware"]))
    if segments:
        if any(s["hardware"] != metrics["hardware"] for s in segments):
            raise SystemExit("the --earlier segments ran on other hardware than the last one: "
                             + ", ".join(sorted({s["hardware"] for s in segments} | {metrics["hardware"]})))
        segments.append(dict(command=run_config["command"], steps_to=metrics["steps"],
                             wall_time_s=metrics["wall_time_s"], hardware=metrics["hardware"]))
    log_copy = args.checkpoints / "logs" / f"{args.name}.jsonl"
    log_copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(args.run_dir / "log.jsonl", log_copy)
    manifest_path = args.checkpoints / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"checkpoints": {}}
    logged = [json.loads(line) for line in (args.run_dir / "log.jsonl").read_text().splitlines()]
    if args.inside:  # the same weights travel inside the prior that was trained on them
        shipped = dict(path=None, inside=args.inside, sha256_of_run_file=sha256(weights))
    else:
        shipped = dict(path=target.name, sha256=sha256(target), size_bytes=target.stat().st_size,
                       **({"stored_as": "float16"} if args.half else {}))
    manifest["checkpoints"][args.name] = dict(
        **shipped,
        log=str(log_copy.relative_to(target.parent)),
        stage=run_config["stage"],
        command=run_config["command"],
        vqvae=run_config.get("vqvae"),
        config=run_config["config"],
        steps=metrics["steps"],
        wall_time_s=round(sum(s["wall_time_s"] for s in segments), 1) if segments else metrics["wall_time_s"],
        **({"segments": segments} if segments else {}),
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
