#!/usr/bin/env bash
# The GPU checks behind chapter 9's measured figures, on one CUDA machine, in about 8 minutes:
#   1. the full `bair` config (Tables 5-6), VQ-VAE then prior, bf16 autocast + torch.compile, 30 steps each;
#   2. `videogen-lite bench` figures on the GPU (bf16): prior and VQ-VAE steps with tokens/s and MFU;
#   3. the same bair runs in fp32 without compile, 15 steps each, for comparison.
# Usage: bash tools/gpu_smoke.sh RESULTS_DIR   (RESULTS_DIR gets summary.json, logs.tgz and the printed output)
set -uo pipefail
cd "$(dirname "$0")/.."
results=${1:?usage: tools/gpu_smoke.sh RESULTS_DIR}
runs=${RUNS:-/tmp/full_scale}
mkdir -p "$results" "$runs"
python=${PYTHON:-python3}
pack() {  # summary and logs (no checkpoints, no data) into the results folder
  cp "$runs/summary.json" "$results/" 2>/dev/null
  tar czf "$results/logs.tgz" -C "$runs" --exclude=checkpoints --exclude=random_clips.h5 . 2>/dev/null
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$results/gpu.txt" 2>&1
$python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >> "$results/gpu.txt" 2>&1

timeout 300 $python tools/full_scale_smoke.py --out "$runs" --steps 30 --log-every 5 --minutes 2.5 \
  --arms bf16_compile > "$results/bair_bf16_compile.txt" 2>&1
pack
{
  timeout 60 $python benchmarks/prior.py --device cuda --dtype bf16 --batch 32 --steps 5
  timeout 60 $python benchmarks/vqvae_step.py --device cuda --dtype bf16 --batch 32 --steps 5
} > "$results/bench.txt" 2>&1
timeout 110 $python tools/full_scale_smoke.py --out "$runs" --steps 15 --log-every 5 --minutes 1.2 \
  --arms fp32_eager > "$results/bair_fp32_eager.txt" 2>&1
pack
echo "done: $(ls "$results")"
