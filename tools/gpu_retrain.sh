#!/usr/bin/env bash
# Retrain the book's Moving MNIST models on one lent GPU, in one call, and bring back what checkpoints/ needs.
#   stage vqvae: the lite VQ-VAE (videogen_lite/configs/moving_mnist_lite.yaml) with bf16 autocast + compile
#   stage prior: the lite prior over it (needs the VQ-VAE run of the same RUNS folder)
#   stage judge: the Moving MNIST judge
# Each stage runs the project's own command line with --max-minutes, then copies the run's log.jsonl,
# metrics.json and config.json and its final weights (half precision: tools/add_checkpoint.py --half reads
# them back as fp32) into OUT. Test it on a CPU first with STEPS=2 (a two-step run of every stage).
# Usage: bash tools/gpu_retrain.sh OUT "vqvae prior" [key=value overrides for every stage]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: tools/gpu_retrain.sh OUT STAGES [overrides]}; stages=${2:-"vqvae prior"}; shift 2 || shift $#
runs=${RUNS:-/tmp/retrain}
minutes=${MINUTES:-5}
python=${PYTHON:-python3}
mkdir -p "$out" "$runs"
gpu=()
if $python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  gpu=(STAGE.train.bf16=true STAGE.train.compile=true)
fi
steps=()
[ -n "${STEPS:-}" ] && steps=(STAGE.train.steps="$STEPS" STAGE.train.eval_batches=1)

collect() {  # run folder -> OUT/NAME.{jsonl,json,config.json,safetensors (fp16)}
  local name=$1
  cp "$runs/$name/log.jsonl" "$out/$name.log.jsonl"
  cp "$runs/$name/metrics.json" "$out/$name.metrics.json"
  cp "$runs/$name/config.json" "$out/$name.config.json"
  $python - "$runs/$name" "$out/$name.safetensors" <<'PY'
import sys
import torch
import videogen_lite as vg
vg.save(vg.load(sys.argv[1]), sys.argv[2], dtype=torch.float16)
PY
}

for stage in $stages; do
  case $stage in
    vqvae) args=(train vqvae --config moving_mnist_lite --out "$runs/mnist_vqvae") ;;
    prior) args=(train prior --config moving_mnist_lite --vqvae "$runs/mnist_vqvae" --out "$runs/mnist_prior") ;;
    judge) args=(train judge --config moving_mnist_lite --out "$runs/mnist_judge") ;;
    *) echo "unknown stage $stage (expected vqvae, prior, judge)"; exit 2 ;;
  esac
  extra=("${gpu[@]/STAGE/$stage}" "${steps[@]/STAGE/$stage}" "$@")
  [ "$stage" = judge ] && extra=("${steps[@]/STAGE/$stage}" "$@")  # the judge is small: fp32, eager
  echo "== $stage: videogen-lite ${args[*]} --max-minutes $minutes ${extra[*]}"
  started=$(date +%s)
  $python -m videogen_lite.cli "${args[@]}" --quiet --max-minutes "$minutes" "${extra[@]}" > "$out/$stage.txt" 2>&1
  echo "   exit $?, $(( $(date +%s) - started )) s"
  collect "mnist_$stage"
done
ls -l "$out"
